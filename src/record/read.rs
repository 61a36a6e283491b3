//! Reading recordings: the header, the index (or, in a file that was never finished, the
//! block headers hopped over without decompressing), and the records in order. Damage ends
//! the records with an error naming its byte offset; whatever came before it is read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{
    decode_index, BlockHeader, Decoder, IndexEntry, Meta, Record, BLOCK_HEADER_LEN, BLOCK_MAGIC,
    END_MAGIC, INDEX_MAGIC, MAGIC, MAX_META, TRAILER_LEN, VERSION,
};

/// Why a recording cannot be read (further).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read the recording {path}: {error}")]
    Io { path: String, error: String },
    /// The file does not start like a recording.
    #[error("{path} is not a tickwire recording (its first bytes are not the recording magic)")]
    NotRecording { path: String },
    /// Written by a newer tickwire.
    #[error(
        "{path} is a recording of format version {version}; this tickwire reads format \
         versions up to {VERSION}: upgrade tickwire to replay it"
    )]
    Newer { path: String, version: u16 },
    /// The bytes at `offset` are not what the format says; everything before was read.
    #[error("the recording {path} is damaged at byte {offset}: {what}")]
    Damaged {
        path: String,
        offset: u64,
        what: String,
    },
}

/// One recording file open for reading.
pub struct Reader {
    path: String,
    file: File,
    meta: Meta,
    len: u64,
    /// Where the blocks start (after the header).
    data_start: u64,
    /// The index of a finished file, and where it starts.
    index: Option<(Vec<IndexEntry>, u64)>,
    /// The next block's offset.
    pos: u64,
    /// The block being read and its offset.
    block: Option<(Decoder, u64)>,
    /// Set once an error was returned: nothing more is read.
    done: bool,
}

fn damaged(path: &str, offset: u64, what: impl Into<String>) -> ReadError {
    ReadError::Damaged {
        path: path.to_string(),
        offset,
        what: what.into(),
    }
}

