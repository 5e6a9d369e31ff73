//! One CDN's queue of items to purge, a pure data structure (time passed in, milliseconds):
//! items deduplicated per (priority, soft) lane, held for the priority's batching window,
//! taken in batches of one kind up to the provider's per-request limit, put back with a
//! backoff after a failure; and the token bucket requests are sent under.

use std::collections::BTreeMap;
use std::time::Duration;

use super::provider::{Item, Kind};
use crate::config::purge::{Priority, RateLimit};

/// One purge's claim on an item: which purge, which of its items, when it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    pub id: u64,
    pub idx: u32,
    pub accepted_ms: u64,
}

/// An item waiting to be sent, with every purge that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub item: Item,
    pub refs: Vec<Ref>,
    /// Not sent before this (a retry's backoff).
    pub ready_ms: u64,
    /// Its lane is flushed once this passes (the end of its batching window).
    pub due_ms: u64,
    /// Sends so far.
    pub attempt: u32,
}

/// Items of one kind and lane, sent together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub priority: Priority,
    pub soft: bool,
    pub kind: Kind,
    pub entries: Vec<Entry>,
}

/// The queue of one CDN target.
#[derive(Debug, Default)]
pub struct Queue {
    /// Indexed by priority, then soft.
    lanes: [[BTreeMap<Item, Entry>; 2]; 4],
    /// Requests for an item already queued, folded into it.
    pub deduped: u64,
}

impl Queue {
    /// Queues `item` for `r`, to be sent once `window` has passed (at once for zero).
    pub fn push(
        &mut self,
        item: Item,
        r: Ref,
        priority: Priority,
        soft: bool,
        now: u64,
        window: Duration,
    ) {
        let lane = &mut self.lanes[priority.index()][usize::from(soft)];
        let due = now + window.as_millis() as u64;
        match lane.get_mut(&item) {
            Some(e) => {
                if !e.refs.iter().any(|x| x.id == r.id && x.idx == r.idx) {
                    e.refs.push(r);
                    self.deduped += 1;
                }
                e.due_ms = e.due_ms.min(due.max(e.ready_ms));
            }
            None => {
                lane.insert(
                    item.clone(),
                    Entry {
                        item,
                        refs: vec![r],
                        ready_ms: now,
                        due_ms: due,
                        attempt: 0,
                    },
                );
            }
        }
    }

    /// Puts back entries that failed, not sent again before `ready_ms`.
    pub fn retry(&mut self, priority: Priority, soft: bool, mut e: Entry, ready_ms: u64) {
        e.ready_ms = ready_ms;
        e.due_ms = ready_ms;
        let lane = &mut self.lanes[priority.index()][usize::from(soft)];
        match lane.get_mut(&e.item) {
            // Asked for again meanwhile: one entry with every ref.
            Some(old) => {
                for r in e.refs {
                    if !old.refs.contains(&r) {
                        old.refs.push(r);
                    }
                }
                old.attempt = old.attempt.max(e.attempt);
            }
            None => {
                lane.insert(e.item.clone(), e);
            }
        }
    }

    /// The next batch to send at `now`: from the most urgent lane whose window has ended,
    /// the ready entries of one kind (the kind of its earliest-due entry), at most
    /// `max(kind)` of them.
    pub fn take(&mut self, now: u64, max: impl Fn(Kind) -> usize) -> Option<Taken> {
        for p in Priority::ALL {
            for soft in [false, true] {
                let lane = &mut self.lanes[p.index()][usize::from(soft)];
                if !lane.values().any(|e| e.due_ms <= now && e.ready_ms <= now) {
                    continue;
                }
                let kind = lane
                    .values()
                    .filter(|e| e.due_ms <= now && e.ready_ms <= now)
                    .min_by_key(|e| e.due_ms)
                    .expect("one is due")
                    .item
                    .kind();
                // Every ready entry of the kind goes (those still in their window too: the
                // lane is being flushed), in the lane's order, up to the limit.
                let ready: Vec<Item> = lane
                    .values()
                    .filter(|e| e.ready_ms <= now && e.item.kind() == kind)
                    .take(max(kind).max(1))
                    .map(|e| e.item.clone())
                    .collect();
                let entries = ready
                    .iter()
                    .map(|item| lane.remove(item).expect("listed"))
                    .collect();
                return Some(Taken {
                    priority: p,
                    soft,
                    kind,
                    entries,
                });
            }
        }
        None
    }

