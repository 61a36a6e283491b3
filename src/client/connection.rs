//! One connection's life: send the opening request, read frames into batches (natural
//! batching), check sequences, answer pings at once, watch liveness, obey commands.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::{ClientConfig, Command, Ended};
use crate::delivery::{Queue, Stats, StreamEnd};
use crate::feed::liveness::Liveness;
use crate::feed::msgnum::MsgNumberTracker;
use crate::feed::sequence::{SeqCheck, SequenceTracker};
use crate::model::{Envelope, Gap, Msg};
use crate::protocol::{Decoder, Session, Verdict};
use crate::transport::{Connection, Frame, TransportError};

/// Wall clock now, ns since the epoch.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A `ParseError` keeps at most this much of the offending frame.
const RAW_KEEP: usize = 4096;

fn lossy_prefix(bytes: &[u8]) -> Box<str> {
    let cut = bytes.len().min(RAW_KEEP);
    String::from_utf8_lossy(&bytes[..cut]).into()
}

/// Per-connection parsing and bookkeeping state.
struct Reader<'a> {
    decoder: Decoder,
    sequences: SequenceTracker,
    replay: &'a mut MsgNumberTracker,
    scratch: Vec<u8>,
    keep_raw: bool,
}

/// What the reader wants the connection to do after a frame.
enum After {
    Continue,
    /// The server refused the key: end the stream with an auth error after delivering.
    AuthFailed(String),
}

impl Reader<'_> {
    /// The sequence verdict of `msg`, if it carries a number: CoinAPI per (type, key) on this
    /// connection, Moment order events by `msg_number` across connections.
    fn check(&mut self, msg: &Msg) -> Option<(&'static str, crate::model::Key, SeqCheck)> {
        if let Some((kind, key, seq)) = msg.sequence_key() {
            return Some((kind, key.clone(), self.sequences.check(kind, key, seq)));
        }
        if let Msg::OrderEvent(o) = msg {
            let key: crate::model::Key = std::sync::Arc::from("orders");
            return Some((o.kind.wire(), key, self.replay.check(o.msg_number)));
        }
        None
    }

    /// Decodes one data frame into `out` (possibly a `Gap` before it, or nothing for a
    /// duplicate).
    fn on_data(
        &mut self,
        payload: &[u8],
        recv_ns: i64,
        session: &Session,
        stats: &Stats,
        out: &mut Vec<Envelope>,
    ) -> After {
        Stats::add(&stats.bytes, payload.len() as u64);
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let raw = self.keep_raw.then(|| {
            String::from_utf8_lossy(payload)
                .into_owned()
                .into_boxed_str()
        });
        let msg = match self.decoder.decode(&mut self.scratch) {
            Ok(m) => m,
            Err(e) => {
                Stats::add(&stats.parse_errors, 1);
                out.push(Envelope::event(
                    recv_ns,
                    Msg::ParseError {
                        reason: e.0.into(),
                        raw: lossy_prefix(payload),
                    },
                ));
                return After::Continue;
            }
        };
        if let Some((kind, key, verdict)) = self.check(&msg) {
            match verdict {
                SeqCheck::First | SeqCheck::InOrder => {}
                SeqCheck::Gap { expected, received } => {
                    Stats::add(&stats.gaps, 1);
                    out.push(Envelope::event(
                        recv_ns,
                        Msg::Gap(Gap {
                            msg_type: kind,
                            key,
                            expected,
                            received,
                        }),
                    ));
                }
                SeqCheck::Duplicate => {
                    Stats::add(&stats.duplicates, 1);
                    return After::Continue;
                }
            }
        }
        let verdict = session.classify(&msg);
        let after = match (&verdict, &msg) {
            (Verdict::AuthFailed, Msg::Error(e)) => After::AuthFailed(e.message.to_string()),
            _ => After::Continue,
        };
        Stats::add(&stats.messages, 1);
        out.push(Envelope { recv_ns, raw, msg });
        after
    }
}

