//! One CDN target's worker: a task that takes the items of every purge meant for its CDN,
//! queues them (`queue`), sends batches under the target's token bucket with a few requests
//! in flight, and applies each answer to the purges that asked for the items: confirmed,
//! pending (polled), retried after a backoff, or failed. Progress is committed to the store
//! after each answer, before it is shown.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::provider::{Batch, Item, ItemResult, PollResult, Provider};
use super::queue::{Bucket, Entry, Queue, Ref, Taken, backoff};
use super::{Change, Shared, changes};
use crate::clock::wall_ms;
use crate::config::purge::Priority;

/// Requests one worker keeps in flight at most.
const MAX_IN_FLIGHT: usize = 8;
/// How often a pending (CloudFront) purge is asked about.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Work for a worker.
#[derive(Debug)]
pub enum Job {
    /// The target's `[targets.purge]` changed.
    Reconfigure(Box<Provider>),
    /// Items of purge `id` (by index) to send.
    Purge {
        id: u64,
        accepted_ms: u64,
        priority: Priority,
        soft: bool,
        items: Vec<(u32, Item)>,
    },
}

/// What a finished request tells the worker.
enum Done {
    Sent {
        taken: Taken,
        results: Vec<ItemResult>,
    },
    Polled {
        pending: Pending,
        result: PollResult,
    },
}

/// A request the provider accepted and completes later.
#[derive(Debug, Clone)]
struct Pending {
    provider_id: String,
    entries: Vec<Entry>,
    next_poll_ms: u64,
}

pub(super) struct Worker {
    pub provider: Provider,
    pub shared: Arc<Shared>,
    pub rx: mpsc::UnboundedReceiver<Job>,
}

impl Worker {
    pub async fn run(mut self) {
        let now = wall_ms();
        let mut queue = Queue::default();
        let mut bucket = Bucket::new(self.provider.config.rate, now);
        let mut pending: Vec<Pending> = Vec::new();
        let mut inflight: JoinSet<Done> = JoinSet::new();
        let http = reqwest::Client::builder()
            .timeout(self.provider.config.timeout)
            .build()
            .unwrap_or_default();
        let settings = self.shared.settings.clone();
        let target = self.provider.target.clone();
        let mut expired_at = 0;
        loop {
            let now = wall_ms();
            // Given up: purges older than the give-up age leave the queue, failed (looked
            // for once a second: it walks the whole queue).
            let cutoff = now.saturating_sub(settings.give_up.as_millis() as u64);
            let expired = if now >= expired_at + 1000 {
                expired_at = now;
                queue.expire(cutoff)
            } else {
                Vec::new()
            };
            if !expired.is_empty() {
                let refs: Vec<Ref> = expired.into_iter().map(|(_, r)| r).collect();
                let why = format!(
                    "not confirmed within {}s (give_up)",
                    settings.give_up.as_secs()
                );
                self.shared
                    .apply(
                        &target,
                        changes(&refs, |_| Change::Failed(why.clone())),
                        now,
                    )
                    .await;
            }
            self.shared.queued(&target, queue.len());
            // Send what is due, as the bucket allows.
            let mut wake = queue.next_due();
            while inflight.len() < MAX_IN_FLIGHT {
                let Some(taken) = queue.take(now, |k| self.provider.max_per_request(k)) else {
                    break;
                };
                let batch = Batch {
                    items: taken.entries.iter().map(|e| e.item.clone()).collect(),
                    soft: taken.soft,
                };
                if let Err(wait) = bucket.take(self.provider.cost(&batch), now) {
                    // Put it back as it was; come back when the bucket has the tokens.
                    for e in taken.entries {
                        let ready = e.ready_ms;
                        queue.retry(taken.priority, taken.soft, e, ready);
                    }
                    wake = Some(now + wait);
                    break;
                }
                let refs: Vec<Ref> = taken.entries.iter().flat_map(|e| e.refs.clone()).collect();
                self.shared
                    .apply(&target, changes(&refs, |_| Change::Sent), now)
                    .await;
                let (p, h) = (self.provider.clone(), http.clone());
                inflight.spawn(async move {
                    let results = p.send(&h, &batch).await;
                    Done::Sent { taken, results }
                });
                wake = queue.next_due();
            }
            // Ask about pending purges whose turn has come.
            let mut i = 0;
            while i < pending.len() && inflight.len() < MAX_IN_FLIGHT {
                if pending[i].next_poll_ms <= now {
                    let pd = pending.swap_remove(i);
                    let (p, h) = (self.provider.clone(), http.clone());
                    inflight.spawn(async move {
                        let result = p.poll(&h, &pd.provider_id).await;
                        Done::Polled {
                            pending: pd,
                            result,
                        }
                    });
                } else {
                    i += 1;
                }
            }
            for pd in &pending {
                wake = Some(wake.map_or(pd.next_poll_ms, |w| w.min(pd.next_poll_ms)));
            }
            let sleep = wake.map(|w| Duration::from_millis(w.saturating_sub(now).max(1)));
            tokio::select! {
                job = self.rx.recv() => match job {
                    Some(Job::Purge { id, accepted_ms, priority, soft, items }) => {
                        let window = settings.batch_window[priority.index()];
                        let now = wall_ms();
                        for (idx, item) in items {
                            let r = Ref { id, idx, accepted_ms };
                            queue.push(item, r, priority, soft, now, window);
                        }
                        self.shared.deduped(&target, queue.deduped);
                    }
                    Some(Job::Reconfigure(p)) => {
                        if p.config.rate != self.provider.config.rate {
                            bucket = Bucket::new(p.config.rate, wall_ms());
                        }
                        self.provider = *p;
                    }
                    None => return,
                },
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let Ok(done) = done else { continue };
                    let now = wall_ms();
                    match done {
                        Done::Sent { taken, results } => {
                            self.apply(taken, results, now, &mut queue, &mut bucket, &mut pending).await;
                        }
                        Done::Polled { pending: mut pd, result } => match result {
                            PollResult::Completed => {
                                let refs: Vec<Ref> = pd.entries.iter().flat_map(|e| e.refs.clone()).collect();
                                self.shared.apply(&target, changes(&refs, |_| Change::Confirmed(Some(pd.provider_id.clone()))), now).await;
                            }
                            PollResult::InProgress => {
                                pd.next_poll_ms = now + POLL_EVERY.as_millis() as u64;
                                pending.push(pd);
                            }
                            PollResult::Failed(f) if f.retryable => {
                                pd.next_poll_ms = now + backoff(1, settings.retry_base, settings.retry_max, rand::thread_rng().r#gen(), f.retry_after).as_millis() as u64;
                                pending.push(pd);
                            }
                            PollResult::Failed(f) => {
                                let refs: Vec<Ref> = pd.entries.iter().flat_map(|e| e.refs.clone()).collect();
                                self.shared.apply(&target, changes(&refs, |_| Change::Failed(f.error.clone())), now).await;
                            }
                        },
                    }
                }
                _ = sleep_for(sleep) => {}
            }
        }
    }

