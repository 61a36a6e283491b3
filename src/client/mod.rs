//! The connection task: drives the transport with a venue session and the feed logic, fills
//! the delivery queue, and owns reconnects. One task per stream on the shared runtime.

mod connection;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::delivery::{Queue, StreamEnd};
use crate::feed::backoff::{Backoff, BackoffPolicy};
use crate::feed::msgnum::MsgNumberTracker;
use crate::model::{Envelope, Msg};
use crate::protocol::{ScopeChange, Session};
use crate::transport::{ConnectFailure, ConnectOptions, Connection};

pub use connection::wall_ns;

/// What the consumer asks of a running stream.
#[derive(Debug)]
pub enum Command {
    Subscribe(ScopeChange),
    Unsubscribe(ScopeChange),
    /// Takes an exact symbol out of the CoinAPI scope and back in, so the server sends fresh
    /// book snapshots for it; the symbol's `book_type` stream re-baselines its sequence at
    /// the next snapshot (the numbering may jump across the resubscription).
    Resync {
        symbol_id: String,
        book_type: &'static str,
    },
    Close,
}

/// What to do when the server announces it will close the connection (CoinAPI `reconnect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNotice {
    /// Open a second connection at once, hold its messages, switch when the first closes.
    MakeBeforeBreak,
    /// Reconnect at once (a hole, marked by `Disconnected`/`Connected`).
    Immediate,
    /// Keep reading until the server closes, then reconnect.
    WaitForClose,
}

/// Everything a stream needs to run.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub connect: ConnectOptions,
    pub session: Session,
    pub batch_size: usize,
    /// Silence after which the connection counts as dead (`None`: never by this rule).
    pub heartbeat_timeout: Option<Duration>,
    /// Silence after which tickwire pings the server; as long again without any frame and the
    /// connection counts as dead.
    pub ping_timeout: Option<Duration>,
    pub reconnect: Option<BackoffPolicy>,
    pub on_notice: OnNotice,
    /// The most messages a make-before-break successor holds before the switch.
    pub hold_limit: usize,
    pub keep_raw: bool,
}

/// A URL as tickwire shows it: any `auth_token`/`apikey` query parameter removed.
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "auth_token" && k != "apikey")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(kept);
    }
    u.to_string()
}

/// Starts the stream's task on `handle`; returns the command channel.
pub fn spawn(
    handle: &tokio::runtime::Handle,
    config: ClientConfig,
    queue: Arc<Queue>,
) -> mpsc::UnboundedSender<Command> {
    let (tx, rx) = mpsc::unbounded_channel();
    handle.spawn(run(config, queue, rx));
    tx
}

async fn push_event(queue: &Queue, msg: Msg) -> bool {
    queue.push(vec![Envelope::event(wall_ns(), msg)]).await
}

/// How one connection ended.
pub(crate) enum Ended {
    /// The consumer closed the stream.
    User,
    /// The connection is gone; reconnect if the policy allows.
    Lost { reason: String, code: Option<u16> },
    /// The server asked for a reconnect: do it now, without backoff.
    Reconnect { reason: String },
    /// A terminal failure: deliver `Disconnected`, then end the stream with it.
    Terminal {
        reason: String,
        code: Option<u16>,
        end: StreamEnd,
    },
}

async fn run(
    mut config: ClientConfig,
    queue: Arc<Queue>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = config.reconnect.clone().map(Backoff::new);
    let shown_url = redact_url(&config.connect.url);
    let mut attempt: u32 = 0;
    let base_url = config.connect.url.clone();
    // Moment order numbers continue across connections; CoinAPI's restart on each.
    let mut replay = MsgNumberTracker::default();
    loop {
        config.connect.url = config.session.connect_url(&base_url, replay.last());
        let connected = tokio::select! {
            c = Connection::connect(&config.connect) => c,
            cmd = commands.recv() => match cmd {
                None | Some(Command::Close) => return,
                // Scope changes before the connection exists only change what the hello says.
                Some(other) => { apply_offline(&mut config.session, other); continue; }
            },
        };
        match connected {
            Ok(conn) => {
                log::info!("connected to {shown_url} (attempt {attempt})");
                queue.settle();
                if !push_event(
                    &queue,
                    Msg::Connected {
                        url: shown_url.clone().into(),
                        attempt,
                    },
                )
                .await
                {
                    conn.close().await;
                    return;
                }
                let started = Instant::now();
                let ended =
                    connection::drive(conn, &mut config, &queue, &mut commands, &mut replay).await;
                let (reason, code) = match &ended {
                    Ended::User => return,
                    Ended::Reconnect { reason } => (reason.clone(), None),
                    Ended::Lost { reason, code } | Ended::Terminal { reason, code, .. } => {
                        (reason.clone(), *code)
                    }
                };
                log::warn!("connection to {shown_url} ended: {reason}");
                push_event(
                    &queue,
                    Msg::Disconnected {
                        reason: reason.into(),
                        code,
                    },
                )
                .await;
                match ended {
                    Ended::Terminal { end, .. } => {
                        queue.finish(end);
                        return;
                    }
                    // A server that announced its own restart is re-dialled at once.
                    Ended::Reconnect { .. } if backoff.is_some() => {
                        attempt = attempt.saturating_add(1);
                        crate::delivery::Stats::add(&queue.stats.reconnects, 1);
                        continue;
                    }
                    _ => {}
                }
                if let Some(b) = backoff.as_mut() {
                    b.on_connection_ended(started.elapsed());
                }
            }
            Err(ConnectFailure::Auth(code)) => {
                queue.finish(StreamEnd::Auth(format!(
                    "the server refused the key (HTTP {code}) at {shown_url}"
                )));
                return;
            }
            Err(ConnectFailure::Config(e)) => {
                queue.finish(StreamEnd::Connect(e));
                return;
            }
            Err(e) if backoff.is_none() => {
                queue.finish(StreamEnd::Connect(format!(
                    "cannot connect to {shown_url}: {e}"
                )));
                return;
            }
            Err(e) => {
                log::warn!("connecting to {shown_url} failed: {e}; retrying");
            }
        }
        let Some(b) = backoff.as_mut() else {
            // No reconnect policy: the server's close ends the stream normally.
            queue.finish(StreamEnd::Finished);
            return;
        };
        let Some(delay) = b.next_delay(rand::random::<f64>()) else {
            queue.finish(StreamEnd::Connect(format!(
                "gave up reconnecting to {shown_url} after {} attempts",
                b.attempt()
            )));
            return;
        };
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => return,
                    Some(other) => apply_offline(&mut config.session, other),
                },
            }
        }
        attempt = attempt.saturating_add(1);
        crate::delivery::Stats::add(&queue.stats.reconnects, 1);
    }
}

fn apply_offline(session: &mut Session, cmd: Command) {
    // Validated when the command was made; nothing to send while disconnected.
    let _ = match cmd {
        Command::Subscribe(s) => session.apply(&s, true),
        Command::Unsubscribe(s) => session.apply(&s, false),
        // A new connection sends every book a snapshot anyway.
        Command::Resync { .. } | Command::Close => Ok(Vec::new()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_from_shown_urls() {
        let u = url::Url::parse("wss://paper.moment-api.com/v1/x/?auth_token=SECRET&a=1").unwrap();
        let shown = redact_url(&u);
        assert!(!shown.contains("SECRET"));
        assert!(shown.contains("a=1"));
        let u = url::Url::parse("ws://127.0.0.1:1/v1/?apikey=SECRET").unwrap();
        assert_eq!(redact_url(&u), "ws://127.0.0.1:1/v1/");
    }
}
