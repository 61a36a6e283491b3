//! Writing recordings: records into zstd blocks, blocks into files, files rotated. Used by
//! the recorder's thread; it takes the time as an argument and never reads a clock.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::format::{
    encode_header, encode_index, BlockHeader, Encoder, Event, IndexEntry, Meta, Record,
};

/// A block is compressed and written once its records' encoding reaches this many bytes...
pub const BLOCK_BYTES: usize = 256 << 10;
/// ...or once its first record is this old (the recorder's thread checks), so a crash loses
/// at most the last 256 KiB or 100 ms of records.
pub const BLOCK_AGE: Duration = Duration::from_millis(100);
/// zstd's level: 3 (its default) compresses the simulator's market-data JSON 5.6x at about
/// 600 MB/s on one core; levels 1 and below gain little speed for a worse ratio (measured:
/// -1 is 4.0x at 770 MB/s).
pub const ZSTD_LEVEL: i32 = 3;
/// The most open connections restated at the start of each block: a stream has at most two
/// (the primary and a make-before-break successor); the rest is slack for closes that were
/// never recorded (the oldest restatement is dropped first).
const LIVE_MAX: usize = 8;

/// Writes one recording file: the header, then blocks, then (on [`FileWriter::finish`]) the
/// index. Each block is written with one `write_all` as soon as it is sealed, with no buffer
/// between it and the file, so what a crash loses is the block being filled.
pub struct FileWriter<W: Write> {
    out: W,
    offset: u64,
    raw: Vec<u8>,
    enc: Encoder,
    records: u32,
    first_ns: i64,
    last_ns: i64,
    index: Vec<IndexEntry>,
    /// The `Opened` records of connections still open, restated (as `continued`) at the start
    /// of every block so a reader can start at any block. At most [`LIVE_MAX`].
    live: Vec<Record>,
    compressor: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
}

impl<W: Write> FileWriter<W> {
    /// Starts a file: writes the header. `live` are the connections open when it starts
    /// (from the previous file of a rotation).
    ///
    /// # Errors
    /// The I/O error of writing the header, or zstd's if it cannot be set up.
    pub fn new(mut out: W, meta: &Meta, live: Vec<Record>) -> io::Result<Self> {
        let header = encode_header(meta);
        out.write_all(&header)?;
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        compressor.include_checksum(false)?;
        Ok(FileWriter {
            out,
            offset: header.len() as u64,
            raw: Vec::with_capacity(BLOCK_BYTES + (BLOCK_BYTES >> 2)),
            enc: Encoder::default(),
            records: 0,
            first_ns: i64::MAX,
            last_ns: i64::MIN,
            index: Vec::new(),
            live,
            compressor,
            scratch: Vec::new(),
        })
    }

    /// Bytes written to the file so far.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Whether a block is being filled.
    pub fn pending(&self) -> bool {
        self.records > 0
    }

    /// The connections open now, for the next file of a rotation.
    pub fn live(&self) -> Vec<Record> {
        self.live.clone()
    }

    fn append(&mut self, rec: &Record) {
        self.enc.encode(rec, &mut self.raw);
        self.records += 1;
        self.first_ns = self.first_ns.min(rec.at.wall_ns);
        self.last_ns = self.last_ns.max(rec.at.wall_ns);
    }