/// Runs one open connection until it ends.
pub(crate) async fn drive(
    mut conn: Connection,
    config: &mut ClientConfig,
    queue: &Arc<Queue>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    replay: &mut MsgNumberTracker,
) -> Ended {
    let lost = |e: TransportError| Ended::Lost {
        reason: e.reason,
        code: e.code,
    };
    for req in config.session.opening() {
        if let Err(e) = conn.send_text(req).await {
            return lost(e);
        }
    }
    let mut reader = Reader {
        decoder: config.session.decoder(),
        sequences: SequenceTracker::default(),
        replay,
        scratch: Vec::with_capacity(4096),
        keep_raw: config.keep_raw,
    };
    let now = Instant::now();
    let mut liveness = Liveness::new(config.heartbeat_timeout, now);
    let mut probe = Liveness::new(config.ping_timeout, now);
    let mut pinged = false;
    let far = Duration::from_secs(86_400 * 365);
    let batch_size = config.batch_size;
    let mut batch: Vec<Envelope> = Vec::with_capacity(batch_size.min(4096));
    loop {
        let stale_at = liveness.deadline().unwrap_or(now + far);
        // Our own ping goes out after `ping_timeout` of silence; as long again and it is dead.
        let probe_at = probe.deadline().map_or(now + far, |d| {
            if pinged {
                d + config.ping_timeout.unwrap_or_default()
            } else {
                d
            }
        });
        let first = tokio::select! {
            biased;
            cmd = commands.recv() => {
                let reqs = match cmd {
                    None | Some(Command::Close) => {
                        conn.close().await;
                        return Ended::User;
                    }
                    Some(Command::Subscribe(s)) => config.session.apply(&s, true),
                    Some(Command::Unsubscribe(s)) => config.session.apply(&s, false),
                };
                for req in reqs.unwrap_or_default() {
                    if let Err(e) = conn.send_text(req).await {
                        return lost(e);
                    }
                }
                continue;
            }
            f = conn.next() => f,
            () = tokio::time::sleep_until(stale_at.into()) => {
                let silence = liveness.silence(Instant::now()).as_secs_f64();
                return stale(queue, silence).await;
            }
            () = tokio::time::sleep_until(probe_at.into()) => {
                if pinged {
                    let silence = probe.silence(Instant::now()).as_secs_f64();
                    return stale(queue, silence).await;
                }
                pinged = true;
                if let Err(e) = conn.ping().await {
                    return lost(e);
                }
                continue;
            }
        };
        // Natural batching: take the first frame, then whatever is already readable.
        let mut next = Some(first);
        let mut owe_pong = false;
        let mut ended: Option<Ended> = None;
        while let Some(item) = next.take() {
            let frame = match item {
                Ok(f) => f,
                Err(e) => {
                    ended = Some(lost(e));
                    break;
                }
            };
            let t = Instant::now();
            liveness.on_frame(t);
            probe.on_frame(t);
            pinged = false;
            let recv_ns = wall_ns();
            queue.stats.last_frame_ns.store(recv_ns, Relaxed);
            match frame {
                Frame::Data { payload, .. } => {
                    let after = reader.on_data(
                        &payload,
                        recv_ns,
                        &config.session,
                        &queue.stats,
                        &mut batch,
                    );
                    if let After::AuthFailed(message) = after {
                        ended = Some(Ended::Terminal {
                            reason: format!("server error: {message}"),
                            code: None,
                            end: StreamEnd::Auth(format!("the server refused the key: {message}")),
                        });
                        break;
                    }
                }
                Frame::Ping => owe_pong = true,
                Frame::Pong => {}
                Frame::Close { code, reason } => {
                    let reason = if reason.is_empty() {
                        "server closed the connection".to_string()
                    } else {
                        format!("server closed the connection: {reason}")
                    };
                    owe_pong = true;
                    ended = Some(Ended::Lost { reason, code });
                    break;
                }
            }
            if batch.len() >= batch_size {
                break;
            }
            next = conn.try_next();
        }
        if owe_pong {
            // The pong was queued by the read; write it now rather than with our next send.
            if let Err(e) = conn.flush().await {
                ended.get_or_insert(lost(e));
            }
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size.min(4096)));
            if !queue.push(full).await {
                conn.close().await;
                return Ended::User;
            }
        }
        if let Some(e) = ended {
            return e;
        }
    }
}

async fn stale(queue: &Queue, silence_s: f64) -> Ended {
    super::push_event(queue, Msg::Stale { silence_s }).await;
    Ended::Lost {
        reason: format!("no frame for {silence_s:.1} s"),
        code: None,
    }
}
