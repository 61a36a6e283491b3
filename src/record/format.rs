//! The recording format's pure parts: the records, their byte encoding, the file header,
//! block headers and the index. Nothing here opens a file or reads a clock; `write` and
//! `read` do the I/O. `docs/recording.md` describes the same layout for other readers.

use bytes::Bytes;

/// The first bytes of every recording. The `\r\n` and `\0` catch a file mangled by a
/// text-mode transfer, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"TWREC\r\n\0";
/// The format version this build writes, and the newest it reads.
pub const VERSION: u16 = 1;
/// The start of every block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"TWBK";
/// The start of the index written when a file is finished.
pub const INDEX_MAGIC: [u8; 4] = *b"TWIX";
/// The last 8 bytes of a finished file (after the index's offset).
pub const END_MAGIC: [u8; 8] = *b"TWEND\0\0\0";
/// Block header: magic, compressed length, raw length, records, first and last `recv_ns`,
/// CRC-32 of the header's first 32 bytes and the compressed bytes.
pub const BLOCK_HEADER_LEN: usize = 36;
/// One index entry: block offset, first and last `recv_ns`, records.
pub const INDEX_ENTRY_LEN: usize = 28;
/// The trailer of a finished file: the index's offset and [`END_MAGIC`].
pub const TRAILER_LEN: usize = 16;
/// The largest block (raw or compressed) a reader accepts: a damaged length field must not
/// make it allocate without bound. A block holds one record at least, and frames are bounded
/// by `max_message_size` (16 MiB by default), so this leaves room.
pub const MAX_BLOCK: u32 = 1 << 30;
/// The largest header metadata a reader accepts.
pub const MAX_META: u32 = 1 << 20;

/// The `conn` of records that belong to no connection.
pub const NO_CONN: u32 = u32::MAX;

/// Which of a stream's connections a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The connection delivered from (a reconnect opens a new primary).
    Primary,
    /// A make-before-break successor, opened on a reconnect notice.
    Successor,
}

/// When a record happened: the wall clock (`recv_ns` for frames) and the monotonic time since
/// its connection task began, which drives the connection machine's deadlines on replay.
/// Records that are no machine input (`Closed`, `ConnectFailed`, `Lost`) carry `mono_ns` 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub wall_ns: i64,
    pub mono_ns: u64,
}

/// A consumer request the connection machine acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Close,
    /// The consumer went away while a batch was being handed over.
    ConsumerGone,
    Resync {
        symbol_id: String,
        book_type: String,
    },
    /// A scope change; what it sent follows as `Sent` records.
    Subscribe,
    Unsubscribe,
}

/// What one record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection was opened. `settings` is the connection machine's settings as JSON
    /// (`{}` for a successor, which shares its primary's). `continued` marks a restatement at
    /// the start of a block or file, for readers that start there; a reader that saw the
    /// connection open skips it.
    Opened {
        role: Role,
        attempt: u32,
        url: String,
        settings: String,
        continued: bool,
    },
    /// A data frame as received (after inflate).
    Data {
        payload: Bytes,
        binary: bool,
    },
    Ping,
    Pong,
    /// The server's close frame.
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// A text frame tickwire sent, keys scrubbed.
    Sent {
        text: String,
    },
    /// A ping tickwire sent.
    SentPing,
    /// Reading the connection failed (no close frame, a broken rule, an oversize frame).
    ReadError {
        reason: String,
        code: Option<u16>,
    },
    /// Writing to the connection failed or missed its deadline.
    WriteError {
        reason: String,
    },
    /// The make-before-break successor could not be opened.
    SuccessorFailed {
        reason: String,
    },
    /// The connection machine's deadline was reached.
    Deadline,
    Request(Request),
    /// The connection is over. `reported`: the stream delivered `Disconnected(reason, code)`
    /// at `wall_ns` (a connection never made, a switched-away one or a consumer's close is
    /// not reported).
    Closed {
        reported: bool,
        reason: String,
        code: Option<u16>,
    },
    /// A dial that failed before any connection existed.
    ConnectFailed {
        attempt: u32,
        reason: String,
    },
    /// The recorder lost this many records because the disk did not keep up.
    Lost {
        records: u64,
    },
}

