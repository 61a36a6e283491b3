//! The generator drivers: pace a generator at `rate` (or as fast as the slowest connection
//! takes it) up to `total`, and hand each event to the connections that want it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::time::sleep_until;

use crate::sim::conn::{Link, StreamKind};
use crate::sim::fmt::wall_ns;
use crate::sim::market::Event;
use crate::sim::{until_set, Shared};

/// Events generated per wake-up at most (paced catch-up, and unpaced chunks).
const CHUNK: u64 = 1024;

/// When the `n`-th event (0-based) is due under `rate` events/s from `t0`.
fn due_at(t0: Instant, n: u64, rate: u64) -> Instant {
    t0 + Duration::from_secs_f64(n as f64 / rate as f64)
}

/// How many events are due by `now` (burst-correct: derived from elapsed time, not from
/// per-message sleeps).
fn due_count(t0: Instant, now: Instant, made: u64, rate: u64) -> u64 {
    let should = (now.saturating_duration_since(t0).as_secs_f64() * rate as f64) as u64;
    should.saturating_sub(made)
}

/// Longer waits than this sleep on the timer first (its resolution is 1 ms).
const SPIN_WINDOW: Duration = Duration::from_millis(2);

/// Waits until `due` without the timer's millisecond bursts: sleeps while the wait is long,
/// then yields in a loop, so the connection tasks still run between checks.
async fn spin_until(due: Instant) {
    let now = Instant::now();
    if due > now + SPIN_WINDOW {
        sleep_until((due - SPIN_WINDOW).into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

struct Links {
    version: u64,
    list: Vec<Arc<Link>>,
}

impl Links {
    fn refresh(&mut self, shared: &Shared) {
        let v = shared.links_version.load(Ordering::Acquire);
        if v != self.version {
            self.list = shared.links_snapshot();
            self.version = v;
        }
    }
}

/// Drives the broadcast generator (CoinAPI market, or Moment prices).
pub(crate) async fn broadcast<G>(shared: Arc<Shared>, mut next: G)
where
    G: FnMut(i64) -> Event + Send,
{
    let mut shutdown = shared.shutdown_rx();
    let mut start = shared.broadcast_start_rx();
    tokio::select! {
        () = until_set(&mut start) => {},
        () = until_set(&mut shutdown) => return,
    }
    if !*start.borrow() {
        return;
    }
    let rate = shared.config.rate;
    let total = shared.config.total;
    let mut links = Links {
        version: u64::MAX,
        list: Vec::new(),
    };
    let t0 = Instant::now();
    let mut made = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let remaining = total.map_or(u64::MAX, |t| t.saturating_sub(made));
        if remaining == 0 {
            shared.broadcast_done.store(true, Ordering::Release);
            return;
        }
        links.refresh(&shared);
        if rate > 0 {
            let n = due_count(t0, Instant::now(), made, rate)
                .min(CHUNK)
                .min(remaining);
            if n == 0 {
                let due = due_at(t0, made + 1, rate);
                let spin = shared.config.spin_pacing;
                tokio::select! {
                    () = async {
                        if spin {
                            spin_until(due).await;
                        } else {
                            sleep_until(due.into()).await;
                        }
                    } => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for _ in 0..n {
                let ev = Arc::new(next(wall_ns()));
                for l in &links.list {
                    if !l.wants(&ev) {
                        continue;
                    }
                    let Some(tx) = &l.tx else { continue };
                    l.enqueued.fetch_add(1, Ordering::AcqRel);
                    match tx.try_send(ev.clone()) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            l.enqueued.fetch_sub(1, Ordering::AcqRel);
                            l.trigger_overflow();
                        }
                        Err(TrySendError::Closed(_)) => {
                            l.enqueued.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
            made += n;
            shared.generated.fetch_add(n, Ordering::Relaxed);
            // Let connections run between catch-up bursts.
            tokio::task::yield_now().await;
        } else {
            // Unpaced: only generate for someone, and wait for the slowest queue.
            if !links.list.iter().any(|l| {
                l.tx.is_some() && l.alive.load(Ordering::Relaxed) && l.has_nonempty_scope()
            }) {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(2)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let n = CHUNK.min(remaining);
            for _ in 0..n {
                let ev = Arc::new(next(wall_ns()));
                made += 1;
                shared.generated.fetch_add(1, Ordering::Relaxed);
                for l in &links.list {
                    if !l.wants(&ev) {
                        continue;
                    }
                    let Some(tx) = &l.tx else { continue };
                    l.enqueued.fetch_add(1, Ordering::AcqRel);
                    let sent = match tx.try_send(ev.clone()) {
                        Ok(()) => true,
                        Err(TrySendError::Closed(_)) => false,
                        Err(TrySendError::Full(ev)) => tokio::select! {
                            r = tx.send(ev) => r.is_ok(),
                            _ = shutdown.changed() => return,
                        },
                    };
                    if !sent {
                        l.enqueued.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Drives the Moment order log: events are appended to the shared log, which a connection may read from any number; order-stream
/// connections read it from their own cursor.
pub(crate) async fn order_log<G>(shared: Arc<Shared>, mut next: G)
where
    G: FnMut(i64, &mut dyn FnMut(&str) -> u32) -> Event + Send,
{
    let mut shutdown = shared.shutdown_rx();
    let mut start = shared.orders_start_rx();
    tokio::select! {
        () = until_set(&mut start) => {},
        () = until_set(&mut shutdown) => return,
    }
    if !*start.borrow() {
        return;
    }
    let rate = shared.config.rate;
    let total = shared.config.total;
    let t0 = Instant::now();
    let mut made = 0u64;
    let mut links = Links {
        version: u64::MAX,
        list: Vec::new(),
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let remaining = total.map_or(u64::MAX, |t| t.saturating_sub(made));
        if remaining == 0 {
            shared.orders_done.store(true, Ordering::Release);
            return;
        }
        let n = if rate > 0 {
            let n = due_count(t0, Instant::now(), made, rate)
                .min(CHUNK)
                .min(remaining);
            if n == 0 {
                tokio::select! {
                    () = sleep_until(due_at(t0, made + 1, rate).into()) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            n
        } else {
            // Unpaced: append a chunk once every order-stream connection has caught up.
            links.refresh(&shared);
            let len = shared.order_log.read().len() as u64;
            let readers: Vec<&Arc<Link>> = links
                .list
                .iter()
                .filter(|l| l.kind == StreamKind::Orders && l.alive.load(Ordering::Relaxed))
                .collect();
            if readers.is_empty() || readers.iter().any(|l| l.done.load(Ordering::Acquire) < len) {
                tokio::select! {
                    () = shared.progress.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(2)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            CHUNK.min(remaining)
        };
        {
            let mut new = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let mut intern = |id: &str| shared.intern_key(id);
                new.push(Arc::new(next(wall_ns(), &mut intern)));
            }
            let mut log = shared.order_log.write();
            log.extend(new);
            shared.set_log_len(log.len());
        }
        made += n;
        shared.generated.fetch_add(n, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_is_burst_correct() {
        let t0 = Instant::now();
        assert_eq!(due_count(t0, t0, 0, 1000), 0);
        assert_eq!(due_count(t0, t0 + Duration::from_millis(10), 0, 1000), 10);
        assert_eq!(due_count(t0, t0 + Duration::from_millis(10), 7, 1000), 3);
        assert_eq!(due_count(t0, t0 + Duration::from_millis(10), 12, 1000), 0);
        assert_eq!(due_at(t0, 5, 1000), t0 + Duration::from_millis(5));
    }
}
