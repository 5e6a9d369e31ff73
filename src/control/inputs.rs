//! The inputs that arrive: the prober's reports, observations pushed by remote agents, RUM
//! beacons, billing usage and cache reports (each checked and recorded), and their views.

use std::sync::Arc;

use parking_lot::Mutex;
use tracing::warn;

use crate::events::{Event, EventKind, Severity};
use crate::health::machine::{EffectiveStatus, Override};
use crate::health::window::{HealthStore, Win};
use crate::health::{Level, Observation, WindowStats};
use crate::policy::cost::{CostStatus, Usage};
use crate::policy::reports::CacheReport;

use super::Control;
use super::compile::Swap;
use super::live::Live;

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
pub(super) type RegionKeys = std::collections::HashMap<String, Vec<(String, Arc<str>)>>;

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

impl Control {
    /// Health windows of every probed target.
    pub fn health(&self) -> &Arc<Mutex<HealthStore>> {
        &self.health
    }

    /// Record a probe report's observations. Returns true when it confirms a failure (the
    /// caller should recompile at once rather than at the next tick).
    pub fn record(
        &self,
        observations: &[Observation],
        confirmed_down: Option<(&Arc<str>, u64)>,
    ) -> bool {
        let now = self.now();
        let refused = {
            let mut store = self.health.lock();
            observations.iter().filter(|o| !store.record(o)).count()
        };
        if refused > 0 {
            // Older than the windows keep (health time never goes back, so only a stamp taken
            // long before it was recorded is): counted, never silently lost.
            self.metrics.observations_refused.inc_by(refused as u64);
            warn!(
                refused,
                "observations older than the health windows were not recorded"
            );
        }
        for o in observations {
            let level = o.level.as_str();
            self.metrics
                .probe_checks
                .with_label_values(&[&*o.target, level, if o.ok { "ok" } else { "fail" }])
                .inc();
            self.metrics
                .probe_duration
                .with_label_values(&[&*o.target, level])
                .observe(o.latency.as_secs_f64());
        }
        for o in observations
            .iter()
            .filter(|o| o.level == Level::Tls && o.ok)
        {
            // The TLS level passes with a warning when the certificate is close to expiry. The
            // target warns while any vantage point's latest check does.
            let warn_now = o.detail.contains(crate::probe::tls::EXPIRY_WARNING);
            let mut st = self.inner.lock();
            let live = &mut st.live;
            let per = live.cert_warn.entry(o.target.to_string()).or_default();
            let was = !per.is_empty();
            if warn_now {
                per.insert(o.vantage.to_string(), o.detail.clone());
            } else {
                per.remove(&*o.vantage);
            }
            let is = !per.is_empty();
            if is && !was {
                let ev = Event::new(
                    EventKind::CertExpiring,
                    Severity::Warning,
                    "target",
                    &o.target,
                    format!("{}: {}", o.target, o.detail),
                    now.wall_of(o.at_ms),
                );
                self.emit(live, ev);
            } else if !is && was {
                let ev = Event::new(
                    EventKind::CertOk,
                    Severity::Info,
                    "target",
                    &o.target,
                    format!("{}: {}", o.target, o.detail),
                    now.wall_of(o.at_ms),
                );
                self.emit(live, ev);
            }
        }
        match confirmed_down {
            Some((t, at)) => {
                self.inner.lock().live.confirmed.insert(t.clone(), at);
                true
            }
            None => false,
        }
    }

    /// Observations pushed by a remote probe agent, stamped on the agent's wall clock: each is
    /// checked (known target, time not more than 5 s ahead nor 10 min old) and recorded like
    /// the local prober's, at the health time its stamp corresponds to. Any level counts: an
    /// agent that reports levels without the run's verdict (`check`) gets one derived per
    /// target, vantage and time (ok when every level reported was ok), so its failures and
    /// its recoveries move the target's health. Returns, per observation, `Ok` or why it was
    /// refused.
    pub fn record_remote(&self, observations: &[Observation]) -> Vec<Result<(), String>> {
        let now = self.now();
        let known: Vec<String> = {
            let st = self.inner.lock();
            st.config.targets.iter().map(|t| t.name.clone()).collect()
        };
        let mut out = Vec::with_capacity(observations.len());
        let mut good: Vec<Observation> = Vec::new();
        for o in observations {
            let r = check_stamp(o.at_ms, now.wall_ms, "at_ms").and_then(|()| {
                if known.iter().any(|k| **k == *o.target) {
                    Ok(())
                } else {
                    Err(format!("target: no target named \"{}\"", o.target))
                }
            });
            let vantage = self.vantage_labels.label(&o.vantage, r.is_ok());
            self.metrics
                .observations
                .with_label_values(&[
                    vantage.as_str(),
                    if r.is_ok() { "accepted" } else { "rejected" },
                ])
                .inc();
            if r.is_ok() {
                let mut o = o.clone();
                o.at_ms = now.mono_of(o.at_ms);
                good.push(o);
            }
            out.push(r);
        }
        let derived = derive_checks(&good);
        good.extend(derived);
        self.record(&good, None);
        out
    }

