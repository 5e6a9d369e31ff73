//! What the DNS path counts into the table: answers per target (for the cost estimate and the
//! metrics), sharded per thread, and the query statistics carried alongside.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::queries::QueryStats;
use super::shard::{SHARDS, counter_shard};

/// Spacing between shards, in counters: 128 bytes, so two threads never share a cache line.
const PAD: usize = 16;

/// DNS answers given per target since start, for the cost estimate (and metrics). Sharded per
/// thread so the UDP workers do not contend on one cache line. Also carries the DNS query
/// statistics ([`QueryStats`]) behind the `/metrics` query counters and latency histograms.
#[derive(Debug)]
pub struct AnswerCounters {
    targets: usize,
    cells: Box<[AtomicU64]>,
    /// Queries by service, target, rcode, protocol and ECS presence, and response latency.
    /// Label ids are process-wide, so these survive any configuration change: share them with
    /// the counters of the next configuration ([`AnswerCounters::carrying`]).
    pub queries: Arc<QueryStats>,
}

impl AnswerCounters {
    pub fn new(targets: usize) -> Self {
        Self::with_queries(targets, Arc::new(QueryStats::new()))
    }

    /// Fresh answer counters for `targets` targets that keep counting queries in `queries`.
    fn with_queries(targets: usize, queries: Arc<QueryStats>) -> Self {
        let stride = targets + PAD;
        Self {
            targets,
            cells: (0..stride * SHARDS).map(|_| AtomicU64::new(0)).collect(),
            queries,
        }
    }

    /// Fresh answer counters for a new configuration with `targets` targets, sharing this
    /// one's query statistics (so `/metrics` query counters do not reset).
    pub fn carrying(&self, targets: usize) -> Self {
        Self::with_queries(targets, self.queries.clone())
    }

    #[inline]
    pub fn add(&self, target: usize, n: u64) {
        if target < self.targets {
            let shard = counter_shard();
            self.cells[shard * (self.targets + PAD) + target].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Answers per target, all shards summed.
    pub fn totals(&self) -> Vec<u64> {
        let stride = self.targets + PAD;
        (0..self.targets)
            .map(|t| {
                (0..SHARDS)
                    .map(|s| self.cells[s * stride + t].load(Ordering::Relaxed))
                    .sum()
            })
            .collect()
    }
}
