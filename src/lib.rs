//! tickwire's core: a real-time market-data client whose socket, timers, parsing and
//! bookkeeping run in Rust, handing typed message batches to Python.

pub mod codec;
pub mod feed;
pub mod model;
pub mod protocol;
