//! What purging costs: per target and calendar month (UTC), the items the provider bills
//! (CloudFront invalidation paths, Akamai objects, the items of every other provider's
//! requests), the API calls made, and what batching and dedupe saved. The counters are kept
//! in the purge store (`usage` table, committed with the progress of the same answer, so
//! they survive a restart); spend comes from the target's tiered `pricing`
//! ([`price`], pure).
//!
//! Counting: an item is billed when a request carrying it is answered without an error for
//! it (confirmed, or accepted to complete later); a failed request bills nothing, a retried
//! item is billed again each time a provider accepts it. A deduplicated item is one never
//! sent because an identical item was already queued for the CDN; a call saved by batching is
//! one of the calls one request per item would have made (`billed − 1` per request).

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use super::provider::ItemResult;
use crate::config::purge::PriceTier;

/// One target's counts for one month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Items the provider counts (billed units).
    pub items: u64,
    /// Purge requests sent (polls aside), answered or not.
    pub api_calls: u64,
    /// Items never sent: an identical one was already queued.
    pub deduplicated: u64,
    /// Calls one request per item would have made beyond those made.
    pub calls_saved: u64,
}

/// The dollars `items` billed items cost in one month under `tiers`.
pub fn price(tiers: &[PriceTier], items: u64) -> f64 {
    let mut total = 0.0;
    let mut from = 0u64;
    for t in tiers {
        if items <= from {
            break;
        }
        let to = t.up_to.unwrap_or(u64::MAX);
        total += items.min(to).saturating_sub(from) as f64 * t.per_item;
        from = to;
    }
    total
}

/// The index of the tier the next item falls in after `items` (the marginal tier).
pub fn tier_of(tiers: &[PriceTier], items: u64) -> usize {
    tiers
        .iter()
        .position(|t| t.up_to.is_none_or(|u| items < u))
        .unwrap_or(tiers.len().saturating_sub(1))
}

/// Free items left this month after `items`: the rest of the free tiers from the marginal
/// one on; None when free without bound.
pub fn free_remaining(tiers: &[PriceTier], items: u64) -> Option<u64> {
    let mut left = 0u64;
    let mut at = items;
    for t in &tiers[tier_of(tiers, items).min(tiers.len())..] {
        if t.per_item > 0.0 {
            return Some(left);
        }
        let up_to = t.up_to?;
        left += up_to.saturating_sub(at);
        at = up_to;
    }
    Some(left)
}

/// What `deduplicated` items would have cost on top of `items`, at the marginal tiers.
pub fn savings(tiers: &[PriceTier], c: &Counters) -> f64 {
    price(tiers, c.items + c.deduplicated) - price(tiers, c.items)
}