    /// Real-user beacons (same time rules as [`Control::record_remote`]).
    pub fn record_rum(&self, beacons: &[RumBeacon]) -> Vec<Result<(), String>> {
        let now = self.now();
        let known: Vec<String> = {
            let st = self.inner.lock();
            st.config.targets.iter().map(|t| t.name.clone()).collect()
        };
        let mut rum = self.rum.lock();
        beacons
            .iter()
            .map(|b| {
                if !known.contains(&b.target) {
                    return Err(format!("target: no target named \"{}\"", b.target));
                }
                check_stamp(b.at_ms, now.wall_ms, "at")?;
                let region = b.region.clone().unwrap_or_else(|| "unknown".into());
                let obs = |key: &str| Observation {
                    target: Arc::from(key),
                    level: Level::Check,
                    vantage: Arc::from(region.as_str()),
                    at_ms: now.mono_of(b.at_ms),
                    ok: b.ok,
                    latency: b.latency,
                    detail: String::new(),
                    cache: None,
                };
                rum.all.record(&obs(&b.target));
                if b.region.is_some() {
                    rum.by_region
                        .record(&obs(&format!("{}|{region}", b.target)));
                }
                self.metrics
                    .rum_beacons
                    .with_label_values(&[b.target.as_str(), if b.ok { "ok" } else { "error" }])
                    .inc();
                Ok(())
            })
            .collect()
    }

    /// Usage reported by a target's billing (None clears it). Takes effect at the next tick.
    pub fn set_usage(&self, target: &str, usage: Option<Usage>) -> Result<(), String> {
        self.put_report(target, |live| {
            match usage {
                Some(u) => live.usage.insert(target.to_string(), u),
                None => live.usage.remove(target),
            };
        })
    }

    /// Cache metrics reported for a target, for all its clients or (`region`, a continent
    /// code) one region's.
    pub fn set_cache_report(
        &self,
        target: &str,
        region: Option<&str>,
        mut report: CacheReport,
    ) -> Result<(), String> {
        report.received_ms = self.now().mono_ms;
        self.put_report(target, |live| match region {
            None => {
                live.cache_reports.insert(target.to_string(), report);
            }
            Some(r) => {
                live.cache_regions
                    .entry(target.to_string())
                    .or_default()
                    .insert(r.to_string(), report);
            }
        })
    }

    /// A target serving stale content since `since_ms` (wall), and why (None: fresh again).
    /// With `purge.demote_stale` it ranks behind fresh targets from the compile this makes.
    pub fn set_stale(&self, target: &str, stale: Option<(String, u64)>) -> Result<(), String> {
        self.put_report(target, |live| {
            match stale {
                Some(s) => live.stale.insert(target.to_string(), s),
                None => live.stale.remove(target),
            };
        })
    }

    /// Why a target serves stale content, and since when (wall ms); None: it does not.
    pub fn stale(&self, target: &str) -> Option<(String, u64)> {
        self.inner.lock().live.stale.get(target).cloned()
    }

    /// Keep a report of a known `target` (`put`) and compile with it.
    fn put_report(&self, target: &str, put: impl FnOnce(&mut Live)) -> Result<(), String> {
        let mut st = self.inner.lock();
        st.known_target(target)?;
        put(&mut st.live);
        let now = self.now();
        self.compile_locked(&mut st, now, Swap::IfChanged);
        Ok(())
    }

    /// Reported usage and cache metrics of a target.
    pub fn reports(
        &self,
        target: &str,
    ) -> (Option<Usage>, Option<CacheReport>, Option<CostStatus>) {
        let st = self.inner.lock();
        (
            st.live.usage.get(target).cloned(),
            st.live.cache_reports.get(target).cloned(),
            st.live.costs.get(target).cloned(),
        )
    }

    /// A target's cache reports, each with whether it still counts (fresh): for all its
    /// clients, then per region.
    #[allow(clippy::type_complexity)]
    pub fn cache_reports(
        &self,
        target: &str,
    ) -> (
        Option<(CacheReport, bool)>,
        Vec<(String, CacheReport, bool)>,
    ) {
        let now = self.now().mono_ms;
        let st = self.inner.lock();
        let all = st
            .live
            .cache_reports
            .get(target)
            .map(|r| (r.clone(), r.fresh(now)));
        let regions = st
            .live
            .cache_regions
            .get(target)
            .into_iter()
            .flatten()
            .map(|(k, r)| (k.clone(), r.clone(), r.fresh(now)))
            .collect();
        (all, regions)
    }

    /// A target's machine: effective state, since (wall clock), reason, override (None when
    /// never stepped).
    pub fn target_state(
        &self,
        target: &str,
    ) -> Option<(EffectiveStatus, u64, String, Option<Override>)> {
        let now = self.now();
        let st = self.inner.lock();
        st.live.machines.get(target).map(|m| {
            (
                m.effective(),
                now.wall_of(m.since_ms()),
                m.reason().to_string(),
                m.current_override().cloned(),
            )
        })
    }

    /// RUM statistics of a target: all regions, then per region (5-minute window).
    pub fn rum_stats(&self, target: &str) -> (Option<WindowStats>, Vec<(String, WindowStats)>) {
        let now_ms = self.now().mono_ms;
        let mut rum = self.rum.lock();
        let keys = rum.regions_by_target();
        rum.stats(target, &keys, now_ms)
    }
}
