//! Writer and reader together: round trip, rotation, seeking, damage at every offset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::format::{Event, Meta, Record, Role, Stamp, VERSION};
use super::read::{parts_of, ReadError, Reader};
use super::write::{part_path, FileWriter, Recording, Rotation};

const T0: i64 = 1_800_000_000_000_000_000;

/// A fresh directory under the target's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "tickwire-record-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn meta() -> Meta {
    Meta {
        venue: "coinapi".into(),
        feed: "coinapi".into(),
        url: "ws://127.0.0.1:1/v1/".into(),
        scope: "{\"type\":\"hello\"}".into(),
        tickwire: "test".into(),
        created_ns: T0,
        part: 0,
    }
}

fn opened(conn: u32, wall_ns: i64) -> Record {
    Record {
        conn,
        at: Stamp {
            wall_ns,
            mono_ns: 0,
        },
        event: Event::Opened {
            role: Role::Primary,
            attempt: conn,
            url: "ws://127.0.0.1:1/v1/".into(),
            settings: "{}".into(),
            continued: false,
        },
    }
}

fn data(conn: u32, i: u64) -> Record {
    Record {
        conn,
        at: Stamp {
            wall_ns: T0 + i as i64 * 1_000,
            mono_ns: i * 1_000,
        },
        event: Event::Data {
            payload: Bytes::from(format!(
                "{{\"type\":\"trade\",\"symbol_id\":\"S{}\",\"sequence\":{i},\"price\":{}.5}}",
                i % 7,
                10_000 + i * 37 % 1000
            )),
            binary: false,
        },
    }
}

