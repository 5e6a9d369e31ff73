//! The purges each CDN confirmed in the last 5 minutes, for the cache score's
//! `purge_impact = 1 − recent_purge_ratio` (the control plane reads it when it builds the
//! policy inputs). Pure: time (wall-clock ms) is passed in.
//!
//! `recent_purge_ratio` of a target over the window: steerd does not know how many objects a
//! CDN holds, so the share of its cache that was purged cannot be computed. It is estimated
//! as `n / (n + half)`, where `n` is the objects confirmed purged in the window (each URL, key
//! or prefix counts as one; an item asked for by several purges once) and `half` the target's
//! `purge_ratio_half` (default 100): no purge gives 0, `half` objects give 0.5, and the ratio
//! approaches 1 as purges grow, never passing it. A confirmed purge of a whole host or of
//! `everything` empties the cache: the ratio is 1 for the window after it. With nothing
//! confirmed in the window there is no figure (the seed's default, 0, or a report's applies).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// The seed's window for the cache score.
pub const WINDOW: Duration = Duration::from_secs(300);

/// Confirmed purges within the window, per target, in one-second buckets.
#[derive(Debug, Default)]
pub struct RecentPurges {
    targets: BTreeMap<String, VecDeque<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// The bucket's second (wall ms / 1000).
    second: u64,
    objects: u64,
    /// A host or `everything` was purged.
    whole: bool,
}

/// What the purger and the control plane share.
pub type RecentHandle = Arc<Mutex<RecentPurges>>;

/// `n / (n + half)`, or 1 after a whole-cache purge (see the module's documentation).
pub fn ratio(objects: u64, whole: bool, half: f64) -> f64 {
    if whole {
        return 1.0;
    }
    let n = objects as f64;
    if n + half <= 0.0 {
        return 0.0;
    }
    (n / (n + half)).clamp(0.0, 1.0)
}

impl RecentPurges {
    /// `objects` items confirmed purged on `target` at `now_ms` (`whole`: a host or
    /// everything among them).
    pub fn record(&mut self, target: &str, objects: u64, whole: bool, now_ms: u64) {
        if objects == 0 && !whole {
            return;
        }
        let q = self.targets.entry(target.to_string()).or_default();
        let second = now_ms / 1000;
        match q.back_mut() {
            Some(b) if b.second == second => {
                b.objects += objects;
                b.whole |= whole;
            }
            _ => q.push_back(Bucket {
                second,
                objects,
                whole,
            }),
        }
        prune(q, now_ms);
    }

    /// Objects confirmed purged on `target` within the window ending at `now_ms`, and whether
    /// a whole-cache purge was among them; None when there were none.
    pub fn window(&self, target: &str, now_ms: u64) -> Option<(u64, bool)> {
        let q = self.targets.get(target)?;
        let from = start(now_ms);
        let mut n = 0;
        let mut whole = false;
        let mut any = false;
        for b in q.iter().filter(|b| b.second * 1000 >= from) {
            any = true;
            n += b.objects;
            whole |= b.whole;
        }
        any.then_some((n, whole))
    }

    /// `recent_purge_ratio` of `target` at `now_ms` (None: nothing confirmed in the window).
    pub fn ratio(&self, target: &str, now_ms: u64, half: f64) -> Option<f64> {
        self.window(target, now_ms)
            .map(|(n, whole)| ratio(n, whole, half))
    }
}

/// The first ms inside the window ending at `now_ms`.
fn start(now_ms: u64) -> u64 {
    now_ms.saturating_sub(WINDOW.as_millis() as u64)
}

fn prune(q: &mut VecDeque<Bucket>, now_ms: u64) {
    let from = start(now_ms);
    while q.front().is_some_and(|b| b.second * 1000 < from) {
        q.pop_front();
    }
}

impl super::Purger {
    /// The confirmed purges of the last 5 minutes, shared (for the control plane).
    pub fn recent_purges(&self) -> RecentHandle {
        self.shared.recent.clone()
    }
}

impl super::Shared {
    /// Notes the items `changes` confirm on `target` (each once, those not confirmed before).
    pub(crate) fn note_confirmed(
        &self,
        target: &str,
        changes: &[(super::queue::Ref, super::Change)],
        now: u64,
    ) {
        use super::provider::Item;
        let mut items: std::collections::BTreeSet<&Item> = std::collections::BTreeSet::new();
        let open = self.open.lock();
        for (r, c) in changes {
            if !matches!(c, super::Change::Confirmed(_)) {
                continue;
            }
            let Some(rec) = open.get(&r.id) else { continue };
            let done = rec.cdns.get(target).is_none_or(|p| p.done.get(r.idx));
            if let (false, Some(item)) = (done, rec.request.items.get(r.idx as usize)) {
                items.insert(item);
            }
        }
        let whole = items
            .iter()
            .any(|i| matches!(i, Item::Everything | Item::Host(_)));
        let n = items.len() as u64;
        drop(items);
        drop(open);
        self.recent.lock().record(target, n, whole, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_saturates_and_whole_purges_count_as_one() {
        assert_eq!(ratio(0, false, 100.0), 0.0);
        assert_eq!(ratio(100, false, 100.0), 0.5);
        assert!((ratio(300, false, 100.0) - 0.75).abs() < 1e-12);
        assert!(ratio(1_000_000_000, false, 100.0) < 1.0);
        assert_eq!(ratio(1, true, 100.0), 1.0);
    }

    #[test]
    fn the_window_slides_with_injected_time() {
        let mut r = RecentPurges::default();
        let t0 = 1_000_000_000;
        assert_eq!(r.ratio("a", t0, 10.0), None);
        r.record("a", 5, false, t0);
        r.record("a", 5, false, t0 + 400);
        r.record("a", 10, false, t0 + 60_000);
        assert_eq!(r.window("a", t0 + 60_000), Some((20, false)));
        assert_eq!(r.ratio("a", t0 + 60_000, 20.0), Some(0.5));
        assert_eq!(r.ratio("b", t0 + 60_000, 20.0), None);
        // Five minutes after the first: it has left the window, the last has not.
        assert_eq!(r.window("a", t0 + 300_001), Some((10, false)));
        assert_eq!(r.window("a", t0 + 360_001), None);
        // A whole-cache purge: 1 while it is in the window.
        r.record("b", 1, true, t0 + 400_000);
        assert_eq!(r.ratio("b", t0 + 699_000, 100.0), Some(1.0));
        assert_eq!(r.ratio("b", t0 + 701_000, 100.0), None);
        // Old buckets are dropped as new ones come.
        r.record("a", 1, false, t0 + 1_000_000);
        assert_eq!(r.targets["a"].len(), 1);
    }
}
