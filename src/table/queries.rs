//! The DNS query statistics a routing table carries: counts by [`QueryKey`] and the response
//! latency histograms per protocol, in per-thread shards, each an uncontended mutex on cache
//! lines of its own (see `dns::stats` for how the DNS path counts).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::hist::Hist;

use super::labels::{self, ForgetIds, Names, Proto, QueryKey, RCODES};
use super::shard::{SHARDS, counter_shard};

/// Upper bounds (nanoseconds) of the response latency histogram's buckets, 10 µs to 100 ms;
/// exposed in seconds.
pub const LATENCY_BUCKETS: [u64; 13] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Latency histogram of one shard and protocol, and the sum of what it recorded.
#[derive(Debug, Clone, Copy)]
struct Latency {
    hist: Hist<13>,
    sum_ns: u64,
}

impl Latency {
    const EMPTY: Latency = Latency {
        hist: Hist::new(&LATENCY_BUCKETS),
        sum_ns: 0,
    };

    #[inline]
    fn observe_n(&mut self, ns: u64, n: u64) {
        self.hist.record(ns, n);
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    fn add(&mut self, o: &Latency) {
        self.hist.merge(&o.hist);
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::EMPTY
    }
}

#[derive(Debug, Default)]
struct ShardData {
    counts: FxHashMap<QueryKey, u64>,
    latency: [Latency; 2],
}

/// One shard, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<ShardData>);

/// The shards of one [`QueryStats`] (told by the interner which ids it reclaims).
#[derive(Debug)]
struct Shards(Box<[Shard]>);

impl ForgetIds for Shards {
    fn forget(&self, ids: &FxHashSet<u32>) {
        for shard in self.0.iter() {
            lock(&shard.0)
                .counts
                .retain(|k, _| !ids.contains(&k.service()) && !ids.contains(&k.target()));
        }
    }
}

/// Query counts and latency histograms, sharded per thread (see `dns::stats`).
#[derive(Debug)]
pub struct QueryStats {
    shards: Arc<Shards>,
}

impl Default for QueryStats {
    fn default() -> Self {
        Self::new()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl QueryStats {
    pub fn new() -> Self {
        let shards = Arc::new(Shards((0..SHARDS).map(|_| Shard::default()).collect()));
        let holder: Weak<dyn ForgetIds> = Arc::downgrade(&shards) as Weak<Shards>;
        labels::register(holder);
        Self { shards }
    }

    #[inline]
    fn shard(&self) -> MutexGuard<'_, ShardData> {
        let shards = &self.shards.0;
        lock(&shards[counter_shard() % shards.len()].0)
    }

    /// Count one query answered after `elapsed`.
    #[inline]
    pub fn record(&self, key: QueryKey, elapsed: Duration) {
        let mut s = self.shard();
        *s.counts.entry(key).or_insert(0) += 1;
        s.latency[key.proto() as usize].observe_n(nanos(elapsed), 1);
    }

    /// Count a batch of queries over `proto`, each answered after `elapsed_ns` nanoseconds
    /// (one lock).
    #[inline]
    pub fn record_batch(&self, keys: &[QueryKey], proto: Proto, elapsed_ns: u64) {
        let Some(&first) = keys.first() else {
            return;
        };
        let mut s = self.shard();
        // Runs of equal keys (a busy name) cost one map update.
        let (mut run, mut n) = (first, 0u64);
        for &k in keys {
            if k != run {
                *s.counts.entry(run).or_insert(0) += n;
                (run, n) = (k, 0);
            }
            n += 1;
        }
        *s.counts.entry(run).or_insert(0) += n;
        s.latency[proto as usize].observe_n(elapsed_ns, keys.len() as u64);
    }

    /// Every shard summed, with label ids resolved to names.
    pub fn snapshot(&self) -> Snapshot {
        // The interner first (as `Interner::reclaim` takes it before the shards): no id is
        // reclaimed and given to another name between reading the counts and naming them.
        let labels = Names::lock();
        let mut counts: FxHashMap<QueryKey, u64> = FxHashMap::default();
        let mut latency = [Latency::EMPTY; 2];
        for shard in self.shards.0.iter() {
            let s = lock(&shard.0);
            for (k, v) in &s.counts {
                *counts.entry(*k).or_insert(0) += v;
            }
            for (a, b) in latency.iter_mut().zip(&s.latency) {
                a.add(b);
            }
        }
        let name = |id: u32| labels.name(id);
        let mut queries = BTreeMap::new();
        for (k, v) in counts {
            let l = QueryLabels {
                service: name(k.service()),
                target: name(k.target()),
                rcode: RCODES[k.rcode() as usize % RCODES.len()],
                proto: k.proto().as_str(),
                ecs: k.ecs(),
            };
            *queries.entry(l).or_insert(0) += v;
        }
        drop(labels);
        let latency = latency.map(|l| LatencySnapshot {
            count: l.hist.count(),
            sum_seconds: l.sum_ns as f64 / 1e9,
            buckets: l
                .hist
                .cumulative()
                .map(|(le, n)| (le as f64 / 1e9, n))
                .collect(),
        });
        Snapshot { queries, latency }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The labels of one `steerd_dns_queries_total` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryLabels {
    pub service: String,
    pub target: String,
    pub rcode: &'static str,
    pub proto: &'static str,
    pub ecs: bool,
}

/// One protocol's latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Responses measured (the `+Inf` bucket).
    pub count: u64,
    pub sum_seconds: f64,
    /// (upper bound in seconds, cumulative count), for [`LATENCY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
}

/// Query counts and latency at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub queries: BTreeMap<QueryLabels, u64>,
    /// Indexed by [`Proto`].
    pub latency: [LatencySnapshot; 2],
}

impl Snapshot {
    /// The count of one label set (0 if never seen).
    pub fn count(&self, service: &str, target: &str, rcode: &str, proto: Proto, ecs: bool) -> u64 {
        self.queries
            .iter()
            .filter(|(l, _)| {
                l.service == service
                    && l.target == target
                    && l.rcode == rcode
                    && l.proto == proto.as_str()
                    && l.ecs == ecs
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every query counted.
    pub fn total(&self) -> u64 {
        self.queries.values().sum()
    }

    pub fn latency(&self, proto: Proto) -> &LatencySnapshot {
        &self.latency[proto as usize]
    }
}

#[cfg(test)]
mod tests;