/// One record: what happened, when, on which connection (a number unique within the
/// recording's session, counted from 0; `Lost` and `ConnectFailed` belong to no connection and
/// carry [`NO_CONN`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub conn: u32,
    pub at: Stamp,
    pub event: Event,
}

impl Record {
    /// About how many bytes the record holds, for the recorder's in-flight bound.
    pub fn weight(&self) -> usize {
        64 + match &self.event {
            Event::Data { payload, .. } => payload.len(),
            Event::Opened { url, settings, .. } => url.len() + settings.len(),
            Event::Close { reason, .. }
            | Event::ReadError { reason, .. }
            | Event::WriteError { reason }
            | Event::SuccessorFailed { reason }
            | Event::Closed { reason, .. }
            | Event::ConnectFailed { reason, .. } => reason.len(),
            Event::Sent { text } => text.len(),
            Event::Request(Request::Resync { symbol_id, .. }) => symbol_id.len(),
            _ => 0,
        }
    }
}

mod kind {
    pub const OPENED: u8 = 1;
    pub const DATA_TEXT: u8 = 2;
    pub const DATA_BINARY: u8 = 3;
    pub const PING: u8 = 4;
    pub const PONG: u8 = 5;
    pub const CLOSE: u8 = 6;
    pub const SENT: u8 = 7;
    pub const SENT_PING: u8 = 8;
    pub const READ_ERROR: u8 = 9;
    pub const WRITE_ERROR: u8 = 10;
    pub const SUCCESSOR_FAILED: u8 = 11;
    pub const DEADLINE: u8 = 12;
    pub const REQUEST: u8 = 13;
    pub const CLOSED: u8 = 14;
    pub const CONNECT_FAILED: u8 = 15;
    pub const LOST: u8 = 16;
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A close code as one varint: 0 for none, else code + 1.
fn put_code(out: &mut Vec<u8>, code: Option<u16>) {
    put_varint(out, code.map_or(0, |c| u64::from(c) + 1));
}

/// Encodes records one after another, times as deltas from the previous record of the same
/// block (so a block decodes on its own).
#[derive(Default)]
pub struct Encoder {
    prev: Stamp,
}

impl Encoder {
    /// Forgets the previous record: the next one starts a block.
    pub fn reset(&mut self) {
        self.prev = Stamp::default();
    }

