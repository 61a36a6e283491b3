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
