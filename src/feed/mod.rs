//! Venue-neutral stream logic as plain state machines: sequence tracking, liveness deadlines
//! and reconnect backoff. No sockets, no clocks of its own: callers pass `now`.

pub mod backoff;
mod book_handover;
pub mod machine;
pub mod msgnum;
pub mod sequence;
