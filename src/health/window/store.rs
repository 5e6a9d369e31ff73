//! What the health module keeps per target (a [`Series`] per level and the latest observation
//! per vantage) and for all targets ([`HealthStore`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::series::{MAX_VANTAGES, Series};
use super::stats::{Win, WindowConfig, WindowStats};
use crate::health::{Level, Observation};

/// Everything the health module keeps about one target: one Series per Level (index
/// `Level::index()`), and the latest Observation per (level, vantage) for status displays.
///
/// Latencies feed the percentiles only from ok observations (a failure's latency is how long it
/// took to fail, a timeout for instance, not how fast the target answers).
pub struct TargetHealth {
    series: [Series; Level::ALL.len()],
    /// Per level: the observation with the newest `at_ms` per vantage (at most [`MAX_VANTAGES`]).
    last: [BTreeMap<Arc<str>, Observation>; Level::ALL.len()],
}

impl fmt::Debug for TargetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for level in Level::ALL {
            let i = level.index();
            if !self.series[i].buckets.is_empty() || !self.last[i].is_empty() {
                m.entry(&level.as_str(), &self.series[i]);
            }
        }
        m.finish()
    }
}

impl TargetHealth {
    pub fn new(cfg: WindowConfig) -> Self {
        TargetHealth {
            series: std::array::from_fn(|_| Series::new(cfg)),
            last: std::array::from_fn(|_| BTreeMap::new()),
        }
    }

    /// Records into the observation's level; see [`Series::record`] for the return value. The
    /// latest-per-vantage table is updated whenever the observation is the newest of its vantage.
    pub fn record(&mut self, obs: &Observation) -> bool {
        let i = obs.level.index();
        let last = &mut self.last[i];
        match last.get_mut(&obs.vantage) {
            Some(prev) => {
                if obs.at_ms >= prev.at_ms {
                    *prev = obs.clone();
                }
            }
            None => {
                let oldest = last
                    .iter()
                    .min_by_key(|(_, o)| o.at_ms)
                    .map(|(k, o)| (k.clone(), o.at_ms));
                match oldest {
                    Some((k, at)) if last.len() >= MAX_VANTAGES => {
                        if at <= obs.at_ms {
                            last.remove(&k);
                            last.insert(obs.vantage.clone(), obs.clone());
                        }
                    }
                    _ => {
                        last.insert(obs.vantage.clone(), obs.clone());
                    }
                }
            }
        }
        self.series[i].record(
            &obs.vantage,
            obs.at_ms,
            obs.ok,
            obs.ok.then_some(obs.latency),
            obs.cache.as_ref().map(|c| c.status),
        )
    }

    pub fn series(&mut self, level: Level) -> &mut Series {
        &mut self.series[level.index()]
    }

    pub fn stats(&mut self, level: Level, now_ms: u64, win: Win) -> WindowStats {
        self.series[level.index()].stats(now_ms, win)
    }

    /// The latest observation of each vantage at this level, sorted by vantage.
    pub fn last(&self, level: Level) -> Vec<&Observation> {
        self.last[level.index()].values().collect()
    }

    pub fn last_from(&self, level: Level, vantage: &str) -> Option<&Observation> {
        self.last[level.index()].get(vantage)
    }
}

/// All targets.
pub struct HealthStore {
    cfg: WindowConfig,
    targets: FxHashMap<Arc<str>, TargetHealth>,
}

impl fmt::Debug for HealthStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&Arc<str>> = self.targets.keys().collect();
        names.sort_unstable();
        let mut m = f.debug_map();
        for name in names {
            m.entry(name, &self.targets[name]);
        }
        m.finish()
    }
}

impl HealthStore {
    pub fn new(cfg: WindowConfig) -> Self {
        HealthStore {
            cfg,
            targets: FxHashMap::default(),
        }
    }

    /// Records into the observation's target, created on first use. See [`TargetHealth::record`].
    pub fn record(&mut self, obs: &Observation) -> bool {
        if let Some(t) = self.targets.get_mut(&*obs.target) {
            return t.record(obs);
        }
        let mut t = TargetHealth::new(self.cfg);
        let accepted = t.record(obs);
        self.targets.insert(obs.target.clone(), t);
        accepted
    }

    pub fn target(&mut self, name: &str) -> Option<&mut TargetHealth> {
        self.targets.get_mut(name)
    }

    /// Sorted.
    pub fn target_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.targets.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Drops the targets `keep` says no to (targets removed from the configuration).
    pub fn retain_targets(&mut self, keep: impl Fn(&str) -> bool) {
        self.targets.retain(|name, _| keep(name));
    }
}