    /// Adds a record; seals and writes the block once it reaches [`BLOCK_BYTES`].
    ///
    /// # Errors
    /// The I/O error of writing a block.
    pub fn push(&mut self, rec: &Record) -> io::Result<()> {
        if self.records == 0 {
            for i in 0..self.live.len() {
                if self.live[i].conn == rec.conn && matches!(rec.event, Event::Opened { .. }) {
                    continue;
                }
                let mut again = self.live[i].clone();
                if let Event::Opened { continued, .. } = &mut again.event {
                    *continued = true;
                }
                self.append(&again);
            }
        }
        match &rec.event {
            Event::Opened { .. } => {
                self.live.retain(|r| r.conn != rec.conn);
                if self.live.len() >= LIVE_MAX {
                    self.live.remove(0);
                }
                let mut kept = rec.clone();
                if let Event::Opened { continued, .. } = &mut kept.event {
                    *continued = false;
                }
                self.live.push(kept);
            }
            Event::Closed { .. } => self.live.retain(|r| r.conn != rec.conn),
            _ => {}
        }
        self.append(rec);
        if self.raw.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Seals the block being filled (if any) and writes it.
    ///
    /// # Errors
    /// The I/O error of writing it.
    pub fn flush_block(&mut self) -> io::Result<()> {
        if self.records == 0 {
            return Ok(());
        }
        let comp = self.compressor.compress(&self.raw)?;
        let header = BlockHeader {
            comp_len: comp.len() as u32,
            raw_len: self.raw.len() as u32,
            records: self.records,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            crc: 0,
        }
        .seal(&comp);
        self.scratch.clear();
        self.scratch.extend_from_slice(&header.to_bytes());
        self.scratch.extend_from_slice(&comp);
        self.out.write_all(&self.scratch)?;
        self.out.flush()?;
        self.index.push(IndexEntry {
            offset: self.offset,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            records: self.records,
        });
        self.offset += self.scratch.len() as u64;
        self.raw.clear();
        self.enc.reset();
        self.records = 0;
        self.first_ns = i64::MAX;
        self.last_ns = i64::MIN;
        Ok(())
    }

    /// Writes the last block and the index; the file is complete.
    ///
    /// # Errors
    /// The I/O error of writing them.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        let index = encode_index(&self.index, self.offset);
        self.out.write_all(&index)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// When a recording moves to its next file. `None`: never by that measure.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rotation {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Rotation {
    pub fn rotates(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some()
    }
}

/// The file of part `n`: `path` itself without rotation, else `<stem>.<n>.twr` beside it
/// (`stem` is the file name without a `.twr` ending).
pub fn part_path(path: &Path, rotation: &Rotation, n: u64) -> PathBuf {
    if !rotation.rotates() {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".twr").unwrap_or(&name);
    path.with_file_name(format!("{stem}.{n}.twr"))
}

/// A recording on disk: the current file, and rotation to the next.
pub struct Recording {
    path: PathBuf,
    rotation: Rotation,
    meta: Meta,
    part: u64,
    current: Option<FileWriter<File>>,
    /// When the current file was started, on the caller's clock.
    started: Duration,
}

impl Recording {
    /// Creates (or truncates) the first file. `now` is the caller's clock (for rotation by
    /// age); `wall_ns` stamps the header.
    ///
    /// # Errors
    /// The file could not be created or written.
    pub fn create(
        path: &Path,
        rotation: Rotation,
        mut meta: Meta,
        now: Duration,
        wall_ns: i64,
    ) -> io::Result<Self> {
        meta.part = 0;
        meta.created_ns = wall_ns;
        let file = File::create(part_path(path, &rotation, 0))?;
        let current = FileWriter::new(file, &meta, Vec::new())?;
        Ok(Recording {
            path: path.to_path_buf(),
            rotation,
            meta,
            part: 0,
            current: Some(current),
            started: now,
        })
    }

    /// The file being written.
    pub fn current_path(&self) -> PathBuf {
        part_path(&self.path, &self.rotation, self.part)
    }

    fn writer(&mut self) -> io::Result<&mut FileWriter<File>> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("the recording was finished"))
    }

    /// Adds a record (see [`FileWriter::push`]); when that wrote a block, rotates if due.
    ///
    /// # Errors
    /// The I/O error of writing a block or rotating.
    pub fn push(&mut self, rec: &Record, now: Duration, wall_ns: i64) -> io::Result<()> {
        let w = self.writer()?;
        let before = w.written();
        w.push(rec)?;
        if w.written() != before {
            self.rotate_if_due(now, wall_ns)?;
        }
        Ok(())
    }

    /// Whether a block is being filled.
    pub fn pending(&self) -> bool {
        self.current.as_ref().is_some_and(FileWriter::pending)
    }

    /// Writes the block being filled; then, if the file is due for rotation at `now`,
    /// finishes it and starts the next.
    ///
    /// # Errors
    /// The I/O error of writing, finishing or creating a file.
    pub fn flush(&mut self, now: Duration, wall_ns: i64) -> io::Result<()> {
        self.writer()?.flush_block()?;
        self.rotate_if_due(now, wall_ns)
    }

    fn rotate_if_due(&mut self, now: Duration, wall_ns: i64) -> io::Result<()> {
        let written = self.writer()?.written();
        let big = self.rotation.max_bytes.is_some_and(|m| written >= m);
        let old = self
            .rotation
            .max_age
            .is_some_and(|a| now.saturating_sub(self.started) >= a);
        if !(big || old) {
            return Ok(());
        }
        let w = self.current.take().expect("checked above");
        let live = w.live();
        let file = w.finish()?;
        file.sync_data()?;
        self.part += 1;
        self.meta.part = self.part;
        self.meta.created_ns = wall_ns;
        let next = File::create(part_path(&self.path, &self.rotation, self.part))?;
        self.current = Some(FileWriter::new(next, &self.meta, live)?);
        self.started = now;
        Ok(())
    }

    /// Finishes the current file (last block, index) and syncs it to disk.
    ///
    /// # Errors
    /// The I/O error of writing or syncing.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(w) = self.current.take() {
            w.finish()?.sync_data()?;
        }
        Ok(())
    }
}
