//! The core's one error type; `py::errors` maps each variant to one Python exception.

use crate::delivery::StreamEnd;

/// What can go wrong for a stream's consumer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server (or network) could not be reached, or reconnecting gave up: the
    /// environment's fault.
    #[error("{0}")]
    Connect(String),
    /// The server refused the API key: the caller's credentials are wrong.
    #[error("{0}")]
    Auth(String),
    /// Bytes broke a format in a way the stream cannot continue from. No live stream ends this
    /// way: PROTOCOLS.md names no server behaviour that reconnecting cannot get past (a frame
    /// that breaks RFC 6455 or the venue's JSON fails that one connection, and the next may be
    /// fine). A replayed recording that is damaged, not a recording, or of a newer format
    /// version does: the file's fault.
    #[error("{0}")]
    Protocol(String),
    /// The consumer closed the stream and then used it: the caller's fault.
    #[error("the stream is closed")]
    Closed,
    /// An option was out of range or unknown: the caller's fault.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The error a stream end raises, if it raises one (`Finished` ends iteration quietly).
    pub fn from_end(end: &StreamEnd) -> Option<Error> {
        match end {
            StreamEnd::Finished => None,
            StreamEnd::ClosedByUser => Some(Error::Closed),
            StreamEnd::Auth(m) => Some(Error::Auth(m.clone())),
            StreamEnd::Connect(m) => Some(Error::Connect(m.clone())),
            StreamEnd::Recording(m) => Some(Error::Protocol(m.clone())),
        }
    }
}
