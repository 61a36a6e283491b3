//! RFC 6455 rules that yawc 0.5 does not enforce on a client's reads, checked on the bytes as
//! they arrive, under yawc:
//! - a server frame must not be masked (yawc's client decoder accepts the mask bit, skips the
//!   key and hands out the payload still masked);
//! - a control frame carries at most 125 bytes (yawc checks pings only; pongs and closes of
//!   any size pass);
//! - the upgrade response may agree only to extensions tickwire offered (yawc reads
//!   `permessage-deflate` alone and ignores any other name).
//!
//! yawc exposes no frame header, so [`Strict`] follows the frame boundaries itself (two to ten
//! header bytes, then it skips the payload by its length: no copy, no per-byte work on
//! payloads). On a violation it sets RSV2 in that frame's first byte, which yawc refuses with
//! its own close 1002 (the code RFC 6455 asks for) exactly where the frame stands in the
//! stream, after every frame before it was delivered; [`Strict::violation`] then names the
//! real cause. The first header byte is held back when a read ends right after it, so the
//! byte that decides is always seen together with the byte that is changed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The upgrade response's head is kept up to this size for the extension check; hyper refuses
/// a longer head anyway.
const MAX_HEAD: usize = 16 * 1024;

/// The reserved bit yawc refuses with close 1002.
const RSV2: u8 = 0x20;

/// Where the reader is in the byte stream.
#[derive(Debug)]
enum Phase {
    /// In the HTTP response head; `matched` bytes of `\r\n\r\n` seen.
    Head { matched: u8 },
    /// In a frame header: `have` of its bytes read (length code and extended length).
    Header { bytes: [u8; 10], have: usize },
    /// In a payload, `left` bytes to go.
    Payload { left: u64 },
    /// After a violation: yawc fails the connection at the marked frame; nothing more to check.
    Stopped,
}

/// The byte stream under yawc, checked as described in the module's documentation.
#[derive(Debug)]
pub struct Strict<S> {
    inner: S,
    phase: Phase,
    /// A frame's first byte, held back until its second byte arrives.
    held: Option<u8>,
    /// A byte already checked, waiting for room in a caller's one-byte buffer.
    spill: Option<u8>,
    /// The response head while it arrives (dropped once whole).
    head: Vec<u8>,
    seen: Arc<Seen>,
}

/// What the reader found, for the connection to look at after the upgrade.
#[derive(Debug, Default)]
pub struct Seen {
    /// The extensions the response's `Sec-WebSocket-Extensions` headers name (lowercase).
    pub extensions: OnceLock<Vec<String>>,
    /// The rule a frame broke, once one did.
    pub violation: OnceLock<&'static str>,
    /// The response's `Retry-After` value, when it has one (yawc reports a refused upgrade by
    /// its status code alone).
    pub retry_after: OnceLock<String>,
}

impl<S> Strict<S> {
    /// Wraps a fresh connection's stream, before the upgrade request is written.
    pub fn new(inner: S) -> Strict<S> {
        Strict {
            inner,
            phase: Phase::Head { matched: 0 },
            held: None,
            spill: None,
            head: Vec::new(),
            seen: Arc::default(),
        }
    }

    /// What the reader finds (shared: yawc owns the stream once the upgrade starts).
    pub fn seen(&self) -> Arc<Seen> {
        self.seen.clone()
    }
}

/// The values of a response head's headers called `wanted`.
fn headers<'a>(head: &'a str, wanted: &'a str) -> impl Iterator<Item = &'a str> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(move |(name, _)| name.trim().eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value.trim())
}

