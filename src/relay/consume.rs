//! The `Nats` feed: reads relayed messages from JetStream into a stream's queue, decoded with
//! the venue's own decoder, so a consumer sees the same typed messages as a direct connection.
//!
//! One pull consumer per subject filter (nats-server 2.9 takes one filter per consumer), all
//! filling one queue. Each remembers the last stream sequence it delivered and, when its
//! consumer or connection fails, makes a new one that starts right after it: a reconnect
//! misses and repeats nothing. A jump in a consumer's own sequence is a `Gap` (type `"nats"`,
//! key the stream's name). No venue-sequence checks run here.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::binary;
use super::wire::{self, Body, Venue};
use crate::client::{wall_ns, Command};
use crate::codec::{CoinApiDecoder, Interner, MomentDecoder};
use crate::delivery::{Queue, StreamEnd};
use crate::model::{Envelope, Gap, Msg};

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The stream's first message.
    All,
    /// Messages stored from now on.
    New,
    /// This stream sequence.
    Sequence(u64),
}

/// What the feed reads.
#[derive(Clone, Debug)]
pub struct ConsumeConfig {
    pub url: String,
    pub stream: String,
    /// Subject filters, one consumer each (empty: `tickwire.>`).
    pub subjects: Vec<String>,
    /// A durable consumer's name (with `-<i>` for the i-th subject when there are several);
    /// `None`: ephemeral consumers.
    pub durable: Option<String>,
    pub start: Start,
    pub batch_size: usize,
    pub connect_timeout: Duration,
}

/// Starts the feed's task on `handle`: it fills `queue` until `commands` says close.
pub fn spawn(
    handle: &tokio::runtime::Handle,
    config: ConsumeConfig,
    queue: Arc<Queue>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    handle.spawn(async move {
        let client = match tokio::time::timeout(
            config.connect_timeout,
            async_nats::connect(config.url.as_str()),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                queue.finish(StreamEnd::Connect(format!(
                    "cannot connect to {}: {e}",
                    config.url
                )));
                return;
            }
            Err(_) => {
                queue.finish(StreamEnd::Connect(format!(
                    "cannot connect to {} within {:?}",
                    config.url, config.connect_timeout
                )));
                return;
            }
        };
        let js = jetstream::new(client);
        let stream = match js.get_stream(&config.stream).await {
            Ok(s) => s,
            Err(e) => {
                queue.finish(StreamEnd::Connect(format!(
                    "no JetStream stream {} at {}: {e}",
                    config.stream, config.url
                )));
                return;
            }
        };
        queue.settle();
        let connected = Msg::Connected {
            url: config.url.clone().into(),
            attempt: 0,
        };
        if !queue
            .push(vec![Envelope::event(wall_ns(), connected)])
            .await
        {
            return;
        }
        let subjects = if config.subjects.is_empty() {
            vec!["tickwire.>".to_string()]
        } else {
            config.subjects.clone()
        };
        let mut tasks = tokio::task::JoinSet::new();
        let several = subjects.len() > 1;
        for (i, subject) in subjects.into_iter().enumerate() {
            let durable = config.durable.as_ref().map(|d| {
                if several {
                    format!("{d}-{i}")
                } else {
                    d.clone()
                }
            });
            tasks.spawn(follow(
                stream.clone(),
                config.stream.clone(),
                subject,
                durable,
                config.start,
                config.batch_size,
                queue.clone(),
            ));
        }
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => break,
                    // A NATS feed's scope is its subject filters, fixed when it is made.
                    Some(_) => {}
                },
                done = tasks.join_next() => if done.is_none() { break },
            }
        }
        tasks.abort_all();
    });
}