    /// When [`Queue::take`] next has something (None when empty).
    pub fn next_due(&self) -> Option<u64> {
        self.lanes
            .iter()
            .flatten()
            .flat_map(|l| l.values())
            .map(|e| e.due_ms.max(e.ready_ms))
            .min()
    }

    /// Removes the refs of purges accepted before `cutoff_ms` (given up), and the entries
    /// left without any; returns the refs removed with their item.
    pub fn expire(&mut self, cutoff_ms: u64) -> Vec<(Item, Ref)> {
        let mut out = Vec::new();
        for lane in self.lanes.iter_mut().flatten() {
            lane.retain(|item, e| {
                e.refs.retain(|r| {
                    let keep = r.accepted_ms >= cutoff_ms;
                    if !keep {
                        out.push((item.clone(), *r));
                    }
                    keep
                });
                !e.refs.is_empty()
            });
        }
        out
    }

    /// Entries queued (after dedupe).
    pub fn len(&self) -> usize {
        self.lanes.iter().flatten().map(|l| l.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before send `attempt` (1 = the first retry): exponential from `base`, capped at
/// `max`, with equal jitter (`jitter` in [0, 1) picks within the upper half), and never
/// shorter than the provider's `Retry-After`.
pub fn backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(max);
    let d = cap.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    d.max(retry_after.unwrap_or_default())
}

/// A token bucket over time in milliseconds.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: RateLimit,
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    /// Full at `now`.
    pub fn new(rate: RateLimit, now: u64) -> Bucket {
        Bucket {
            rate,
            tokens: rate.burst,
            at_ms: now,
        }
    }

    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * self.rate.per_second).min(self.rate.burst);
        self.at_ms = self.at_ms.max(now);
    }

    /// Takes `cost` tokens at `now`, or says how many milliseconds to wait. A cost above the
    /// burst is taken from a full bucket (which then owes the rest).
    pub fn take(&mut self, cost: f64, now: u64) -> Result<(), u64> {
        self.refill(now);
        let need = cost.min(self.rate.burst);
        if self.tokens + 1e-9 >= need {
            self.tokens -= cost;
            return Ok(());
        }
        let missing = need - self.tokens;
        Err(((missing / self.rate.per_second) * 1000.0).ceil().max(1.0) as u64)
    }

    /// Pushes the bucket's clock to `until` with no tokens (a provider's `Retry-After`).
    pub fn pause_until(&mut self, until: u64) {
        self.tokens = self.tokens.min(0.0);
        self.at_ms = self.at_ms.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, idx: u32) -> Ref {
        Ref {
            id,
            idx,
            accepted_ms: 0,
        }
    }

    fn url(s: &str) -> Item {
        Item::Url(format!("https://x/{s}"))
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_window_batches_and_dedupes() {
        let mut q = Queue::default();
        q.push(url("a"), r(1, 0), Priority::Normal, false, 0, MS(2000));
        q.push(url("b"), r(1, 1), Priority::Normal, false, 500, MS(2000));
        q.push(url("a"), r(2, 0), Priority::Normal, false, 900, MS(2000));
        assert_eq!(q.deduped, 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_due(), Some(2000));
        assert!(q.take(1999, |_| 30).is_none());
        let t = q.take(2000, |_| 30).unwrap();
        assert_eq!(t.entries.len(), 2, "b is in the same window");
        assert_eq!(t.entries[0].refs, [r(1, 0), r(2, 0)]);
        assert!(q.is_empty());
    }

    #[test]
    fn critical_goes_first_and_alone_by_kind_and_limit() {
        let mut q = Queue::default();
        for i in 0..5 {
            q.push(url(&i.to_string()), r(1, i), Priority::Low, false, 0, MS(0));
        }
        q.push(
            Item::Key("k".into()),
            r(2, 0),
            Priority::Critical,
            false,
            0,
            MS(0),
        );
        let t = q.take(0, |_| 2).unwrap();
        assert_eq!((t.priority, t.kind), (Priority::Critical, Kind::Key));
        let t = q.take(0, |_| 2).unwrap();
        assert_eq!((t.priority, t.entries.len()), (Priority::Low, 2));
        assert_eq!(q.take(0, |_| 2).unwrap().entries.len(), 2);
        assert_eq!(q.take(0, |_| 2).unwrap().entries.len(), 1);
        assert!(q.take(0, |_| 2).is_none());
    }

    #[test]
    fn soft_and_hard_are_separate_lanes() {
        let mut q = Queue::default();
        q.push(url("a"), r(1, 0), Priority::High, false, 0, MS(0));
        q.push(url("a"), r(2, 0), Priority::High, true, 0, MS(0));
        assert_eq!(q.len(), 2);
        assert!(!q.take(0, |_| 9).unwrap().soft);
        assert!(q.take(0, |_| 9).unwrap().soft);
    }

    #[test]
    fn retries_wait_for_their_backoff_and_merge() {
        let mut q = Queue::default();
        q.push(url("a"), r(1, 0), Priority::High, false, 0, MS(0));
        let mut t = q.take(0, |_| 9).unwrap();
        let mut e = t.entries.remove(0);
        e.attempt = 1;
        q.retry(Priority::High, false, e, 3000);
        q.push(url("a"), r(2, 0), Priority::High, false, 100, MS(0));
        assert_eq!(q.len(), 1);
        assert!(q.take(2999, |_| 9).is_none(), "not before its backoff");
        let t = q.take(3000, |_| 9).unwrap();
        assert_eq!(t.entries[0].refs.len(), 2);
    }

    #[test]
    fn expiry_drops_old_refs_only() {
        let mut q = Queue::default();
        let old = Ref {
            accepted_ms: 10,
            ..r(1, 0)
        };
        let new = Ref {
            accepted_ms: 500,
            ..r(2, 0)
        };
        q.push(url("a"), old, Priority::Low, false, 0, MS(0));
        q.push(url("a"), new, Priority::Low, false, 0, MS(0));
        q.push(url("b"), old, Priority::Low, false, 0, MS(0));
        let gone = q.expire(100);
        assert_eq!(gone.len(), 2);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn backoff_grows_caps_jitters_and_honours_retry_after() {
        let base = MS(500);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, base, max, 1.0, None), MS(500));
        assert_eq!(backoff(1, base, max, 0.0, None), MS(250));
        assert_eq!(backoff(3, base, max, 1.0, None), MS(2000));
        assert_eq!(backoff(30, base, max, 1.0, None), max);
        assert_eq!(
            backoff(1, base, max, 0.0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn the_bucket_paces_requests() {
        let rate = RateLimit {
            per_second: 2.0,
            burst: 3.0,
        };
        let mut b = Bucket::new(rate, 0);
        for _ in 0..3 {
            assert_eq!(b.take(1.0, 0), Ok(()));
        }
        assert_eq!(b.take(1.0, 0), Err(500));
        assert_eq!(b.take(1.0, 500), Ok(()));
        // A cost above the burst waits for a full bucket, then owes.
        assert_eq!(b.take(10.0, 500), Err(1500));
        assert_eq!(b.take(10.0, 2000), Ok(()));
        assert!(b.take(1.0, 2000).is_err());
        let mut b = Bucket::new(rate, 0);
        b.pause_until(5000);
        assert!(b.take(1.0, 4000).is_err());
        assert_eq!(b.take(1.0, 5500), Ok(()));
    }
}