    /// Appends `rec` to `out`.
    pub fn encode(&mut self, rec: &Record, out: &mut Vec<u8>) {
        let kind = match &rec.event {
            Event::Opened { .. } => kind::OPENED,
            Event::Data { binary: false, .. } => kind::DATA_TEXT,
            Event::Data { binary: true, .. } => kind::DATA_BINARY,
            Event::Ping => kind::PING,
            Event::Pong => kind::PONG,
            Event::Close { .. } => kind::CLOSE,
            Event::Sent { .. } => kind::SENT,
            Event::SentPing => kind::SENT_PING,
            Event::ReadError { .. } => kind::READ_ERROR,
            Event::WriteError { .. } => kind::WRITE_ERROR,
            Event::SuccessorFailed { .. } => kind::SUCCESSOR_FAILED,
            Event::Deadline => kind::DEADLINE,
            Event::Request(_) => kind::REQUEST,
            Event::Closed { .. } => kind::CLOSED,
            Event::ConnectFailed { .. } => kind::CONNECT_FAILED,
            Event::Lost { .. } => kind::LOST,
        };
        out.push(kind);
        put_varint(out, u64::from(rec.conn));
        put_varint(out, zigzag(rec.at.wall_ns.wrapping_sub(self.prev.wall_ns)));
        put_varint(
            out,
            zigzag((rec.at.mono_ns as i64).wrapping_sub(self.prev.mono_ns as i64)),
        );
        self.prev = rec.at;
        match &rec.event {
            Event::Opened {
                role,
                attempt,
                url,
                settings,
                continued,
            } => {
                out.push(u8::from(*role == Role::Successor) | (u8::from(*continued) << 1));
                put_varint(out, u64::from(*attempt));
                put_bytes(out, url.as_bytes());
                put_bytes(out, settings.as_bytes());
            }
            Event::Data { payload, .. } => put_bytes(out, payload),
            Event::Ping | Event::Pong | Event::SentPing | Event::Deadline => {}
            Event::Close { code, reason } | Event::ReadError { reason, code } => {
                put_code(out, *code);
                put_bytes(out, reason.as_bytes());
            }
            Event::Sent { text } => put_bytes(out, text.as_bytes()),
            Event::WriteError { reason } | Event::SuccessorFailed { reason } => {
                put_bytes(out, reason.as_bytes());
            }
            Event::Request(r) => match r {
                Request::Close => out.push(0),
                Request::ConsumerGone => out.push(1),
                Request::Resync {
                    symbol_id,
                    book_type,
                } => {
                    out.push(2);
                    put_bytes(out, symbol_id.as_bytes());
                    put_bytes(out, book_type.as_bytes());
                }
                Request::Subscribe => out.push(3),
                Request::Unsubscribe => out.push(4),
            },
            Event::Closed {
                reported,
                reason,
                code,
            } => {
                out.push(u8::from(*reported));
                put_code(out, *code);
                put_bytes(out, reason.as_bytes());
            }
            Event::ConnectFailed { attempt, reason } => {
                put_varint(out, u64::from(*attempt));
                put_bytes(out, reason.as_bytes());
            }
            Event::Lost { records } => put_varint(out, *records),
        }
    }
}

/// Why bytes could not be decoded: what was wrong, at which offset of the decoded buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub at: usize,
    pub what: String,
}

/// Decodes the records of one block's raw (decompressed) bytes.
pub struct Decoder {
    buf: Bytes,
    pos: usize,
    prev: Stamp,
}

impl Decoder {
    pub fn new(buf: Bytes) -> Self {
        Decoder {
            buf,
            pos: 0,
            prev: Stamp::default(),
        }
    }

