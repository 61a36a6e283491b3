//! ISO-8601 / RFC 3339 timestamps to `i64` nanoseconds since the Unix epoch, and back.
//!
//! CoinAPI writes 7 fractional digits (100 ns), Moment 6 or 9; metadata carries date-only
//! strings. Any number of fractional digits is accepted: digits past the ninth are truncated.

/// Why a timestamp did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeError;

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, TimeError> {
    let s = b.get(at..at + n).ok_or(TimeError)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(TimeError);
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Whether `year-month-day` is a date of the proleptic Gregorian calendar.
pub fn is_date(year: u64, month: u64, day: u64) -> bool {
    let (Ok(y), Ok(m)) = (i64::try_from(year), i64::try_from(month)) else {
        return false;
    };
    (1..=12).contains(&month)
        && day >= 1
        && i64::try_from(day).is_ok_and(|d| d <= days_in_month(y, m))
}

thread_local! {
    /// The last date parsed on this thread: a feed's timestamps share it almost always.
    static LAST_DATE: std::cell::Cell<([u8; 10], i64)> =
        const { std::cell::Cell::new(([0; 10], 0)) };
}

/// Days since the epoch of the `YYYY-MM-DD` at the start of `b`, validated.
fn date_days(b: &[u8]) -> Result<i64, TimeError> {
    let ymd: [u8; 10] = b
        .get(..10)
        .and_then(|d| d.try_into().ok())
        .ok_or(TimeError)?;
    let (last, days) = LAST_DATE.get();
    if last == ymd {
        return Ok(days);
    }
    let year = digits(b, 0, 4)?;
    if b[4] != b'-' || b[7] != b'-' {
        return Err(TimeError);
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(TimeError);
    }
    let days = days_from_civil(year, month, day);
    LAST_DATE.set((ymd, days));
    Ok(days)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)` (also with a space for `T`).
///
/// # Errors
/// [`TimeError`] for anything else, including out-of-range fields.
pub fn parse_ns(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let days = date_days(b)?;
    if b.len() == 10 {
        return days.checked_mul(86_400 * 1_000_000_000).ok_or(TimeError);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return Err(TimeError);
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    if b.get(16) != Some(&b':') {
        return Err(TimeError);
    }
    let second = digits(b, 17, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimeError);
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100_000_000i64;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac_ns += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return Err(TimeError);
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(TimeError);
            }
            let v = oh * 3600 + om * 60;
            if sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return Err(TimeError),
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(frac_ns))
        .ok_or(TimeError)
}

/// Formats ns since the epoch as `YYYY-MM-DDTHH:MM:SS.fffffff...Z` with `frac_digits` (0..=9).
pub fn format_ns(ns: i64, frac_digits: u32) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let digits = frac_digits.min(9);
    if digits > 0 {
        let frac = nanos / 10i64.pow(9 - digits);
        out.push_str(&format!(".{frac:0width$}", width = digits as usize));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coinapi_seven_digits() {
        let ns = parse_ns("2017-03-18T22:42:21.3763342Z").unwrap();
        assert_eq!(ns, 1_489_876_941_376_334_200);
        assert_eq!(format_ns(ns, 7), "2017-03-18T22:42:21.3763342Z");
    }

    #[test]
    fn fewer_and_more_fractional_digits() {
        assert_eq!(
            parse_ns("2017-03-18T22:42:21.3Z").unwrap(),
            1_489_876_941_300_000_000
        );
        assert_eq!(
            parse_ns("2017-03-18T22:42:21Z").unwrap(),
            1_489_876_941_000_000_000
        );
        // Digits past nanoseconds are truncated, not rounded.
        assert_eq!(
            parse_ns("2017-03-18T22:42:21.123456789987Z").unwrap(),
            1_489_876_941_123_456_789
        );
        assert_eq!(
            parse_ns("2024-05-01T14:30:00.123456789Z").unwrap() % 1_000_000_000,
            123_456_789
        );
    }

    #[test]
    fn date_only_and_offsets() {
        assert_eq!(parse_ns("2014-11-22").unwrap(), 1_416_614_400_000_000_000);
        assert_eq!(parse_ns("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_ns("1970-01-01T01:00:00+01:00").unwrap(),
            parse_ns("1970-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(parse_ns("1969-12-31T23:59:59.5Z").unwrap(), -500_000_000);
        assert!(parse_ns("2016-02-29").is_ok());
        assert!(parse_ns("2000-02-29").is_ok());
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2017",
            "2017-13-01",
            "2017-03-18T25:00:00Z",
            "2017-03-18T22:42:21.Z",
            "2017-03-18T22:42:21",
            "2017-03-18T22:42:21.1Zjunk",
            "abcd-ef-gh",
            "2017-02-29",
            "2017-04-31T00:00:00Z",
            "2013-09-28T22:40:50+99:99",
            "9999-12-31",
            "0001-01-01",
        ] {
            assert_eq!(parse_ns(s), Err(TimeError), "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ns in [0, 1_700_000_000_123_456_700, -1, 4_102_444_800_000_000_000] {
            assert_eq!(parse_ns(&format_ns(ns, 9)).unwrap(), ns);
        }
    }
}