/// The extensions named in a response head's `Sec-WebSocket-Extensions` headers.
fn extensions_of(head: &str) -> Vec<String> {
    headers(head, "sec-websocket-extensions")
        .flat_map(|value| value.split(','))
        .filter_map(|ext| ext.split(';').next())
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

impl<S> Strict<S> {
    /// Checks `region` (bytes just read, in order) and returns how many of them may go on;
    /// the rest, a lone first header byte at most, is for the next read.
    fn scan(&mut self, region: &mut [u8]) -> usize {
        let mut i = 0;
        while i < region.len() {
            match &mut self.phase {
                Phase::Head { matched } => {
                    let b = region[i];
                    if self.head.len() < MAX_HEAD {
                        self.head.push(b);
                    }
                    *matched = match (*matched, b) {
                        (3, b'\n') => 4,
                        (1, b'\n') => 2,
                        (2, b'\r') => 3,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if *matched == 4 {
                        let head = std::mem::take(&mut self.head);
                        let head = String::from_utf8_lossy(&head);
                        let _ = self.seen.extensions.set(extensions_of(&head));
                        if let Some(v) = headers(&head, "retry-after").next() {
                            let _ = self.seen.retry_after.set(v.to_string());
                        }
                        self.phase = Phase::Header {
                            bytes: [0; 10],
                            have: 0,
                        };
                    }
                    i += 1;
                }
                Phase::Header { bytes, have } => {
                    if *have == 0 {
                        if i + 1 == region.len() {
                            return i;
                        }
                        if let Some(rule) = broken_rule(region[i], region[i + 1]) {
                            region[i] |= RSV2;
                            let _ = self.seen.violation.set(rule);
                            self.phase = Phase::Stopped;
                            return region.len();
                        }
                    }
                    bytes[*have] = region[i];
                    *have += 1;
                    i += 1;
                    if *have >= 2 {
                        let need = match bytes[1] & 0x7f {
                            126 => 4,
                            127 => 10,
                            _ => 2,
                        };
                        if *have == need {
                            let left = match need {
                                4 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
                                10 => u64::from_be_bytes([
                                    bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                                    bytes[8], bytes[9],
                                ]),
                                _ => u64::from(bytes[1] & 0x7f),
                            };
                            self.phase = if left == 0 {
                                Phase::Header {
                                    bytes: [0; 10],
                                    have: 0,
                                }
                            } else {
                                Phase::Payload { left }
                            };
                        }
                    }
                }
                Phase::Payload { left } => {
                    let rest = region.len() - i;
                    let n = usize::try_from(*left).map_or(rest, |l| l.min(rest));
                    i += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.phase = Phase::Header {
                            bytes: [0; 10],
                            have: 0,
                        };
                    }
                }
                Phase::Stopped => return region.len(),
            }
        }
        region.len()
    }
}

/// The rule a server frame breaks, judged by its first two bytes.
fn broken_rule(first: u8, second: u8) -> Option<&'static str> {
    if second & 0x80 != 0 {
        return Some("the server sent a masked frame");
    }
    if first & 0x08 != 0 && second & 0x7f > 125 {
        return Some("the server sent a control frame of more than 125 bytes");
    }
    None
}

