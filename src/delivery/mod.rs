//! Handing batches from the I/O task to the consumer: a bounded queue with overflow policies,
//! stream statistics, and the wake-ups that let a sync thread or an asyncio loop sleep.

pub mod queue;
pub mod stats;
pub mod wake;

pub use queue::{Overflow, Pop, Queue, StreamEnd};
pub use stats::{LatencyHistogram, Stats};
