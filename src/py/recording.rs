//! `tickwire.replay`'s core: a stream whose queue a recording's replay fills.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::io;
use super::stream::StreamCore;
use crate::delivery::{Overflow, Queue};
use crate::error::Error;
use crate::record::play::{self, PlayOptions};
use crate::record::{parts_of, ReadError, Reader};

fn read_error(e: ReadError) -> PyErr {
    match e {
        ReadError::Io { path, error } => pyo3::exceptions::PyOSError::new_err(format!(
            "cannot read the recording {path}: {error}"
        )),
        other => Error::Protocol(other.to_string()).into(),
    }
}

/// Starts replaying `paths` (each a file, or a rotated recording's `<stem>.twr`, in order);
/// the first file is opened here, so a missing, foreign or newer-version file raises at once.
#[pyfunction]
#[pyo3(signature = (paths, *, speed=None, start_ns=None, end_ns=None, batch_size=1024,
    queue_size=262_144, keep_raw=false))]
pub fn replay_stream(
    paths: Vec<PathBuf>,
    speed: Option<f64>,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    batch_size: usize,
    queue_size: usize,
    keep_raw: bool,
) -> PyResult<StreamCore> {
    if let Some(s) = speed {
        if !(s.is_finite() && s > 0.0) {
            return Err(
                Error::Config(format!("speed must be a positive number or None, not {s}")).into(),
            );
        }
    }
    if batch_size == 0 || queue_size == 0 {
        return Err(Error::Config("batch_size and queue_size must be positive".into()).into());
    }
    let files: Vec<PathBuf> = paths.iter().flat_map(|p| parts_of(p)).collect();
    let Some((first, rest)) = files.split_first() else {
        return Err(Error::Config("replay needs at least one recording".into()).into());
    };
    let reader = Reader::open(first).map_err(read_error)?;
    // Every file's header is checked before anything plays: a newer one later in the list
    // is refused now rather than after the earlier ones played.
    for p in rest {
        Reader::open(p).map_err(read_error)?;
    }
    let wake = if io().inline().is_some() {
        crate::delivery::wake::WakePipe::with_socket_watch()
    } else {
        crate::delivery::wake::WakePipe::new()
    }
    .map_err(|e| Error::Config(format!("cannot create the wake-up pipe: {e}")))?;
    let queue = Queue::new(queue_size, batch_size, Overflow::Block, Some(wake));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shown = format!("replay of {}", first.display());
    let opts = PlayOptions {
        speed,
        start_ns,
        end_ns,
        batch_size,
        keep_raw,
    };
    play::spawn(reader, rest.to_vec(), opts, queue.clone(), rx)
        .map_err(|e| Error::Protocol(format!("cannot replay {}: {e}", first.display())))?;
    Ok(StreamCore::fed(queue, tx, shown))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(replay_stream, m)?)?;
    Ok(())
}
