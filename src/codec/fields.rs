//! Typed field access on a simd-json tape object, with error texts that name the field.

use simd_json::prelude::*;
use simd_json::tape::{Array, Object, Value};

use super::{DecodeError, MAX_SEQUENCE};
use crate::model::time;

/// A JSON object of a message of type `what`, for error messages.
pub(crate) struct Fields<'t, 'i> {
    pub what: &'static str,
    pub obj: Object<'t, 'i>,
}

fn missing(what: &str, key: &str) -> DecodeError {
    DecodeError(format!("{what}: missing field `{key}`"))
}

fn wrong(what: &str, key: &str, expected: &str) -> DecodeError {
    DecodeError(format!("{what}: field `{key}` is not {expected}"))
}

impl<'t, 'i> Fields<'t, 'i> {
    pub fn new(what: &'static str, obj: Object<'t, 'i>) -> Self {
        Fields { what, obj }
    }

    /// The non-null value under `key`. Keys are compared by length and first byte before the
    /// bytes, so most mismatches never reach `memcmp` (this lookup runs ~9 times a message).
    fn present(&self, key: &str) -> Option<Value<'t, 'i>> {
        let kb = key.as_bytes();
        self.obj
            .iter()
            .find(|(k, _)| {
                let b = k.as_bytes();
                b.len() == kb.len() && b.first() == kb.first() && b == kb
            })
            .map(|(_, v)| v)
            .filter(|v| v.as_null().is_none())
    }

    pub fn str(&self, key: &str) -> Result<&'i str, DecodeError>
    where
        'i: 't,
    {
        self.opt_str(key)?.ok_or_else(|| missing(self.what, key))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'i str>, DecodeError>
    where
        'i: 't,
    {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .ok_or_else(|| wrong(self.what, key, "a string")),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64, DecodeError> {
        self.opt_u64(key)?.ok_or_else(|| missing(self.what, key))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong(self.what, key, "an unsigned integer")),
        }
    }

    /// A sequence number: an unsigned integer no larger than [`MAX_SEQUENCE`].
    pub fn sequence(&self, key: &str) -> Result<u64, DecodeError> {
        let n = self.u64(key)?;
        if n > MAX_SEQUENCE {
            return Err(DecodeError(format!(
                "{}: field `{key}` is above 2**53 ({n})",
                self.what
            )));
        }
        Ok(n)
    }

    pub fn i64(&self, key: &str) -> Result<i64, DecodeError> {
        self.present(key)
            .ok_or_else(|| missing(self.what, key))?
            .as_i64()
            .ok_or_else(|| wrong(self.what, key, "an integer"))
    }

    pub fn f64(&self, key: &str) -> Result<f64, DecodeError> {
        self.opt_f64(key)?.ok_or_else(|| missing(self.what, key))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => match v.cast_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(wrong(self.what, key, "a finite number")),
            },
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool, DecodeError> {
        self.present(key)
            .ok_or_else(|| missing(self.what, key))?
            .as_bool()
            .ok_or_else(|| wrong(self.what, key, "a boolean"))
    }

    pub fn time(&self, key: &str) -> Result<i64, DecodeError> {
        self.opt_time(key)?.ok_or_else(|| missing(self.what, key))
    }

    pub fn opt_time(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| wrong(self.what, key, "a timestamp string"))?;
                time::parse_ns(s)
                    .map(Some)
                    .map_err(|_| wrong(self.what, key, "an ISO-8601 timestamp"))
            }
        }
    }

    /// The array under `key`, or an empty iteration when absent (book sides may be omitted).
    pub fn opt_array(&self, key: &str) -> Result<Option<Array<'t, 'i>>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| wrong(self.what, key, "an array")),
        }
    }
}
