//! Frame bytes to typed messages: a schema-aware single-pass decoder for the common frames of
//! each venue ([`fast`]), and the general decoder (simd-json into a reused tape) for every other
//! frame and as the reference the fast one is checked against.

pub mod coinapi;
mod fast;
mod fields;
mod intern;
pub mod moment;
mod tape;
pub mod write;

pub use coinapi::CoinApiDecoder;
pub use intern::Interner;
pub use moment::MomentDecoder;

use crate::model;

/// The largest sequence value accepted (2**53, the last integer every consumer, Python floats
/// and JSON peers included, holds exactly). Above it a frame is an error, so that one absurd
/// value cannot become a baseline after which every real message looks like a duplicate.
pub const MAX_SEQUENCE: u64 = 1 << 53;

/// How one venue turns a frame into a message.
pub trait Venue {
    /// `root` is the parsed frame, `wire` its bytes as received (for messages that keep their
    /// text), `interner` the connection's key table.
    ///
    /// # Errors
    /// [`DecodeError`] when the frame is not a valid message of the venue.
    fn decode_value(
        root: simd_json::tape::Value<'_, '_>,
        wire: &[u8],
        interner: &mut Interner,
    ) -> Result<model::Msg, DecodeError>;

    /// The schema-aware fast path: the message when `frame` is in its strict subset, else
    /// `None` (the frame then goes through [`Venue::decode_value`]). Whatever it returns
    /// equals what `decode_value` gives for the same frame.
    #[doc(hidden)]
    fn decode_fast(
        frame: &[u8],
        interner: &mut Interner,
        scratch: &mut fast::Scratch,
    ) -> Option<model::Msg>;
}

/// A decoder for one connection of venue `V`: owns the fast path's scratch space, the
/// simd-json scratch buffers and tape, and the key interner, all reused from frame to frame.
pub struct FrameDecoder<V> {
    parser: tape::TapeParser,
    interner: Interner,
    scratch: fast::Scratch,
    venue: std::marker::PhantomData<V>,
}

impl<V> Default for FrameDecoder<V> {
    fn default() -> Self {
        FrameDecoder {
            parser: tape::TapeParser::default(),
            interner: Interner::default(),
            scratch: fast::Scratch::default(),
            venue: std::marker::PhantomData,
        }
    }
}

impl<V: Venue> FrameDecoder<V> {
    /// Parses one frame: the fast path first, the general decoder for anything it declines.
    ///
    /// # Errors
    /// [`DecodeError`] for invalid JSON, a non-object, a missing type field, or a known type
    /// whose fields are missing or of the wrong kind.
    pub fn decode(&mut self, frame: &[u8]) -> Result<model::Msg, DecodeError> {
        match V::decode_fast(frame, &mut self.interner, &mut self.scratch) {
            Some(msg) => Ok(msg),
            None => self.decode_general(frame),
        }
    }

    /// Parses one frame with the general decoder only (the reference for [`Self::decode`]).
    ///
    /// # Errors
    /// As [`Self::decode`].
    pub fn decode_general(&mut self, frame: &[u8]) -> Result<model::Msg, DecodeError> {
        let interner = &mut self.interner;
        self.parser
            .parse(frame, |root| V::decode_value(root, frame, interner))
    }

    /// The fast path alone: `None` where it declines the frame.
    pub fn decode_fast(&mut self, frame: &[u8]) -> Option<model::Msg> {
        V::decode_fast(frame, &mut self.interner, &mut self.scratch)
    }
}

/// Why a frame did not become a message. The text goes into a `ParseError` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod gen;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fast;
