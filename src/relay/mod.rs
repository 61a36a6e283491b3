//! Scale-out over NATS JetStream: a relay publishes a stream's venue messages to JetStream
//! ([`spawn_relay`]), and a consumer feed reads them back as the same typed messages
//! ([`consume::spawn`]). No Python is on either path.

pub mod binary;
pub mod consume;
pub mod wire;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::delivery::{Pop, Queue};
use wire::Venue;

/// How long JetStream remembers message ids: two relays' copies of one message that arrive
/// within it are stored once. Two minutes (the server's default) covers a relay's reconnect.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What a relay needs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// `nats://host:port` (comma-separated for several servers).
    pub url: String,
    /// The JetStream stream's name; created with subjects `tickwire.>` when missing.
    pub stream: String,
    pub venue: Venue,
    /// The most publishes awaiting their ack at once, per shard; at the bound the shard stops
    /// taking from its queue, so the stream's overflow policy applies.
    pub window: usize,
}

/// A relay shard's counters.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages sent to JetStream (a retry counts again).
    pub published: AtomicU64,
    /// Payload bytes sent to JetStream (a retry counts again).
    pub bytes: AtomicU64,
    /// Acks received, duplicates included.
    pub acked: AtomicU64,
    /// Acks that said JetStream already had the message id (stored once).
    pub deduplicated: AtomicU64,
    /// Publishes retried after a failed or missing ack.
    pub retried: AtomicU64,
    /// Publishes awaiting their ack now.
    pub in_flight: AtomicU64,
    /// Set once the stream exists and the relay publishes.
    pub ready: AtomicBool,
}

/// A running relay: one publish loop per shard (a venue connection's stream), all on one NATS
/// connection.
pub struct Relay {
    /// One entry per shard, in the order the queues were given.
    pub shards: Vec<Arc<RelayStats>>,
    stop: tokio::sync::watch::Sender<bool>,
    done: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
}

impl Relay {
    /// Asks every shard to stop taking new messages; what is in flight is still awaited.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits up to `timeout` for every shard's loop to end; true if they did.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, cond) = &*self.done;
        let mut ended = lock.lock();
        let deadline = std::time::Instant::now() + timeout;
        while !*ended {
            if cond.wait_until(&mut ended, deadline).timed_out() {
                break;
            }
        }
        *ended
    }
}

/// One message on its way.
struct Outgoing {
    subject: String,
    id: String,
    payload: Bytes,
}

/// Starts relaying each of `queues` (streams opened with `keep_raw`, one per shard) to
/// JetStream on `handle`.
pub fn spawn_relay(
    handle: &tokio::runtime::Handle,
    config: RelayConfig,
    queues: Vec<Arc<Queue>>,
) -> Relay {
    let shards: Vec<Arc<RelayStats>> = queues.iter().map(|_| Arc::default()).collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let done = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
    let (s, d) = (shards.clone(), done.clone());
    handle.spawn(async move {
        if let Err(e) = run(config, &queues, &s, stopped).await {
            log::error!("relay ended: {e}");
        }
        for queue in &queues {
            queue.close();
        }
        *d.0.lock() = true;
        d.1.notify_all();
    });
    Relay { shards, stop, done }
}

async fn connect(config: &RelayConfig, shards: usize) -> Result<jetstream::Context, String> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(config.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", config.url))?;
    // Our own windows bound the acks awaited; the client's limit, shared by every shard on
    // this context, has to stay above their sum: at the limit a publish waits for a permit
    // that only acks awaited by the waiting shard's own loop would free (a deadlock).
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(config.window.max(1).saturating_mul(shards.max(1)) + 1)
        .build(client);
    let created = js
        .get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec!["tickwire.>".into()],
            duplicate_window: DUPLICATE_WINDOW,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        // Relays that start together may each find no stream and each create it: the ones
        // that lose the race (the server says the subjects overlap) find the winner's.
        js.get_stream(&config.stream)
            .await
            .map_err(|_| format!("cannot create stream {}: {e}", config.stream))?;
    }
    Ok(js)
}

