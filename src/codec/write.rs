//! Small JSON writer for the requests tickwire sends (hello, subscribe): no allocation per
//! field beyond the output string, correct escaping.

/// Builds one JSON object.
pub struct ObjectWriter {
    out: String,
    first: bool,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter {
            out: String::from("{"),
            first: true,
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl ObjectWriter {
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_string(&mut self.out, k);
        self.out.push(':');
    }

    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_string(&mut self.out, v);
        self
    }

    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        self.out.push_str(&v.to_string());
        self
    }

    pub fn strs(mut self, k: &str, vs: &[String]) -> Self {
        self.key(k);
        self.out.push('[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_string(&mut self.out, v);
        }
        self.out.push(']');
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_shapes() {
        let s = ObjectWriter::default()
            .str("type", "hel\"lo\n")
            .bool("heartbeat", true)
            .int("n", 7)
            .strs("xs", &["a".into(), "b\\".into()])
            .finish();
        assert_eq!(
            s,
            r#"{"type":"hel\"lo\n","heartbeat":true,"n":7,"xs":["a","b\\"]}"#
        );
        let mut v = s.into_bytes();
        assert!(simd_json::to_owned_value(&mut v).is_ok());
    }
}
