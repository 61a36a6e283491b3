//! Handing batches from the I/O task to the consumer: a bounded queue with overflow policies,
//! the wake-up pipe that lets an asyncio loop sleep, and the consumer's latency histogram.
//! The queue knows no socket: readiness of the connection is `transport::watch`'s, and the
//! connection's counters are the client's.

pub mod latency;
pub mod queue;
pub mod wake;

pub use latency::LatencyHistogram;
pub use queue::{Overflow, Pop, Queue, QueueStats, StreamEnd};
