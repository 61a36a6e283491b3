//! The simd-json tape and scratch buffers one connection reuses for every frame.

use simd_json::tape::{Tape, Value};
use simd_json::Buffers;

use super::DecodeError;

/// Parses frames in place into a reused tape.
pub(crate) struct TapeParser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl Default for TapeParser {
    fn default() -> Self {
        TapeParser {
            buffers: Buffers::new(4096),
            tape: Some(Tape::null()),
        }
    }
}

impl TapeParser {
    /// Parses `frame` (scribbled on by simd-json) and hands its root value to `f`.
    pub fn parse<R>(
        &mut self,
        frame: &mut [u8],
        f: impl FnOnce(Value<'_, '_>) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError("empty frame".into()));
        }
        // The tape is kept across frames for its allocation; `reset` re-ties its lifetime to
        // this frame, and it is handed back emptied before the frame borrow ends.
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(Tape::null).reset();
        let result = match simd_json::fill_tape(frame, &mut self.buffers, &mut tape) {
            Ok(()) => f(tape.as_value()),
            Err(e) => Err(DecodeError(format!("invalid JSON: {e}"))),
        };
        self.tape = Some(tape.reset());
        result
    }
}