    /// Where the next record starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn fail<T>(&self, what: impl Into<String>) -> Result<T, Malformed> {
        Err(Malformed {
            at: self.pos,
            what: what.into(),
        })
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let Some(&b) = self.buf.get(self.pos) else {
            return self.fail("record cut short");
        };
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        self.fail("varint longer than 10 bytes")
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let v = self.varint()?;
        u32::try_from(v).or_else(|_| self.fail(format!("{v} does not fit 32 bits")))
    }

    fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return self.fail(format!("a length of {n} bytes runs past the block"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(self.buf.slice(start..self.pos))
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| Malformed {
            at,
            what: "text is not UTF-8".into(),
        })
    }

    fn code(&mut self) -> Result<Option<u16>, Malformed> {
        match self.varint()? {
            0 => Ok(None),
            c => u16::try_from(c - 1)
                .map(Some)
                .or_else(|_| self.fail(format!("close code {} out of range", c - 1))),
        }
    }

    /// The next record, `None` at the end of the block.
    ///
    /// # Errors
    /// [`Malformed`] when the bytes are not a record; the position is then not advanced
    /// further (the rest of the block is not trusted).
    pub fn next_record(&mut self) -> Option<Result<Record, Malformed>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let r = self.record();
        if let Err(e) = &r {
            // Stop here: later bytes of a damaged block are not trusted.
            self.pos = self.buf.len();
            return Some(Err(Malformed {
                at: e.at.max(start),
                what: e.what.clone(),
            }));
        }
        Some(r)
    }

    fn record(&mut self) -> Result<Record, Malformed> {
        let kind = self.byte()?;
        let conn = self.u32()?;
        let wall_ns = self.prev.wall_ns.wrapping_add(unzigzag(self.varint()?));
        let mono_ns = (self.prev.mono_ns as i64).wrapping_add(unzigzag(self.varint()?)) as u64;
        let at = Stamp { wall_ns, mono_ns };
        self.prev = at;
        let event = match kind {
            kind::OPENED => {
                let flags = self.byte()?;
                if flags > 3 {
                    return self.fail(format!("unknown connection flags {flags}"));
                }
                Event::Opened {
                    role: if flags & 1 == 1 {
                        Role::Successor
                    } else {
                        Role::Primary
                    },
                    continued: flags & 2 == 2,
                    attempt: self.u32()?,
                    url: self.string()?,
                    settings: self.string()?,
                }
            }
            kind::DATA_TEXT | kind::DATA_BINARY => Event::Data {
                payload: self.bytes()?,
                binary: kind == kind::DATA_BINARY,
            },
            kind::PING => Event::Ping,
            kind::PONG => Event::Pong,
            kind::CLOSE => Event::Close {
                code: self.code()?,
                reason: self.string()?,
            },
            kind::SENT => Event::Sent {
                text: self.string()?,
            },
            kind::SENT_PING => Event::SentPing,
            kind::READ_ERROR => Event::ReadError {
                code: self.code()?,
                reason: self.string()?,
            },
            kind::WRITE_ERROR => Event::WriteError {
                reason: self.string()?,
            },
            kind::SUCCESSOR_FAILED => Event::SuccessorFailed {
                reason: self.string()?,
            },
            kind::DEADLINE => Event::Deadline,
            kind::REQUEST => Event::Request(match self.byte()? {
                0 => Request::Close,
                1 => Request::ConsumerGone,
                2 => Request::Resync {
                    symbol_id: self.string()?,
                    book_type: self.string()?,
                },
                3 => Request::Subscribe,
                4 => Request::Unsubscribe,
                other => return self.fail(format!("unknown request kind {other}")),
            }),
            kind::CLOSED => {
                let reported = match self.byte()? {
                    0 => false,
                    1 => true,
                    other => return self.fail(format!("bad flag {other}")),
                };
                Event::Closed {
                    reported,
                    code: self.code()?,
                    reason: self.string()?,
                }
            }
            kind::CONNECT_FAILED => Event::ConnectFailed {
                attempt: self.u32()?,
                reason: self.string()?,
            },
            kind::LOST => Event::Lost {
                records: self.varint()?,
            },
            other => {
                self.pos -= 1;
                return Err(Malformed {
                    at: self.pos,
                    what: format!("unknown record kind {other}"),
                });
            }
        };
        Ok(Record { conn, at, event })
    }
}

/// A block's header: where its records lie in time, and how to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub comp_len: u32,
    pub raw_len: u32,
    pub records: u32,
    /// The smallest and largest `wall_ns` of the block's records.
    pub first_ns: i64,
    pub last_ns: i64,
    /// CRC-32 of the header's first 32 bytes and the compressed bytes.
    pub crc: u32,
}