    /// Applies one request's answers: each item confirmed, pending, retried or failed.
    async fn apply(
        &self,
        taken: Taken,
        results: Vec<ItemResult>,
        now: u64,
        queue: &mut Queue,
        bucket: &mut Bucket,
        pending: &mut Vec<Pending>,
    ) {
        let s = &self.shared.settings;
        let target = &self.provider.target;
        self.shared.api_call(
            target,
            results.iter().any(|r| matches!(r, ItemResult::Failed(_))),
        );
        let pricing = &self.provider.config.pricing;
        self.shared.usage.call(target, pricing, &results, now);
        let mut out: Vec<(Ref, Change)> = Vec::new();
        let mut waiting: Vec<Entry> = Vec::new();
        let mut pending_id = None;
        let mut results = results.into_iter();
        for mut e in taken.entries {
            let r = results
                .next()
                .unwrap_or(ItemResult::Failed(super::provider::Failure {
                    error: "the provider gave no result for this item".into(),
                    retryable: true,
                    retry_after: None,
                }));
            match r {
                ItemResult::Confirmed { provider_id } => {
                    out.extend(
                        e.refs
                            .iter()
                            .map(|r| (*r, Change::Confirmed(provider_id.clone()))),
                    );
                }
                ItemResult::Pending { provider_id } => {
                    pending_id = Some(provider_id);
                    waiting.push(e);
                }
                ItemResult::Failed(f) if f.retryable => {
                    e.attempt += 1;
                    let jitter: f64 = rand::thread_rng().r#gen();
                    let d = backoff(e.attempt, s.retry_base, s.retry_max, jitter, f.retry_after);
                    if let Some(ra) = f.retry_after {
                        bucket.pause_until(now + ra.as_millis() as u64);
                    }
                    let next = now + d.as_millis() as u64;
                    out.extend(
                        e.refs
                            .iter()
                            .map(|r| (*r, Change::Retrying(f.error.clone(), next))),
                    );
                    queue.retry(taken.priority, taken.soft, e, next);
                }
                ItemResult::Failed(f) => {
                    out.extend(e.refs.iter().map(|r| (*r, Change::Failed(f.error.clone()))));
                }
            }
        }
        if let Some(id) = pending_id {
            let refs: Vec<Ref> = waiting.iter().flat_map(|e| e.refs.clone()).collect();
            self.shared
                .apply(
                    target,
                    changes(&refs, |_| Change::ProviderId(id.clone())),
                    now,
                )
                .await;
            pending.push(Pending {
                provider_id: id,
                entries: waiting,
                next_poll_ms: now + POLL_EVERY.as_millis() as u64,
            });
        }
        self.shared.apply(target, out, now).await;
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep_until(Instant::now() + d).await,
        None => std::future::pending().await,
    }
}
