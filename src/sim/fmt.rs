//! Text formatting for the simulator's JSON: UTC timestamps, fixed-point decimals, UUIDs.
//!
//! Hand-written rather than `write!`-based because the generator formats two timestamps and
//! several decimals per event, hundreds of thousands of times per second at `rate=0`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock, nanoseconds since the Unix epoch (UTC).
pub(crate) fn wall_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y + 1 } else { y };
    // d and m are small positive numbers by construction.
    (y, m as u32, d as u32)
}

/// `YYYYMMDD` of a UTC instant, as a number (the date part of a Moment `msg_number`).
pub(crate) fn yyyymmdd(ns: i64) -> u64 {
    let (y, m, d) = civil_from_days(ns.div_euclid(86_400_000_000_000));
    let y = u64::try_from(y.clamp(0, 9999)).unwrap_or(0);
    y * 10_000 + u64::from(m) * 100 + u64::from(d)
}

fn push_digits(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = buf.len().saturating_sub(width).min(i);
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

/// Appends an ISO-8601 UTC timestamp with `frac` fractional digits and `Z`
/// (CoinAPI: 7 digits, 100 ns resolution; Moment prices: 9; Moment orders: 6).
pub(crate) fn push_ts(out: &mut String, ns: i64, frac: u32) {
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000) as u64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    push_digits(out, u64::try_from(y.clamp(0, 9999)).unwrap_or(0), 4);
    out.push('-');
    push_digits(out, u64::from(mo), 2);
    out.push('-');
    push_digits(out, u64::from(d), 2);
    out.push('T');
    push_digits(out, sod / 3600, 2);
    out.push(':');
    push_digits(out, sod / 60 % 60, 2);
    out.push(':');
    push_digits(out, sod % 60, 2);
    if frac > 0 {
        let frac = frac.min(9);
        out.push('.');
        push_digits(out, sub / 10u64.pow(9 - frac), frac as usize);
    }
    out.push('Z');
}

/// Appends a decimal with exactly `decimals` fractional digits from a value in units of
/// 10^-9 (e.g. `770_000000000` with 9 decimals -> `770.000000000`).
pub(crate) fn push_fixed(out: &mut String, nanos: i64, decimals: u32) {
    if nanos < 0 {
        out.push('-');
    }
    let v = nanos.unsigned_abs();
    push_digits(out, v / 1_000_000_000, 1);
    let decimals = decimals.min(9);
    if decimals > 0 {
        out.push('.');
        let frac = v % 1_000_000_000 / 10u64.pow(9 - decimals);
        push_digits(out, frac, decimals as usize);
    }
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut String, v: u64) {
    push_digits(out, v, 1);
}

/// Formats a 128-bit value as a UUID version 4 (the version and variant bits are forced).
pub(crate) fn push_uuid(out: &mut String, raw: u128, upper: bool) {
    let v =
        (raw & !(0xF000u128 << 64) | (0x4000u128 << 64)) & !(0xC000u128 << 48) | (0x8000u128 << 48);
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        let nib = (v >> (124 - 4 * i)) & 0xF;
        out.push(char::from(hex[nib as usize]));
    }
}

/// Appends a JSON string literal. The simulator's own strings never need escaping, but
/// identifiers echoed from a client might, so this escapes the JSON specials.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                let hex = b"0123456789abcdef";
                out.push(char::from(hex[(c as usize) >> 4]));
                out.push(char::from(hex[(c as usize) & 0xF]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ns: i64, frac: u32) -> String {
        let mut s = String::new();
        push_ts(&mut s, ns, frac);
        s
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0, 7), "1970-01-01T00:00:00.0000000Z");
        // 2017-03-18T22:42:21.3763342Z
        let ns = 1_489_876_941_376_334_200;
        assert_eq!(ts(ns, 7), "2017-03-18T22:42:21.3763342Z");
        assert_eq!(ts(ns + 99, 7), "2017-03-18T22:42:21.3763342Z");
        assert_eq!(ts(ns + 99, 9), "2017-03-18T22:42:21.376334299Z");
        assert_eq!(ts(ns, 6), "2017-03-18T22:42:21.376334Z");
        assert_eq!(ts(951_782_400_000_000_000, 0), "2000-02-29T00:00:00Z");
        assert_eq!(yyyymmdd(ns), 20_170_318);
    }

    #[test]
    fn fixed_and_uuid() {
        let mut s = String::new();
        push_fixed(&mut s, 770_000_000_000, 9);
        s.push(' ');
        push_fixed(&mut s, 50_000_000, 9);
        s.push(' ');
        push_fixed(&mut s, -1_500_000_000, 2);
        s.push(' ');
        push_fixed(&mut s, 99_875_000_000, 3);
        assert_eq!(s, "770.000000000 0.050000000 -1.50 99.875");
        let mut u = String::new();
        push_uuid(&mut u, u128::MAX, true);
        assert_eq!(u, "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF");
        let mut u = String::new();
        push_uuid(&mut u, 0, false);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
        let mut j = String::new();
        push_json_str(&mut j, "a\"b\\c\n");
        assert_eq!(j, r#""a\"b\\c\u000a""#);
    }
}