impl BlockHeader {
    fn head(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&BLOCK_MAGIC);
        b[4..8].copy_from_slice(&self.comp_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.records.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_ns.to_le_bytes());
        b[24..32].copy_from_slice(&self.last_ns.to_le_bytes());
        b
    }

    /// The header for a block of `comp` compressed bytes.
    pub fn seal(mut self, comp: &[u8]) -> Self {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.head());
        h.update(comp);
        self.crc = h.finalize();
        self
    }

    /// Whether `comp` is the block this header was sealed for.
    pub fn verify(&self, comp: &[u8]) -> bool {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.head());
        h.update(comp);
        h.finalize() == self.crc
    }

    pub fn to_bytes(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[..32].copy_from_slice(&self.head());
        b[32..36].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Parses a header; `Err` says what is wrong with it.
    ///
    /// # Errors
    /// A text naming the field at fault.
    pub fn parse(b: &[u8; BLOCK_HEADER_LEN]) -> Result<Self, String> {
        if b[0..4] != BLOCK_MAGIC {
            return Err("no block starts here".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let i64_at = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let h = BlockHeader {
            comp_len: u32_at(4),
            raw_len: u32_at(8),
            records: u32_at(12),
            first_ns: i64_at(16),
            last_ns: i64_at(24),
            crc: u32_at(32),
        };
        if h.comp_len > MAX_BLOCK || h.raw_len > MAX_BLOCK {
            return Err(format!(
                "block lengths {} / {} exceed the {} byte bound",
                h.comp_len, h.raw_len, MAX_BLOCK
            ));
        }
        Ok(h)
    }
}

/// One index entry: a block's offset in the file and its time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub records: u32,
}

/// The index written at the end of a finished file: [`INDEX_MAGIC`], the entry count (u32),
/// the entries, a CRC-32 of all that; then the trailer (the index's offset, [`END_MAGIC`]).
pub fn encode_index(entries: &[IndexEntry], index_offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + entries.len() * INDEX_ENTRY_LEN + TRAILER_LEN);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.first_ns.to_le_bytes());
        out.extend_from_slice(&e.last_ns.to_le_bytes());
        out.extend_from_slice(&e.records.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    out
}

/// Parses an index (from [`INDEX_MAGIC`] to its CRC); `None` if it is not a sound one.
pub fn decode_index(b: &[u8]) -> Option<Vec<IndexEntry>> {
    if b.len() < 12 || b[0..4] != INDEX_MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(b[4..8].try_into().ok()?) as usize;
    let body = 8 + n.checked_mul(INDEX_ENTRY_LEN)?;
    if b.len() != body + 4 {
        return None;
    }
    let crc = u32::from_le_bytes(b[body..body + 4].try_into().ok()?);
    if crc32fast::hash(&b[..body]) != crc {
        return None;
    }
    let entries = b[8..body]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|c| IndexEntry {
            offset: u64::from_le_bytes(c[0..8].try_into().expect("8")),
            first_ns: i64::from_le_bytes(c[8..16].try_into().expect("8")),
            last_ns: i64::from_le_bytes(c[16..24].try_into().expect("8")),
            records: u32::from_le_bytes(c[24..28].try_into().expect("4")),
        })
        .collect();
    Some(entries)
}

/// The header's JSON metadata: what was recorded, from where, by what.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// "coinapi" or "moment".
    pub venue: String,
    /// "coinapi" (market data), "prices" or "orders" (Moment).
    pub feed: String,
    /// The feed URL, as tickwire shows it (no key).
    pub url: String,
    /// What the stream asked for: its opening requests as sent (keys scrubbed), one per line.
    pub scope: String,
    /// The tickwire version that wrote the file.
    pub tickwire: String,
    /// When the file was started, ns since the epoch.
    pub created_ns: i64,
    /// Which file of a rotated recording this is (0 for the first or only one).
    pub part: u64,
}

impl Meta {
    pub fn to_json(&self) -> String {
        crate::codec::write::ObjectWriter::default()
            .str("venue", &self.venue)
            .str("feed", &self.feed)
            .str("url", &self.url)
            .str("scope", &self.scope)
            .str("tickwire", &self.tickwire)
            .int("created_ns", u64::try_from(self.created_ns).unwrap_or(0))
            .int("part", self.part)
            .finish()
    }

    /// Reads the metadata; unknown fields are ignored (a later minor addition), missing ones
    /// are empty.
    ///
    /// # Errors
    /// A text when the bytes are not a JSON object.
    pub fn from_json(b: &[u8]) -> Result<Meta, String> {
        use simd_json::prelude::*;
        let mut owned = b.to_vec();
        let v = simd_json::to_owned_value(&mut owned)
            .map_err(|e| format!("the header's metadata is not JSON: {e}"))?;
        if v.as_object().is_none() {
            return Err("the header's metadata is not a JSON object".into());
        }
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        Ok(Meta {
            venue: s("venue"),
            feed: s("feed"),
            url: s("url"),
            scope: s("scope"),
            tickwire: s("tickwire"),
            created_ns: i64::try_from(n("created_ns")).unwrap_or(0),
            part: n("part"),
        })
    }
}

