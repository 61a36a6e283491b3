//! The simd-json tape and scratch buffers one connection reuses for every frame.

use simd_json::tape::{Tape, Value};
use simd_json::Buffers;

use super::DecodeError;

/// Parses frames in place into a reused tape.
pub(crate) struct TapeParser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    /// The frame copied with simd-json's padding after it, so simd-json parses it in place
    /// without a padded copy of its own, and the caller's bytes stay intact (raw text).
    scratch: Vec<u8>,
}

impl Default for TapeParser {
    fn default() -> Self {
        TapeParser {
            buffers: Buffers::new(4096),
            tape: Some(Tape::null()),
            scratch: Vec::with_capacity(4096),
        }
    }
}

impl TapeParser {
    /// Parses `frame` and hands its root value to `f`.
    pub fn parse<R>(
        &mut self,
        frame: &[u8],
        f: impl FnOnce(Value<'_, '_>) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError("empty frame".into()));
        }
        // The tape is kept across frames for its allocation; `reset` re-ties its lifetime to
        // this frame, and it is handed back emptied before the frame borrow ends.
        self.scratch.clear();
        self.scratch.extend_from_slice(frame);
        self.scratch
            .resize(frame.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = simd_json::fill_tape_padded(
            &mut self.scratch,
            frame.len(),
            &mut self.buffers,
            &mut tape,
        );
        let result = match parsed {
            Ok(()) => f(tape.as_value()),
            Err(e) => Err(DecodeError(format!("invalid JSON: {e}"))),
        };
        self.tape = Some(tape.reset());
        result
    }
}