/// The calendar month (UTC) of `wall_ms`, as `YYYY-MM`.
pub fn month_of(wall_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((wall_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

/// Whether `s` is a month as [`month_of`] writes it.
pub fn valid_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(s[5..].parse::<u8>(), Ok(1..=12))
}

/// The counters of every (month, target), those not yet committed marked, and their metrics.
pub(crate) struct Usage {
    book: Mutex<Book>,
    metrics: UsageMetrics,
}

#[derive(Default)]
struct Book {
    counts: BTreeMap<(String, String), Counters>,
    dirty: BTreeSet<(String, String)>,
    /// The pricing each target last counted under (for the metrics).
    pricing: BTreeMap<String, Vec<PriceTier>>,
}

impl Usage {
    /// The counters the store holds.
    pub fn load(rows: Vec<(String, String, Counters)>, now: u64) -> Usage {
        let u = Usage {
            book: Mutex::new(Book::default()),
            metrics: UsageMetrics::new(),
        };
        {
            let mut b = u.book.lock();
            let this = month_of(now);
            for (m, t, c) in rows {
                if m == this {
                    u.metrics.set(&t, &c, None);
                }
                b.counts.insert((m, t), c);
            }
        }
        u
    }

    /// One request to `target`'s API answered with `results` (one per item) at `now`.
    pub fn call(&self, target: &str, pricing: &[PriceTier], results: &[ItemResult], now: u64) {
        let billed = results
            .iter()
            .filter(|r| !matches!(r, ItemResult::Failed(_)))
            .count() as u64;
        let saved = billed.saturating_sub(1);
        self.add(target, Some(pricing), now, |c| {
            c.items += billed;
            c.api_calls += 1;
            c.calls_saved += saved;
        });
        if saved > 0 {
            self.metrics
                .calls_saved
                .with_label_values(&[target])
                .inc_by(saved);
        }
    }

    /// `n` more items of `target` folded into identical ones already queued.
    pub fn deduped(&self, target: &str, n: u64, now: u64) {
        if n > 0 {
            self.add(target, None, now, |c| c.deduplicated += n);
        }
    }

    fn add(
        &self,
        target: &str,
        pricing: Option<&[PriceTier]>,
        now: u64,
        f: impl FnOnce(&mut Counters),
    ) {
        let key = (month_of(now), target.to_string());
        let mut b = self.book.lock();
        if let Some(p) = pricing {
            b.pricing.insert(target.to_string(), p.to_vec());
        }
        let c = b.counts.entry(key.clone()).or_default();
        f(c);
        let c = *c;
        b.dirty.insert(key);
        self.metrics
            .set(target, &c, b.pricing.get(target).map(Vec::as_slice));
    }

    /// The counters changed since the last call, to commit.
    pub fn take_dirty(&self) -> Vec<(String, String, Counters)> {
        let mut b = self.book.lock();
        let dirty = std::mem::take(&mut b.dirty);
        dirty
            .into_iter()
            .filter_map(|k| b.counts.get(&k).map(|c| (k.0.clone(), k.1.clone(), *c)))
            .collect()
    }

    /// Every target's counters in `month`.
    pub fn month(&self, month: &str) -> BTreeMap<String, Counters> {
        self.book
            .lock()
            .counts
            .iter()
            .filter(|((m, _), _)| m == month)
            .map(|((_, t), c)| (t.clone(), *c))
            .collect()
    }

    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.metrics.registry.gather()
    }
}

impl super::Purger {
    /// Every target's usage counters in `month` (`YYYY-MM`, UTC).
    pub fn usage(&self, month: &str) -> BTreeMap<String, Counters> {
        self.shared.usage.month(month)
    }
}

/// `steerd_purge_month_*` (this month's figures per target) and the calls saved.
struct UsageMetrics {
    registry: Registry,
    items: IntGaugeVec,
    api_calls: IntGaugeVec,
    deduplicated: IntGaugeVec,
    spend: GaugeVec,
    savings: GaugeVec,
    calls_saved: IntCounterVec,
}

impl UsageMetrics {
    fn new() -> UsageMetrics {
        let registry = Registry::new();
        let int = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["target"]).expect("metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let items = int(
            "steerd_purge_month_items",
            "Items the CDN bills this calendar month (UTC): CloudFront paths, Akamai objects, …",
        );
        let api_calls = int(
            "steerd_purge_month_api_calls",
            "Purge API requests sent this calendar month (UTC).",
        );
        let deduplicated = int(
            "steerd_purge_month_deduplicated_items",
            "Items never sent this month: an identical one was already queued.",
        );
        let float = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &["target"]).expect("metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let spend = float(
            "steerd_purge_month_spend_dollars",
            "What this month's billed purge items cost under the target's pricing.",
        );
        let savings = float(
            "steerd_purge_month_savings_dollars",
            "What this month's deduplicated items would have cost, at the marginal tiers.",
        );
        let calls_saved = IntCounterVec::new(
            Opts::new(
                "steerd_purge_api_calls_saved_total",
                "Purge API calls saved by batching (items sent beyond one per request).",
            ),
            &["target"],
        )
        .expect("metric");
        registry
            .register(Box::new(calls_saved.clone()))
            .expect("unique");
        UsageMetrics {
            registry,
            items,
            api_calls,
            deduplicated,
            spend,
            savings,
            calls_saved,
        }
    }

    fn set(&self, target: &str, c: &Counters, pricing: Option<&[PriceTier]>) {
        let g = |v: &IntGaugeVec, n: u64| v.with_label_values(&[target]).set(n as i64);
        g(&self.items, c.items);
        g(&self.api_calls, c.api_calls);
        g(&self.deduplicated, c.deduplicated);
        if let Some(p) = pricing {
            self.spend
                .with_label_values(&[target])
                .set(price(p, c.items));
            self.savings.with_label_values(&[target]).set(savings(p, c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::provider::Failure;

    fn seed_tiers() -> Vec<PriceTier> {
        vec![
            PriceTier {
                up_to: Some(1000),
                per_item: 0.0,
            },
            PriceTier {
                up_to: Some(100_000),
                per_item: 0.005,
            },
            PriceTier {
                up_to: None,
                per_item: 0.01,
            },
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn the_seeds_million_objects_cost_9495_dollars() {
        let t = seed_tiers();
        // 1,000 free + 99,000 × $0.005 + 900,000 × $0.01.
        assert!(
            close(price(&t, 1_000_000), 9495.0),
            "{}",
            price(&t, 1_000_000)
        );
        assert!(close(price(&t, 0), 0.0));
        assert!(close(price(&t, 1000), 0.0));
        assert!(close(price(&t, 1001), 0.005));
        assert!(close(price(&t, 100_000), 495.0));
        assert!(close(price(&t, 100_001), 495.01));
    }

    #[test]
    fn tiers_and_free_items_left() {
        let t = seed_tiers();
        assert_eq!(tier_of(&t, 0), 0);
        assert_eq!(tier_of(&t, 999), 0);
        assert_eq!(tier_of(&t, 1000), 1);
        assert_eq!(tier_of(&t, 5_000_000), 2);
        assert_eq!(free_remaining(&t, 0), Some(1000));
        assert_eq!(free_remaining(&t, 400), Some(600));
        assert_eq!(free_remaining(&t, 1000), Some(0));
        let free = [PriceTier {
            up_to: None,
            per_item: 0.0,
        }];
        assert_eq!(free_remaining(&free, 123), None);
        assert!(close(price(&free, 1_000_000), 0.0));
        // Two free tiers in a row count together.
        let two = [
            PriceTier {
                up_to: Some(10),
                per_item: 0.0,
            },
            PriceTier {
                up_to: Some(20),
                per_item: 0.0,
            },
            PriceTier {
                up_to: None,
                per_item: 1.0,
            },
        ];
        assert_eq!(free_remaining(&two, 5), Some(15));
    }

    #[test]
    fn dedupe_savings_at_the_marginal_tier() {
        let t = seed_tiers();
        let c = Counters {
            items: 999,
            deduplicated: 3,
            ..Default::default()
        };
        // The first would have been free, the other two $0.005 each.
        assert!(close(savings(&t, &c), 0.01));
    }

    #[test]
    fn months_in_utc() {
        assert_eq!(month_of(0), "1970-01");
        // 2026-12-31T23:59:59Z and a second later.
        assert_eq!(month_of(1_798_761_599_000), "2026-12");
        assert_eq!(month_of(1_798_761_600_000), "2027-01");
        assert!(valid_month("2026-12"));
        for bad in ["2026-13", "2026-00", "2026-1", "26-12-01", "2026/12"] {
            assert!(!valid_month(bad), "{bad}");
        }
    }

    #[test]
    fn calls_count_billed_items_and_savings() {
        let u = Usage::load(Vec::new(), 0);
        let t = seed_tiers();
        let ok = ItemResult::Confirmed { provider_id: None };
        let failed = ItemResult::Failed(Failure {
            error: "503".into(),
            retryable: true,
            retry_after: None,
        });
        u.call("cf", &t, &[ok.clone(), ok.clone(), failed.clone()], 5);
        u.call("cf", &t, &[failed], 6);
        u.deduped("cf", 4, 7);
        let c = u.month("1970-01")["cf"];
        assert_eq!(
            c,
            Counters {
                items: 2,
                api_calls: 2,
                deduplicated: 4,
                calls_saved: 1
            }
        );
        assert_eq!(u.take_dirty().len(), 1);
        assert!(u.take_dirty().is_empty());
        // Loaded again (as after a restart), the counts go on from there.
        let u = Usage::load(vec![("1970-01".into(), "cf".into(), c)], 8);
        u.call("cf", &t, &[ok], 9);
        assert_eq!(u.month("1970-01")["cf"].items, 3);
    }
}