/// The file header: [`MAGIC`], [`VERSION`] (u16 LE), the metadata's length (u32 LE), the
/// metadata JSON.
pub fn encode_header(meta: &Meta) -> Vec<u8> {
    let json = meta.to_json();
    let mut out = Vec::with_capacity(14 + json.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// Replaces the values of key-bearing fields of a JSON text tickwire sent (`apikey`,
/// `auth_token`, `api_key`, `token`, `key`) with `"***"`. Text that is not JSON is kept only
/// if it carries none of those names; otherwise it is replaced whole, since what it holds
/// cannot be told.
pub fn scrub(text: &str) -> String {
    const NAMES: [&str; 5] = ["apikey", "auth_token", "api_key", "token", "key"];
    let lower = text.to_ascii_lowercase();
    if !NAMES.iter().any(|n| lower.contains(&format!("\"{n}\""))) {
        return text.to_string();
    }
    use simd_json::prelude::*;
    let mut owned = text.as_bytes().to_vec();
    match simd_json::to_owned_value(&mut owned) {
        Ok(mut v) => {
            if let Some(obj) = v.as_object_mut() {
                for (k, val) in obj.iter_mut() {
                    if NAMES.contains(&k.to_ascii_lowercase().as_str()) {
                        *val = simd_json::OwnedValue::from("***");
                    }
                }
            }
            v.encode()
        }
        Err(_) => "[scrubbed: unparsable text that named a key field]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        let at = |w: i64, m: u64| Stamp {
            wall_ns: w,
            mono_ns: m,
        };
        vec![
            Record {
                conn: 0,
                at: at(1_700_000_000_000_000_000, 0),
                event: Event::Opened {
                    role: Role::Primary,
                    attempt: 2,
                    url: "ws://127.0.0.1:9/v1/".into(),
                    settings: "{\"batch_size\":1024}".into(),
                    continued: false,
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_000_500, 500),
                event: Event::Sent {
                    text: "{\"type\":\"hello\"}".into(),
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_100_000, 100_000),
                event: Event::Data {
                    payload: Bytes::from_static(b"{\"type\":\"trade\"}"),
                    binary: false,
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_090_000, 100_001),
                event: Event::Data {
                    payload: Bytes::from_static(&[0, 159, 146, 150]),
                    binary: true,
                },
            },
            Record {
                conn: 1,
                at: at(1_700_000_000_000_200_000, 200_000),
                event: Event::Opened {
                    role: Role::Successor,
                    attempt: 2,
                    url: String::new(),
                    settings: "{}".into(),
                    continued: true,
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_300_000, 300_000),
                event: Event::Ping,
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_300_001, 300_001),
                event: Event::Pong,
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_300_002, 300_002),
                event: Event::SentPing,
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_400_000, 400_000),
                event: Event::Close {
                    code: Some(1001),
                    reason: "going away".into(),
                },
            },
            Record {
                conn: 1,
                at: at(1_700_000_000_000_400_001, 400_001),
                event: Event::ReadError {
                    reason: "reset".into(),
                    code: None,
                },
            },
            Record {
                conn: 1,
                at: at(1_700_000_000_000_400_002, 400_002),
                event: Event::WriteError {
                    reason: "timed out".into(),
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_000_400_003, 400_003),
                event: Event::SuccessorFailed {
                    reason: "refused".into(),
                },
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_003_400_003, 3_400_003),
                event: Event::Deadline,
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_003_400_004, 3_400_004),
                event: Event::Request(Request::Resync {
                    symbol_id: "X".into(),
                    book_type: "book".into(),
                }),
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_003_400_005, 3_400_005),
                event: Event::Request(Request::Close),
            },
            Record {
                conn: 0,
                at: at(1_700_000_000_003_400_006, 0),
                event: Event::Closed {
                    reported: true,
                    reason: "server closed the connection".into(),
                    code: Some(1000),
                },
            },
            Record {
                conn: 2,
                at: at(1_700_000_000_003_400_007, 0),
                event: Event::ConnectFailed {
                    attempt: 3,
                    reason: "connection refused".into(),
                },
            },
            Record {
                conn: 2,
                at: at(1_700_000_000_003_400_008, 0),
                event: Event::Lost { records: 7 },
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let recs = sample();
        let mut enc = Encoder::default();
        let mut buf = Vec::new();
        for r in &recs {
            enc.encode(r, &mut buf);
        }
        let mut dec = Decoder::new(Bytes::from(buf));
        let back: Vec<Record> = std::iter::from_fn(|| dec.next_record())
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, recs);
    }

    #[test]
    fn truncated_records_fail_with_a_position_never_a_panic() {
        let mut enc = Encoder::default();
        let mut buf = Vec::new();
        for r in &sample() {
            enc.encode(r, &mut buf);
        }
        for cut in 0..buf.len() {
            let mut dec = Decoder::new(Bytes::copy_from_slice(&buf[..cut]));
            let mut n = 0;
            while let Some(r) = dec.next_record() {
                match r {
                    Ok(_) => n += 1,
                    Err(e) => {
                        assert!(e.at <= cut, "{e:?} at cut {cut}");
                        break;
                    }
                }
            }
            assert!(n <= sample().len());
        }
    }

    #[test]
    fn block_header_checks_its_bytes() {
        let comp = b"compressed".to_vec();
        let h = BlockHeader {
            comp_len: comp.len() as u32,
            raw_len: 99,
            records: 3,
            first_ns: -5,
            last_ns: 7,
            crc: 0,
        }
        .seal(&comp);
        let parsed = BlockHeader::parse(&h.to_bytes()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify(&comp));
        assert!(!parsed.verify(b"compressee"));
        let mut bad = h.to_bytes();
        bad[0] = b'X';
        assert!(BlockHeader::parse(&bad).is_err());
    }

    #[test]
    fn index_round_trips_and_refuses_damage() {
        let entries = vec![
            IndexEntry {
                offset: 20,
                first_ns: 1,
                last_ns: 2,
                records: 3,
            },
            IndexEntry {
                offset: 900,
                first_ns: 3,
                last_ns: 9,
                records: 1,
            },
        ];
        let bytes = encode_index(&entries, 1234);
        let body = &bytes[..bytes.len() - TRAILER_LEN];
        assert_eq!(decode_index(body).unwrap(), entries);
        let mut bad = body.to_vec();
        bad[10] ^= 1;
        assert!(decode_index(&bad).is_none());
        assert_eq!(&bytes[bytes.len() - 8..], &END_MAGIC);
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta {
            venue: "coinapi".into(),
            feed: "coinapi".into(),
            url: "ws://127.0.0.1:1/v1/".into(),
            scope: "{\"type\":\"hello\"}".into(),
            tickwire: "0.1.0".into(),
            created_ns: 1_700_000_000_000_000_000,
            part: 3,
        };
        assert_eq!(Meta::from_json(m.to_json().as_bytes()).unwrap(), m);
        assert!(Meta::from_json(b"[1]").is_err());
        assert!(Meta::from_json(b"{").is_err());
    }

    #[test]
    fn scrubs_keys_from_sent_text() {
        let hello = r#"{"type":"hello","apikey":"SECRET-1","heartbeat":true}"#;
        let out = scrub(hello);
        assert!(!out.contains("SECRET-1"), "{out}");
        assert!(out.contains("hello") && out.contains("heartbeat"));
        let moment = r#"{"msg_type":"subscribe","auth_token":"SECRET-2"}"#;
        assert!(!scrub(moment).contains("SECRET-2"));
        let plain = r#"{"type":"subscribe","subscribe_data_type":["trade"]}"#;
        assert_eq!(scrub(plain), plain);
        assert!(!scrub(r#"{"apikey":"SECRET-3""#).contains("SECRET-3"));
    }
}
