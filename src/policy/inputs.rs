//! What a compile knows besides the configuration: the time, every target's health, latency,
//! cache and cost inputs, and the operator's region overrides.

use std::time::Duration;

use super::cost::CostStatus;
use crate::config::{RegionKey, ValidConfig};
use crate::geo::Location;
use crate::health::machine::EffectiveStatus;

/// What the chain knows of every target at compile time (indexed like `cfg.targets`).
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    pub now_ms: u64,
    pub targets: Vec<TargetInput>,
    /// Operator overrides limited to a region's clients.
    pub region_overrides: Vec<RegionOverride>,
}

impl PolicyInputs {
    /// Every target healthy, unmeasured and unmetered.
    pub fn unknown(cfg: &ValidConfig) -> Self {
        Self {
            now_ms: 0,
            targets: cfg.targets.iter().map(|_| TargetInput::unknown()).collect(),
            region_overrides: Vec::new(),
        }
    }
}

/// A target forced up, down or drained for the clients of one region only.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOverride {
    pub target: usize,
    pub region: RegionKey,
    pub state: EffectiveStatus,
    pub reason: String,
}

impl RegionOverride {
    /// How specifically the override matches clients at `loc` (None: it does not).
    pub(super) fn matches(&self, loc: &Location) -> Option<u8> {
        match self.region {
            RegionKey::Country(_, cc) if loc.country == Some(cc) => Some(3),
            RegionKey::Continent(c) if loc.continent == Some(c) => Some(2),
            RegionKey::Default if loc.continent.is_none() => Some(1),
            _ => None,
        }
    }
}

/// Everything the chain knows about one target (indexed like the configuration's targets).
#[derive(Debug, Clone)]
pub struct TargetInput {
    pub state: EffectiveStatus,
    /// Recovering, or changed state recently: answers that depend on it get a short TTL.
    pub unstable: bool,
    /// Why it is in its state ("error rate 7.2 % > 5 % over 1m since 12:03:10").
    pub reason: String,
    /// Recent p95 latency (all vantage points).
    pub latency: Option<Duration>,
    /// Recent p95 latency seen from clients of a region (continent code, e.g. "EU").
    pub latency_by_region: Vec<(String, Duration)>,
    pub cache: CacheInputs,
    /// Cache inputs for the clients of a region (continent code), where a report has them.
    pub cache_by_region: Vec<(String, CacheInputs)>,
    pub cost: CostStatus,
    /// Serving stale content (`purge.demote_stale`): why, ranked behind fresh targets like a
    /// degraded one ("stale content: /app.css etag \"v1\" vs origin \"v2\" for 95s").
    pub stale: Option<String>,
}

impl TargetInput {
    /// A target nothing is known about: healthy, unmeasured, unmetered.
    pub fn unknown() -> Self {
        Self {
            state: EffectiveStatus::Healthy,
            unstable: false,
            reason: "no health data".into(),
            latency: None,
            latency_by_region: Vec::new(),
            cache: CacheInputs::default(),
            cache_by_region: Vec::new(),
            cost: CostStatus::unmetered(),
            stale: None,
        }
    }

    /// The cache inputs for clients of `region`: its own where there are some, else the
    /// target's.
    pub fn cache_in(&self, region: Option<&str>) -> (CacheInputs, bool) {
        if let Some(r) = region
            && let Some((_, c)) = self.cache_by_region.iter().find(|(k, _)| k == r)
        {
            return (*c, true);
        }
        (self.cache, false)
    }

    /// Ranked behind the others: degraded, or serving stale content.
    pub(super) fn demoted(&self) -> bool {
        self.state.is_degraded() || self.stale.is_some()
    }

    pub(super) fn latency_in(&self, region: Option<&str>) -> Option<(Duration, &'static str)> {
        if let Some(r) = region
            && let Some((_, d)) = self.latency_by_region.iter().find(|(k, _)| k == r)
        {
            return Some((*d, "region"));
        }
        self.latency.map(|d| (d, "all"))
    }
}

/// Inputs of the seed's cache score, each 0..=1 (defaults as in the seed: 0.5, 0.5, 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheInputs {
    /// Object popularity.
    pub popularity: f64,
    /// Average TTL remaining, as a fraction.
    pub ttl_factor: f64,
    /// Share of recent objects purged.
    pub purge_ratio: f64,
    /// Where `popularity` came from ("reported", "probed hit ratio", "default", …), for traces.
    pub popularity_from: &'static str,
    /// Where `purge_ratio` came from: "report" (pushed cache metrics), "purges" (the purges
    /// steerd made over the last 5 minutes) or "default".
    pub purge_ratio_from: &'static str,
}

impl Default for CacheInputs {
    fn default() -> Self {
        Self {
            popularity: 0.5,
            ttl_factor: 0.5,
            purge_ratio: 0.0,
            popularity_from: "default",
            purge_ratio_from: "default",
        }
    }
}

impl CacheInputs {
    /// `(popularity + ttl_factor + purge_impact) / 3`, `purge_impact = 1 − purge_ratio`.
    pub fn score(&self) -> f64 {
        (self.popularity + self.ttl_factor + (1.0 - self.purge_ratio)) / 3.0
    }
}