async fn run(
    config: RelayConfig,
    queues: &[Arc<Queue>],
    shards: &[Arc<RelayStats>],
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let js = tokio::select! {
        js = connect(&config, queues.len()) => js?,
        () = stop_asked(&mut stopped) => return Ok(()),
    };
    // Each shard's loop is a task of its own, so shards publish in parallel on a
    // multi-threaded runtime; they share the NATS connection.
    let loops: Vec<_> = queues
        .iter()
        .zip(shards)
        .map(|(queue, stats)| {
            stats.ready.store(true, Ordering::Release);
            tokio::spawn(shard(
                js.clone(),
                config.venue,
                config.window.max(1),
                queue.clone(),
                stats.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let mut result = Ok(());
    for (i, task) in loops.into_iter().enumerate() {
        let ended = task
            .await
            .map_err(|e| format!("shard {i}: {e}"))
            .and_then(|r| r.map_err(|e| format!("shard {i}: {e}")));
        if result.is_ok() {
            result = ended;
        }
    }
    result
}

/// One shard's loop: takes its queue's batches and publishes them, at most `window` awaiting
/// their acks.
async fn shard(
    js: jetstream::Context,
    venue: Venue,
    window: usize,
    queue: Arc<Queue>,
    stats: Arc<RelayStats>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let stats = &*stats;
    let mut in_flight = FuturesUnordered::new();
    // Messages whose ack failed, sent again (same id, so JetStream stores them once) before
    // anything new; bounded by `window`, since each was in flight.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    // Taken from the queue, not yet published: at most one batch.
    let mut pending: VecDeque<crate::model::Envelope> = VecDeque::new();
    let mut stopping = false;
    let mut ended = false;
    loop {
        while in_flight.len() < window {
            if let Some(out) = retry.pop_front() {
                publish(&js, out, &mut in_flight, stats).await;
                continue;
            }
            let Some(e) = pending.pop_front() else { break };
            if !wire::relayed(&e.msg) {
                continue;
            }
            let Some(raw) = e.raw.as_deref() else {
                continue;
            };
            let out = Outgoing {
                subject: wire::subject(venue, &e.msg),
                id: wire::message_id(venue, &e.msg, raw),
                payload: Bytes::from(wire::encode(venue, &e.msg, raw)),
            };
            publish(&js, out, &mut in_flight, stats).await;
        }
        if (stopping || ended) && in_flight.is_empty() && retry.is_empty() {
            return Ok(());
        }
        let room = in_flight.len() < window
            && retry.is_empty()
            && pending.is_empty()
            && !stopping
            && !ended;
        tokio::select! {
            () = stop_asked(&mut stopped), if !stopping => {
                // What was taken from the queue is still published; nothing new is taken.
                stopping = true;
            }
            Some((out, ok)) = in_flight.next(), if !in_flight.is_empty() => {
                stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                match ok {
                    Ok(duplicate) => {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        if duplicate {
                            stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        log::warn!("publish of {} failed ({e}); retrying", out.id);
                        stats.retried.fetch_add(1, Ordering::Relaxed);
                        retry.push_back(out);
                        // The broker is likely away: give it a moment before resending.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            pop = queue.pop_async(), if room => match pop {
                Pop::Batch(items) => pending.extend(items),
                Pop::Empty => {}
                Pop::End(end) => {
                    log::info!("relay's stream ended: {end:?}");
                    ended = true;
                }
            },
        }
    }
}

/// Resolves once the relay is asked to stop (or dropped, which asks the same).
async fn stop_asked(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; it must not live across an await.
    let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
}

type AckFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Outgoing, Result<bool, String>)> + Send>>;

async fn publish(
    js: &jetstream::Context,
    out: Outgoing,
    in_flight: &mut FuturesUnordered<AckFuture>,
    stats: &RelayStats,
) {
    stats.published.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes
        .fetch_add(out.payload.len() as u64, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let sent = js
        .send_publish(
            out.subject.clone(),
            jetstream::message::PublishMessage::build()
                .payload(out.payload.clone())
                .message_id(out.id.as_str()),
        )
        .await;
    in_flight.push(Box::pin(async move {
        let result = match sent {
            Ok(ack) => ack.await.map(|a| a.duplicate).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        (out, result)
    }));
}
