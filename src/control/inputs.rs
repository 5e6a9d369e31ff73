//! Inputs pushed through the admin API: CDN cache reports, RUM beacons, and the checks of
//! pushed observations' stamps.

use std::sync::Arc;
use std::time::Duration;

use crate::health::window::{HealthStore, Win};
use crate::health::{Level, Observation, WindowStats};
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
    CacheInputs {
        popularity,
        ttl_factor: first(|r| r.ttl_factor).unwrap_or(d.ttl_factor),
        purge_ratio: first(|r| r.purge_ratio).unwrap_or(d.purge_ratio),
        popularity_from,
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

/// One real-user beacon.
#[derive(Debug, Clone, PartialEq)]
pub struct RumBeacon {
    pub target: String,
    /// Continent of the client ("EU"), when it could be located.
    pub region: Option<String>,
    pub latency: std::time::Duration,
    pub ok: bool,
    pub at_ms: u64,
}

/// RUM windows: per target, and per target × region (key `target|EU`).
pub struct RumStore {
    pub all: HealthStore,
    pub by_region: HealthStore,
}

/// Per target, its regions and their window keys in [`RumStore::by_region`].
type RegionKeys = std::collections::HashMap<String, Vec<(String, Arc<str>)>>;

impl RumStore {
    /// The per-region windows grouped by target: one walk, for callers that visit every
    /// target (compile, `/metrics`).
    pub(super) fn regions_by_target(&self) -> RegionKeys {
        let mut keys = RegionKeys::default();
        for k in self.by_region.target_names() {
            if let Some((target, region)) = k.rsplit_once('|') {
                keys.entry(target.to_string())
                    .or_default()
                    .push((region.to_string(), k.clone()));
            }
        }
        keys
    }

    /// A target's RUM statistics (5-minute window): all regions, then each region with data.
    pub(super) fn stats(
        &mut self,
        target: &str,
        keys: &RegionKeys,
        now_ms: u64,
    ) -> (Option<WindowStats>, Vec<(String, WindowStats)>) {
        let all = self
            .all
            .target(target)
            .map(|t| t.stats(Level::Check, now_ms, Win::M5));
        let mut regions = Vec::new();
        for (region, k) in keys.get(target).into_iter().flatten() {
            if let Some(t) = self.by_region.target(k) {
                let s = t.stats(Level::Check, now_ms, Win::M5);
                if s.count > 0 {
                    regions.push((region.clone(), s));
                }
            }
        }
        (all, regions)
    }
}

/// How far in the future a pushed observation's time may be (clock skew), and how old.
pub const MAX_FUTURE_SKEW_MS: u64 = 5_000;
pub const MAX_AGE_MS: u64 = 600_000;

/// A pushed wall-clock stamp is usable at `now_ms`: not more than [`MAX_FUTURE_SKEW_MS`] ahead,
/// not older than the windows keep. Err("FIELD: reason") otherwise.
pub(super) fn check_stamp(at_ms: u64, now_ms: u64, field: &str) -> Result<(), String> {
    if at_ms > now_ms + MAX_FUTURE_SKEW_MS {
        return Err(format!(
            "{field}: {} ms in the future (clock skew over {MAX_FUTURE_SKEW_MS} ms)",
            at_ms - now_ms
        ));
    }
    if at_ms + MAX_AGE_MS < now_ms {
        return Err(format!(
            "{field}: {} s old (the windows keep 10 minutes)",
            (now_ms - at_ms) / 1000
        ));
    }
    Ok(())
}

/// The check-level verdicts missing from a batch of observations: for every (target, vantage,
/// time) that has levels but no `check`, one check that is ok when every level was, with the
/// slowest level's latency and the first failure's detail.
pub(super) fn derive_checks(batch: &[Observation]) -> Vec<Observation> {
    let mut runs: std::collections::BTreeMap<(&str, &str, u64), (bool, Option<Observation>)> =
        Default::default();
    for o in batch {
        let (has_check, derived) = runs
            .entry((&*o.target, &*o.vantage, o.at_ms))
            .or_insert((false, None));
        if o.level == Level::Check {
            *has_check = true;
            continue;
        }
        let d = derived.get_or_insert_with(|| Observation {
            level: Level::Check,
            ok: true,
            detail: String::new(),
            cache: None,
            ..o.clone()
        });
        d.latency = d.latency.max(o.latency);
        if !o.ok && d.ok {
            d.ok = false;
            d.detail = format!("{}: {}", o.level, o.detail);
        }
    }
    runs.into_values()
        .filter(|(has_check, _)| !has_check)
        .filter_map(|(_, d)| d)
        .collect()
}