impl Reader {
    /// Opens a recording and reads its header and index.
    ///
    /// # Errors
    /// [`ReadError`]: not readable, not a recording, a newer format, or a damaged header.
    pub fn open(path: &Path) -> Result<Reader, ReadError> {
        let shown = path.display().to_string();
        let io_err = |e: io::Error| ReadError::Io {
            path: shown.clone(),
            error: e.to_string(),
        };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut head = [0u8; 14];
        let got = read_up_to(&mut file, &mut head).map_err(io_err)?;
        if got < MAGIC.len() || head[..8] != MAGIC {
            if got < MAGIC.len() && head[..got] == MAGIC[..got] {
                return Err(damaged(
                    &shown,
                    got as u64,
                    "the file ends inside its header",
                ));
            }
            return Err(ReadError::NotRecording { path: shown });
        }
        if got < 14 {
            return Err(damaged(
                &shown,
                got as u64,
                "the file ends inside its header",
            ));
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version > VERSION {
            return Err(ReadError::Newer {
                path: shown,
                version,
            });
        }
        if version == 0 {
            return Err(damaged(&shown, 8, "format version 0 does not exist"));
        }
        let meta_len = u32::from_le_bytes([head[10], head[11], head[12], head[13]]);
        if meta_len > MAX_META || 14 + u64::from(meta_len) > len {
            return Err(damaged(
                &shown,
                10,
                format!("a metadata length of {meta_len} bytes runs past the file"),
            ));
        }
        let mut json = vec![0u8; meta_len as usize];
        file.read_exact(&mut json).map_err(io_err)?;
        let meta = Meta::from_json(&json).map_err(|e| damaged(&shown, 14, e))?;
        let data_start = 14 + u64::from(meta_len);
        let mut r = Reader {
            path: shown,
            file,
            meta,
            len,
            data_start,
            index: None,
            pos: data_start,
            block: None,
            done: false,
        };
        r.index = r.read_index().unwrap_or(None);
        Ok(r)
    }

    /// The header's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The file's path as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the file was finished (has a sound index).
    pub fn finished(&self) -> bool {
        self.index.is_some()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.seek(SeekFrom::Start(offset))?;
        read_up_to(&mut self.file, buf)
    }

    /// The index of a finished file, if its trailer and index are sound.
    fn read_index(&mut self) -> io::Result<Option<(Vec<IndexEntry>, u64)>> {
        if self.len < self.data_start + TRAILER_LEN as u64 {
            return Ok(None);
        }
        let mut t = [0u8; TRAILER_LEN];
        self.read_at(self.len - TRAILER_LEN as u64, &mut t)?;
        if t[8..] != END_MAGIC {
            return Ok(None);
        }
        let at = u64::from_le_bytes(t[..8].try_into().expect("8 bytes"));
        let end = self.len - TRAILER_LEN as u64;
        if at < self.data_start || at > end || end - at > u64::from(u32::MAX) {
            return Ok(None);
        }
        let mut body = vec![0u8; (end - at) as usize];
        if self.read_at(at, &mut body)? != body.len() {
            return Ok(None);
        }
        Ok(decode_index(&body).map(|e| (e, at)))
    }

    /// Every block's offset and time range: from the index of a finished file, else from the
    /// block headers (hopped over without decompressing), up to the first damage.
    ///
    /// # Errors
    /// [`ReadError::Io`] when the file cannot be read.
    pub fn blocks(&mut self) -> Result<Vec<IndexEntry>, ReadError> {
        if let Some((entries, _)) = &self.index {
            return Ok(entries.clone());
        }
        let mut out = Vec::new();
        let mut pos = self.data_start;
        let mut h = [0u8; BLOCK_HEADER_LEN];
        loop {
            let got = self.read_at(pos, &mut h).map_err(|e| self.io(&e))?;
            if got < BLOCK_HEADER_LEN {
                break;
            }
            let Ok(header) = BlockHeader::parse(&h) else {
                break;
            };
            let next = pos + BLOCK_HEADER_LEN as u64 + u64::from(header.comp_len);
            if next > self.len {
                break;
            }
            out.push(IndexEntry {
                offset: pos,
                first_ns: header.first_ns,
                last_ns: header.last_ns,
                records: header.records,
            });
            pos = next;
        }
        Ok(out)
    }

    /// Positions the reader at the first block that may hold a record at or after
    /// `start_ns` (records before it in that block are still returned: blocks start with
    /// the open connections restated, and the caller filters by time).
    ///
    /// # Errors
    /// [`ReadError::Io`] when the file cannot be read.
    pub fn seek(&mut self, start_ns: i64) -> Result<(), ReadError> {
        let blocks = self.blocks()?;
        self.block = None;
        self.pos = match blocks.iter().find(|b| b.last_ns >= start_ns) {
            Some(b) => b.offset,
            // Nothing that late: the end of the data (damage after it is still reported).
            None => blocks.last().map_or(self.data_start, |b| {
                b.offset + BLOCK_HEADER_LEN as u64 + self.comp_len_at(b.offset)
            }),
        };
        Ok(())
    }

    fn comp_len_at(&mut self, offset: u64) -> u64 {
        let mut h = [0u8; BLOCK_HEADER_LEN];
        match self.read_at(offset, &mut h) {
            Ok(BLOCK_HEADER_LEN) => BlockHeader::parse(&h).map_or(0, |b| u64::from(b.comp_len)),
            _ => 0,
        }
    }

    fn io(&self, e: &io::Error) -> ReadError {
        ReadError::Io {
            path: self.path.clone(),
            error: e.to_string(),
        }
    }

    /// Reads the block at `self.pos`; `Ok(false)` at the clean end of a finished file.
    fn load_block(&mut self) -> Result<bool, ReadError> {
        let at = self.pos;
        if let Some((_, index_at)) = &self.index {
            if at == *index_at {
                return Ok(false);
            }
        }
        if at >= self.len {
            return Err(damaged(
                &self.path,
                at,
                "the file ends here without its index: the recording was not finished (its \
                 writer stopped, e.g. a crash or a full disk); everything before was read",
            ));
        }
        let mut h = [0u8; BLOCK_HEADER_LEN];
        let got = self.read_at(at, &mut h).map_err(|e| self.io(&e))?;
        if got >= 4 && h[..4] == INDEX_MAGIC {
            return Err(damaged(&self.path, at, "the index is damaged or cut short"));
        }
        if got < BLOCK_HEADER_LEN {
            if h[..got.min(4)] == BLOCK_MAGIC[..got.min(4)] {
                return Err(damaged(
                    &self.path,
                    at,
                    "the file ends inside a block header",
                ));
            }
            return Err(damaged(&self.path, at, "no block starts here"));
        }
        let header = BlockHeader::parse(&h).map_err(|e| damaged(&self.path, at, e))?;
        let body_at = at + BLOCK_HEADER_LEN as u64;
        if body_at + u64::from(header.comp_len) > self.len {
            return Err(damaged(
                &self.path,
                at,
                format!(
                    "the block's {} compressed bytes run past the end of the file (at byte {})",
                    header.comp_len, self.len
                ),
            ));
        }
        let mut comp = vec![0u8; header.comp_len as usize];
        let got = read_up_to(&mut self.file, &mut comp).map_err(|e| self.io(&e))?;
        if got != comp.len() {
            return Err(damaged(&self.path, at, "the block is cut short"));
        }
        if !header.verify(&comp) {
            return Err(damaged(
                &self.path,
                at,
                "the block's checksum does not match its bytes",
            ));
        }
        let raw = zstd::bulk::decompress(&comp, header.raw_len as usize).map_err(|e| {
            damaged(
                &self.path,
                at,
                format!("the block does not decompress: {e}"),
            )
        })?;
        if raw.len() != header.raw_len as usize {
            return Err(damaged(
                &self.path,
                at,
                format!(
                    "the block decompresses to {} bytes, not the {} its header says",
                    raw.len(),
                    header.raw_len
                ),
            ));
        }
        self.block = Some((Decoder::new(Bytes::from(raw)), at));
        self.pos = body_at + u64::from(header.comp_len);
        Ok(true)
    }

    /// The next record; `None` at the end of a finished file. An error (damage, or the end
    /// of a file that was never finished) is returned once, and then `None`.
    pub fn next_record(&mut self) -> Option<Result<Record, ReadError>> {
        if self.done {
            return None;
        }
        loop {
            if let Some((dec, at)) = &mut self.block {
                match dec.next_record() {
                    Some(Ok(r)) => return Some(Ok(r)),
                    Some(Err(m)) => {
                        let at = *at;
                        self.done = true;
                        return Some(Err(damaged(
                            &self.path,
                            at,
                            format!(
                                "record at byte {} of the block's decompressed bytes: {}",
                                m.at, m.what
                            ),
                        )));
                    }
                    None => self.block = None,
                }
            }
            match self.load_block() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Reads until `buf` is full or the file ends; how many bytes were read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The files of a recording given as one path: the path itself if it exists, else its
/// rotated parts `<stem>.0.twr`, `<stem>.1.twr`, ... in order.
pub fn parts_of(path: &Path) -> Vec<PathBuf> {
    if path.exists() {
        return vec![path.to_path_buf()];
    }
    let rotation = super::write::Rotation {
        max_bytes: Some(1),
        max_age: None,
    };
    let mut out = Vec::new();
    for n in 0.. {
        let p = super::write::part_path(path, &rotation, n);
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    if out.is_empty() {
        out.push(path.to_path_buf());
    }
    out
}
