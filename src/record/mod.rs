//! Recordings: every frame a stream received (after inflate, control frames included) with
//! its `recv_ns`, what it sent (keys scrubbed), and its connections' boundaries, in a
//! self-describing, zstd-compressed, time-indexed file (`docs/recording.md` has the layout).
//!
//! Public API, in the order a caller meets it:
//! - [`format`](mod@format): the pure parts. [`Record`] `{ conn, at: Stamp { wall_ns, mono_ns }, event }`
//!   with [`Event`] (`Opened`, `Data`, `Ping`, `Pong`, `Close`, `Sent`, `SentPing`,
//!   `ReadError`, `WriteError`, `SuccessorFailed`, `Deadline`, `Request`, `Closed`,
//!   `ConnectFailed`, `Lost`); [`Meta`] (the header's JSON: venue, feed, url, scope, tickwire
//!   version, created_ns, part); [`scrub`] (removes keys from sent text).
//! - [`write`](mod@write): [`FileWriter`] (one file: `new(out, &meta, live)`, `push(&rec)`,
//!   `flush_block()`, `finish()`) and [`Recording`] (files with rotation:
//!   `create(path, Rotation { max_bytes, max_age }, meta, now, wall_ns)`, `push`, `flush`,
//!   `finish`); [`part_path`] names rotated files `<stem>.<n>.twr`.
//! - [`read`]: [`Reader`] (`open(path)`, `meta()`, `blocks()`, `seek(start_ns)`, and an
//!   iterator of `Result<Record, ReadError>` that ends with an error naming the byte offset
//!   of any damage); [`parts_of`] finds a rotated recording's files.
//! - [`recorder`]: [`Recorder`] (`start(path, rotation, meta)`, `send(records)`, `finish()`,
//!   `wait_finished(timeout)`), the writer thread a connection task hands records to through
//!   a [`Tap`].
//! - [`play`]: `spawn(first_reader, other_paths, PlayOptions, queue, commands)` replays
//!   recordings through the connection machine into a delivery queue.

pub mod format;
pub mod play;
pub mod read;
pub mod recorder;
pub mod write;

pub use format::scrub;
pub use format::{Event, Meta, Record, Request, Role, Stamp};
pub use read::{parts_of, ReadError, Reader};
pub use recorder::{Recorder, Tap};
pub use write::{part_path, FileWriter, Recording, Rotation};

#[cfg(test)]
mod tests;