/// One subject filter's consumer, remade after failures, until the queue closes.
async fn follow(
    stream: jetstream::stream::Stream,
    stream_name: String,
    subject: String,
    durable: Option<String>,
    start: Start,
    batch_size: usize,
    queue: Arc<Queue>,
) {
    let gap_key: crate::model::Key = stream_name.into();
    let mut coinapi = CoinApiDecoder::default();
    let mut moment = MomentDecoder::default();
    // Binary records' keys, shared like the decoders' (bounded by the interner's own limit).
    let mut keys = Interner::default();
    // The last stream sequence delivered: where a remade consumer resumes.
    let mut last: Option<u64> = None;
    let mut failures: u32 = 0;
    loop {
        if queue.is_closed_by_user() {
            return;
        }
        if failures > 0 {
            // 100 ms doubling to 5 s: a broker restart takes seconds.
            let ms = (100u64 << failures.min(6)).min(5_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let deliver_policy = match (last, start) {
            (Some(s), _) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: s + 1,
            },
            (None, Start::All) => consumer::DeliverPolicy::All,
            (None, Start::New) => consumer::DeliverPolicy::New,
            (None, Start::Sequence(s)) => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence: s }
            }
        };
        let config = consumer::pull::Config {
            durable_name: durable.clone(),
            deliver_policy,
            ack_policy: if durable.is_some() {
                consumer::AckPolicy::Explicit
            } else {
                consumer::AckPolicy::None
            },
            filter_subject: subject.clone(),
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let made = match &durable {
            // A durable consumer keeps its own position on the server.
            Some(name) => stream.get_or_create_consumer(name, config).await,
            None => stream.create_consumer(config).await,
        };
        let pull: consumer::PullConsumer = match made {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot create a consumer for {subject}: {e}; retrying");
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let messages = match pull.messages().await {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cannot read {subject}: {e}; retrying");
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let mut chunks = messages.ready_chunks(batch_size.max(1));
        let mut expected: Option<u64> = None;
        'read: while let Some(chunk) = chunks.next().await {
            let mut items = Vec::with_capacity(chunk.len());
            let mut acks = Vec::new();
            let mut failed = false;
            for m in chunk {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        log::warn!("reading {subject} failed: {e}; resuming");
                        failed = true;
                        break;
                    }
                };
                let Ok(info) = m.info() else { continue };
                let (stream_seq, consumer_seq) = (info.stream_sequence, info.consumer_sequence);
                let now = wall_ns();
                if let Some(exp) = expected.filter(|e| consumer_seq > *e) {
                    items.push(Envelope::event(
                        now,
                        Msg::Gap(Gap {
                            msg_type: "nats",
                            key: gap_key.clone(),
                            expected: exp,
                            received: consumer_seq,
                        }),
                    ));
                }
                expected = Some(consumer_seq + 1);
                if last.is_some_and(|l| stream_seq <= l) {
                    continue;
                }
                last = Some(stream_seq);
                let msg = match wire::decode(&m.payload) {
                    Ok((Venue::CoinApi, Body::Json(json))) => coinapi.decode(json).map_err(|e| e.0),
                    Ok((Venue::Moment, Body::Json(json))) => moment.decode(json).map_err(|e| e.0),
                    Ok((_, Body::Binary(record))) => binary::read(record, &mut keys),
                    Err(e) => Err(e),
                };
                let msg = msg.unwrap_or_else(|reason| Msg::ParseError {
                    reason: reason.into(),
                    raw: String::from_utf8_lossy(
                        &m.payload[..m.payload.len().min(crate::model::PARSE_ERROR_RAW_MAX)],
                    )
                    .into(),
                    count: 1,
                });
                items.push(Envelope {
                    recv_ns: now,
                    raw: None,
                    msg,
                });
                if durable.is_some() {
                    acks.push(m);
                }
            }
            if !items.is_empty() && !queue.push(items).await {
                return;
            }
            for m in acks {
                // An ack lost here is redelivered to the durable consumer and dropped by
                // `last` if this task still runs.
                let _ = m.ack().await;
            }
            failures = 0;
            if failed {
                break 'read;
            }
        }
        failures = failures.saturating_add(1);
    }
}