impl<S: AsyncRead + Unpin> Strict<S> {
    /// A read into a caller's buffer with room for one byte: through a two-byte window, so a
    /// header's first two bytes are still judged together.
    fn poll_read_one(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut window = [0u8; 2];
            let mut tmp = ReadBuf::new(&mut window);
            let held = self.held.take();
            if let Some(b) = held {
                tmp.put_slice(&[b]);
            }
            match Pin::new(&mut self.inner).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(())) => {}
                other => {
                    self.held = held;
                    return other;
                }
            }
            let got = tmp.filled().len();
            if got == usize::from(held.is_some()) {
                // End of stream: a held byte goes on as it is.
                buf.put_slice(tmp.filled());
                return Poll::Ready(Ok(()));
            }
            let keep = self.scan(&mut window[..got]);
            if keep < got {
                self.held = Some(window[keep]);
            }
            if keep > 0 {
                buf.put_slice(&window[..1]);
                if keep == 2 {
                    self.spill = Some(window[1]);
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Strict<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(b) = this.spill.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() < 2 {
            return this.poll_read_one(cx, buf);
        }
        loop {
            let start = buf.filled().len();
            let held = this.held.take();
            if let Some(b) = held {
                buf.put_slice(&[b]);
            }
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => {
                    buf.set_filled(start);
                    this.held = held;
                    return other;
                }
            }
            let end = buf.filled().len();
            if end - start == usize::from(held.is_some()) {
                return Poll::Ready(Ok(()));
            }
            let keep = this.scan(&mut buf.filled_mut()[start..end]);
            if keep < end - start {
                this.held = Some(buf.filled()[start + keep]);
                buf.set_filled(start + keep);
            }
            if keep > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Strict<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(bytes: &[u8]) -> (Vec<u8>, Option<&'static str>) {
        let mut s = Strict::new(tokio::io::empty());
        s.phase = Phase::Header {
            bytes: [0; 10],
            have: 0,
        };
        let mut out = bytes.to_vec();
        let keep = s.scan(&mut out);
        out.truncate(keep);
        (out, s.seen.violation.get().copied())
    }

    #[test]
    fn frames_are_followed_by_their_lengths() {
        // Text "hi", a 200-byte binary (16-bit length), then an empty pong: all pass unchanged.
        let mut bytes = vec![0x81, 2, b'h', b'i', 0x82, 126, 0, 200];
        bytes.extend([0u8; 200]);
        bytes.extend([0x8a, 0]);
        assert_eq!(checked(&bytes), (bytes.clone(), None));
        // A payload byte that looks like a masked header is payload, not a header.
        let bytes = [0x81, 2, 0x81, 0x85, 0x81, 0];
        assert_eq!(checked(&bytes), (bytes.to_vec(), None));
    }

    #[test]
    fn a_masked_frame_or_a_long_control_frame_is_marked() {
        let (out, why) = checked(&[0x81, 0x80 | 1, 1, 2, 3, 4, b'x']);
        assert_eq!(out[0], 0x81 | RSV2);
        assert_eq!(why, Some("the server sent a masked frame"));
        let (out, why) = checked(&[0x81, 1, b'x', 0x8a, 126, 0, 126]);
        assert_eq!(&out[..3], &[0x81, 1, b'x']);
        assert_eq!(out[3], 0x8a | RSV2);
        assert!(why.is_some_and(|w| w.contains("125")));
        // 125 bytes is allowed.
        let mut ok = vec![0x88, 125];
        ok.extend([0u8; 125]);
        assert_eq!(checked(&ok), (ok.clone(), None));
    }

    #[test]
    fn a_first_header_byte_is_held_until_its_second() {
        let (out, why) = checked(&[0x81, 1, b'x', 0x8a]);
        assert_eq!(out, vec![0x81, 1, b'x']);
        assert_eq!(why, None);
    }

    #[test]
    fn the_head_is_kept_and_its_extensions_read() {
        let mut s = Strict::new(tokio::io::empty());
        let mut head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover, x-Foo\r\n\
            \r\n\x81\x01x"
            .to_vec();
        assert_eq!(s.scan(&mut head), head.len());
        assert_eq!(
            s.seen.extensions.get().map(Vec::as_slice),
            Some(&["permessage-deflate".to_string(), "x-foo".to_string()][..])
        );
        assert!(matches!(s.phase, Phase::Header { have: 0, .. }));
        assert_eq!(s.seen.retry_after.get(), None);
    }

    #[test]
    fn a_refusal_keeps_its_retry_after() {
        let mut s = Strict::new(tokio::io::empty());
        let mut head = b"HTTP/1.1 429 Too Many Requests\r\nretry-after:  7 \r\n\r\n".to_vec();
        assert_eq!(s.scan(&mut head), head.len());
        assert_eq!(s.seen.retry_after.get().map(String::as_str), Some("7"));
    }

    #[tokio::test]
    async fn reads_split_anywhere_give_the_same_bytes() {
        use tokio::io::AsyncReadExt;
        let mut wire = b"HTTP/1.1 101 OK\r\n\r\n".to_vec();
        wire.extend([
            0x81,
            3,
            b'a',
            b'b',
            b'c',
            0x89,
            0,
            0x8a,
            0x80 | 1,
            9,
            9,
            9,
            9,
            7,
        ]);
        for chunk in 1..wire.len() {
            let (client, mut server) = tokio::io::duplex(64);
            let sent = wire.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for piece in sent.chunks(chunk) {
                    server.write_all(piece).await.unwrap();
                    server.flush().await.unwrap();
                }
            });
            let mut strict = Strict::new(client);
            let mut got = Vec::new();
            let mut one = [0u8; 1];
            // Alternate one-byte and larger reads.
            while got.len() < wire.len() {
                let n = if got.len() % 2 == 0 {
                    strict.read(&mut one).await.unwrap()
                } else {
                    let mut big = [0u8; 7];
                    let n = strict.read(&mut big).await.unwrap();
                    got.extend_from_slice(&big[..n]);
                    continue;
                };
                assert_eq!(n, 1);
                got.push(one[0]);
            }
            let mut expected = wire.clone();
            let pong = wire.len() - 7;
            expected[pong] |= RSV2;
            assert_eq!(got, expected, "chunks of {chunk}");
            assert_eq!(
                strict.seen().violation.get(),
                Some(&"the server sent a masked frame")
            );
        }
    }
}
