//! What the CDNs report for the cache-aware policy: cache reports (fresh for 5 minutes) and
//! the cache score's inputs layered from them and the prober's hit ratio.

use std::time::Duration;

use crate::policy::chain::CacheInputs;

/// Cache figures a CDN reported (each 0..=1), for all its clients or one region's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheReport {
    pub hit_ratio: Option<f64>,
    pub popularity: Option<f64>,
    pub ttl_factor: Option<f64>,
    pub purge_ratio: Option<f64>,
    /// When it was received (Unix ms, wall clock).
    pub at_ms: u64,
    /// When it was received, in health time (how old it is: see [`CACHE_REPORT_MAX_AGE`]).
    #[serde(skip)]
    pub received_ms: u64,
}

/// The seed's cache score looks at the last 5 minutes: older reports no longer count.
pub const CACHE_REPORT_MAX_AGE: Duration = Duration::from_secs(300);

/// Cache lookups the prober must have seen in 5 minutes before its hit ratio counts.
pub const MIN_PROBE_CACHE_LOOKUPS: u64 = 3;

/// The cache-aware inputs of one target for one group of clients: each of the seed's factors
/// from the first source that has it — the region's report, the target's report (both only
/// while fresh) — and for popularity, failing a reported one, the measured hit ratio (reported,
/// else the prober's over 5 minutes) as its observable proxy; then the seed's defaults.
pub fn cache_inputs(reports: &[&CacheReport], probe_hit_ratio: Option<f64>) -> CacheInputs {
    let d = CacheInputs::default();
    let first = |f: fn(&CacheReport) -> Option<f64>| reports.iter().find_map(|r| f(r));
    let (popularity, popularity_from) = match (
        first(|r| r.popularity),
        first(|r| r.hit_ratio),
        probe_hit_ratio,
    ) {
        (Some(p), _, _) => (p, "reported"),
        (None, Some(h), _) => (h, "reported hit ratio"),
        (None, None, Some(h)) => (h, "probed hit ratio"),
        (None, None, None) => (d.popularity, "default"),
    };
    let (purge_ratio, purge_ratio_from) = match first(|r| r.purge_ratio) {
        Some(p) => (p, "report"),
        None => (d.purge_ratio, d.purge_ratio_from),
    };
    CacheInputs {
        popularity,
        ttl_factor: first(|r| r.ttl_factor).unwrap_or(d.ttl_factor),
        purge_ratio,
        popularity_from,
        purge_ratio_from,
    }
}

impl CacheReport {
    /// Every figure given is a ratio in 0..=1: Err("FIELD: reason") otherwise.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("hit_ratio", self.hit_ratio),
            ("popularity", self.popularity),
            ("ttl_factor", self.ttl_factor),
            ("purge_ratio", self.purge_ratio),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(format!("{field}: must be between 0 and 1 (got {v})"));
            }
        }
        Ok(())
    }

    /// The cache-aware policy's inputs from this report alone.
    pub fn inputs(&self) -> CacheInputs {
        cache_inputs(&[self], None)
    }

    /// Received less than [`CACHE_REPORT_MAX_AGE`] before `now_ms` (health time).
    pub fn fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.received_ms) <= CACHE_REPORT_MAX_AGE.as_millis() as u64
    }
}