fn read_all(path: &Path) -> (Vec<Record>, Option<ReadError>) {
    let mut r = Reader::open(path).unwrap();
    let mut out = Vec::new();
    for x in r.by_ref() {
        match x {
            Ok(rec) => out.push(rec),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn not_continued(recs: Vec<Record>) -> Vec<Record> {
    recs.into_iter()
        .filter(|r| {
            !matches!(
                r.event,
                Event::Opened {
                    continued: true,
                    ..
                }
            )
        })
        .collect()
}

fn write_file(path: &Path, recs: &[Record]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = FileWriter::new(f, &meta(), Vec::new()).unwrap();
    for r in recs {
        w.push(r).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn round_trip_over_many_blocks() {
    let dir = TempDir::new("round");
    let path = dir.path("a.twr");
    let mut recs = vec![opened(0, T0)];
    recs.extend((0..40_000).map(|i| data(0, i)));
    write_file(&path, &recs);
    let mut r = Reader::open(&path).unwrap();
    assert_eq!(r.meta(), &meta());
    assert!(r.finished());
    assert!(r.blocks().unwrap().len() > 2, "several blocks");
    let (back, err) = read_all(&path);
    assert_eq!(err, None);
    // Each block after the first restates the open connection.
    assert!(back.len() > recs.len());
    assert_eq!(not_continued(back), recs);
}

#[test]
fn seek_starts_at_the_block_holding_the_time() {
    let dir = TempDir::new("seek");
    let path = dir.path("a.twr");
    let mut recs = vec![opened(0, T0)];
    recs.extend((0..40_000).map(|i| data(0, i)));
    write_file(&path, &recs);
    let mut r = Reader::open(&path).unwrap();
    let blocks = r.blocks().unwrap();
    let start = T0 + 30_000 * 1_000;
    r.seek(start).unwrap();
    let first: Vec<Record> = r.by_ref().take(2).map(Result::unwrap).collect();
    // The block starts with its restated connection, then data no later than `start`...
    assert!(matches!(
        first[0].event,
        Event::Opened {
            continued: true,
            ..
        }
    ));
    assert!(first[1].at.wall_ns <= start);
    // ...and it is not the first block: the earlier ones were skipped, not decompressed.
    let b = blocks.iter().find(|b| b.last_ns >= start).unwrap();
    assert!(b.offset > blocks[0].offset);
    let rest: Vec<Record> = r.map(Result::unwrap).collect();
    assert!(rest.iter().any(|x| x.at.wall_ns == start));
    assert_eq!(rest.last().unwrap(), recs.last().unwrap());
    // A file never finished has no index: the block headers are hopped over instead.
    let bytes = std::fs::read(&path).unwrap();
    let unfinished = dir.path("b.twr");
    let last = blocks.last().unwrap();
    std::fs::write(&unfinished, &bytes[..last.offset as usize]).unwrap();
    let mut r = Reader::open(&unfinished).unwrap();
    assert!(!r.finished());
    assert_eq!(r.blocks().unwrap(), blocks[..blocks.len() - 1].to_vec());
    r.seek(start).unwrap();
    assert!(r.next().unwrap().is_ok());
}

#[test]
fn rotation_names_parts_and_each_starts_with_the_open_connections() {
    let dir = TempDir::new("rotate");
    let path = dir.path("s.twr");
    let rotation = Rotation {
        max_bytes: Some(64 << 10),
        max_age: None,
    };
    let mut rec = Recording::create(&path, rotation, meta(), Duration::ZERO, T0).unwrap();
    let mut recs = vec![opened(0, T0)];
    recs.extend((0..60_000).map(|i| data(0, i)));
    for r in &recs {
        rec.push(r, Duration::ZERO, T0).unwrap();
    }
    rec.finish().unwrap();
    let parts = parts_of(&path);
    assert!(parts.len() >= 2, "{parts:?}");
    assert_eq!(parts[0], part_path(&path, &rotation, 0));
    assert!(parts[1].ends_with("s.1.twr"));
    let mut all = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        let r = Reader::open(p).unwrap();
        assert_eq!(r.meta().part, n as u64);
        let (recs, err) = read_all(p);
        assert_eq!(err, None);
        assert!(matches!(recs[0].event, Event::Opened { .. }));
        all.extend(recs);
    }
    assert_eq!(not_continued(all), recs);

    // By age: every flush past max_age starts a new part.
    let path = dir.path("t.twr");
    let rotation = Rotation {
        max_bytes: None,
        max_age: Some(Duration::from_secs(1)),
    };
    let mut rec = Recording::create(&path, rotation, meta(), Duration::ZERO, T0).unwrap();
    for s in 0..3u64 {
        rec.push(&data(0, s), Duration::from_secs(s), T0).unwrap();
        rec.flush(Duration::from_secs(s) + Duration::from_millis(1500), T0)
            .unwrap();
    }
    rec.finish().unwrap();
    assert_eq!(parts_of(&path).len(), 4);
}

#[test]
fn damage_at_every_offset_ends_with_an_error_naming_it() {
    let dir = TempDir::new("trunc");
    let path = dir.path("a.twr");
    let mut recs = vec![opened(0, T0)];
    recs.extend((0..30).map(|i| data(0, i)));
    // Three blocks, so damage can fall between them.
    let f = std::fs::File::create(&path).unwrap();
    let mut w = FileWriter::new(f, &meta(), Vec::new()).unwrap();
    for (i, r) in recs.iter().enumerate() {
        w.push(r).unwrap();
        if i % 10 == 9 {
            w.flush_block().unwrap();
        }
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path("cut.twr");
    for n in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..n]).unwrap();
        let r = match Reader::open(&cut) {
            Ok(r) => r,
            Err(ReadError::Damaged { offset, .. }) => {
                assert!(offset <= n as u64);
                continue;
            }
            Err(ReadError::NotRecording { .. }) => {
                assert!(n < 8);
                continue;
            }
            Err(e) => panic!("cut at {n}: {e}"),
        };
        let mut read = 0;
        let mut err = None;
        for x in r {
            match x {
                Ok(_) => read += 1,
                Err(e) => err = Some(e),
            }
        }
        let Some(ReadError::Damaged { offset, .. }) = err else {
            panic!("cut at {n}: no damage reported ({err:?})");
        };
        assert!(offset <= n as u64, "cut at {n}, damage named at {offset}");
        assert!(read <= recs.len() + 3);
    }
    // One flipped byte anywhere after the header: an error or, where the byte is in the
    // index, an unfinished-looking file; never a panic, never a wrong record.
    let flip = dir.path("flip.twr");
    let header_len = 14 + meta().to_json().len();
    let clean = read_all(&path).0;
    for n in header_len..bytes.len() {
        let mut b = bytes.clone();
        b[n] ^= 0x41;
        std::fs::write(&flip, &b).unwrap();
        let (got, err) = read_all(&flip);
        assert!(got.len() <= clean.len());
        assert_eq!(got[..], clean[..got.len()], "flip at {n}");
        if got.len() < clean.len() {
            assert!(
                matches!(err, Some(ReadError::Damaged { .. })),
                "flip at {n}"
            );
        }
    }
}

#[test]
fn newer_versions_and_other_files_are_refused() {
    let dir = TempDir::new("version");
    let path = dir.path("a.twr");
    write_file(&path, &[opened(0, T0)]);
    let mut b = std::fs::read(&path).unwrap();
    b[8..10].copy_from_slice(&(VERSION + 1).to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let e = Reader::open(&path).err().unwrap();
    assert!(matches!(e, ReadError::Newer { version, .. } if version == VERSION + 1));
    let text = e.to_string();
    assert!(text.contains(&format!("version {}", VERSION + 1)), "{text}");
    std::fs::write(&path, b"{\"type\":\"trade\"}\n").unwrap();
    assert!(matches!(
        Reader::open(&path),
        Err(ReadError::NotRecording { .. })
    ));
}
