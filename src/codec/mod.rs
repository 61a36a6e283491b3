//! Frame bytes to typed messages, parsed in place with simd-json into a reused tape.

pub mod coinapi;
mod fields;
mod intern;
pub mod moment;
mod tape;
pub mod write;

pub use coinapi::CoinApiDecoder;
pub use intern::Interner;
pub use moment::MomentDecoder;

use crate::model;

/// How one venue turns a parsed frame into a message.
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
}

/// A decoder for one connection of venue `V`: owns the simd-json scratch buffers, the tape and
/// the key interner, all reused from frame to frame.
pub struct FrameDecoder<V> {
    parser: tape::TapeParser,
    interner: Interner,
    venue: std::marker::PhantomData<V>,
}

impl<V> Default for FrameDecoder<V> {
    fn default() -> Self {
        FrameDecoder {
            parser: tape::TapeParser::default(),
            interner: Interner::default(),
            venue: std::marker::PhantomData,
        }
    }
}

impl<V: Venue> FrameDecoder<V> {
    /// Parses one frame.
    ///
    /// # Errors
    /// [`DecodeError`] for invalid JSON, a non-object, a missing type field, or a known type
    /// whose fields are missing or of the wrong kind.
    pub fn decode(&mut self, frame: &[u8]) -> Result<model::Msg, DecodeError> {
        let interner = &mut self.interner;
        self.parser
            .parse(frame, |root| V::decode_value(root, frame, interner))
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
mod tests;
