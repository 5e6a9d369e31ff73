//! From health and pushed inputs to a routing table: the policy inputs of every target (cost,
//! RUM, cache score, the machines stepped), the compile, and the swap with its all-down events.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::{info, warn};

use crate::clock::Now;
use crate::config::{Target, ValidConfig};
use crate::events::{Event, EventKind, Severity};
use crate::health::Level;
use crate::health::machine::{EffectiveStatus, Signals, TargetMachine, Transition};
use crate::health::window::{HealthStore, Win, WindowStats};
use crate::policy;
use crate::policy::chain::{CacheInputs, TargetInput};
use crate::policy::cost::{CostInputs, CostStatus, Month};
use crate::policy::{PolicyInputs, RegionOverride};
use crate::table::RoutingTable;

use super::events::override_event;
use super::live::Live;
use super::{
    CacheReport, Control, Inner, MIN_PROBE_CACHE_LOOKUPS, RegionKeys, RumStore, cache_inputs,
};

/// Whether building the inputs moves time on: steps the machines, notes cost-cap changes and
/// ends expired region overrides (a compile), or only reads (a view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stepping {
    Advance,
    ReadOnly,
}

/// When a compile swaps its table in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swap {
    /// Only when the answers (or the all-down set) differ from the table in force.
    IfChanged,
    /// Always (a new configuration or new geo data: the table must reflect them).
    Always,
}

/// What was measured of a target: RUM, latency per region and the cache score's inputs.
struct Measured {
    rum: Option<[WindowStats; 3]>,
    latency_by_region: Vec<(String, std::time::Duration)>,
    cache: CacheInputs,
    cache_by_region: Vec<(String, CacheInputs)>,
}

impl Control {
    /// Step every target's health state machine to the clock's time, compile with the result
    /// and swap the new table in when its answers differ from the table in force. Returns the
    /// new table when one was swapped in.
    pub fn tick(&self) -> Option<Arc<RoutingTable>> {
        let mut st = self.inner.lock();
        // Read under the lock: steps see time in the order they take it.
        let now = self.now();
        self.compile_locked(&mut st, now, Swap::IfChanged)
    }

    /// The policy inputs now (health states, latencies), without stepping.
    pub fn inputs(&self) -> PolicyInputs {
        let now = self.now();
        let mut st = self.inner.lock();
        let st = &mut *st;
        self.build_inputs(&st.config, &mut st.live, now, Stepping::ReadOnly)
    }

    /// The latency incumbents of the last compile.
    pub fn memory(&self) -> policy::chain::Memory {
        self.inner.lock().live.memory.clone()
    }

    /// The policy inputs of every target of `cfg` at `now`.
    fn build_inputs(
        &self,
        cfg: &ValidConfig,
        live: &mut Live,
        now: Now,
        stepping: Stepping,
    ) -> PolicyInputs {
        // Calendar months, cost projections, override expiry and event times: the wall clock;
        // health windows and machines: health time.
        let (wall_ms, now_ms) = (now.wall_ms, now.mono_ms);
        let advance = stepping == Stepping::Advance;
        let this_month = this_month(live, wall_ms);
        let mut store = self.health.lock();
        let mut rum = self.rum.lock();
        // RUM windows per region, keyed `target|region`: grouped by target once per compile.
        let region_keys = rum.regions_by_target();
        let mut pending: Vec<Transition> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut targets = Vec::with_capacity(cfg.targets.len());
        for (ti, t) in cfg.targets.iter().enumerate() {
            let cost = match &t.cost {
                Some(model) => model.status(
                    &CostInputs {
                        reported: live.usage.get(&t.name).cloned(),
                        answers: vec![("default".into(), this_month[ti])],
                    },
                    wall_ms,
                ),
                None => CostStatus::unmetered(),
            };
            if advance {
                events.extend(cost_cap_change(&mut live.over_cap, t, &cost, wall_ms));
                live.costs.insert(t.name.clone(), cost.clone());
            }
            let m = measure(t, live, &mut store, &mut rum, &region_keys, now_ms);
            let mut input = TargetInput::unknown();
            let name: Arc<str> = Arc::from(t.name.as_str());
            let th = store.target(&t.name);
            // A target nobody probes gets a machine once RUM reports on it; an operator's
            // override gives it one too.
            if t.check.is_some() || th.is_some() || m.rum.is_some() {
                live.machines
                    .entry(name.clone())
                    .or_insert_with(|| TargetMachine::new(name.clone(), now_ms));
            }
            if let Some(machine) = live.machines.get_mut(&name) {
                let mut signals = match th {
                    Some(th) => {
                        input.latency = th.stats(Level::Check, now_ms, Win::M5).p95;
                        let confirmed = live.confirmed.get(&name).copied();
                        Signals::from_target(th, now_ms, confirmed, machine.judged_until())
                    }
                    None => Signals::empty(),
                };
                signals.rum = m.rum;
                if advance {
                    pending.extend(machine.step(&signals, &cfg.health, now));
                }
                input.state = machine.effective();
                input.unstable = machine.unstable(now_ms);
                input.reason = machine.reason().to_string();
            }
            input.latency_by_region = m.latency_by_region;
            input.cache = m.cache;
            input.cache_by_region = m.cache_by_region;
            super::purges::overlay(live, t, wall_ms, &mut input);
            input.cost = cost;
            let demote = cfg.purge.freshness.demote_stale;
            input.stale = live
                .stale
                .get(&t.name)
                .filter(|_| demote)
                .map(|(why, since)| {
                    format!("{why} for {}s", wall_ms.saturating_sub(*since) / 1000)
                });
            targets.push(input);
        }
        drop(rum);
        drop(store);
        for tr in pending {
            self.record_transition(live, tr, now);
        }
        if advance {
            events.extend(expire_region_overrides(live, wall_ms));
        }
        for ev in events {
            self.emit(live, ev);
        }
        PolicyInputs {
            now_ms: wall_ms,
            targets,
            region_overrides: region_overrides(cfg, live, wall_ms),
        }
    }

    /// Compile with the inputs of now and swap the table in per `swap`; the all-down changes
    /// against the table in force are events. The new table when one was swapped in.
    pub(super) fn compile_locked(
        &self,
        st: &mut Inner,
        now: Now,
        swap: Swap,
    ) -> Option<Arc<RoutingTable>> {
        let st = &mut *st;
        // Forget targets that left the configuration.
        st.live
            .machines
            .retain(|k, _| st.config.targets.iter().any(|t| *t.name == **k));
        let inputs = self.build_inputs(&st.config, &mut st.live, now, Stepping::Advance);
        let started = std::time::Instant::now();
        let (mut table, memory) =
            policy::compile_with(&st.config, &st.geo, &inputs, &st.live.memory);
        self.metrics
            .compile_duration
            .observe(started.elapsed().as_secs_f64());
        st.live.memory = memory;
        table.counters = st.live.counters.clone();
        let current = self.table.load();
        for ev in all_down_changes(&current.all_down, &table.all_down, now.wall_ms) {
            self.emit(&mut st.live, ev);
        }
        if swap == Swap::IfChanged
            && table.fingerprint == current.fingerprint
            && table.all_down == current.all_down
        {
            return None;
        }
        let table = Arc::new(table);
        self.table.store(table.clone());
        self.metrics.table_swaps.inc();
        if swap == Swap::IfChanged {
            info!(
                generation = table.generation,
                "the answers changed (health, overrides or reported inputs): new routing table"
            );
        }
        Some(table)
    }
}

/// Answers per target this month (the month's base moves on when the month turns or the
/// target list changed size).
fn this_month(live: &mut Live, wall_ms: u64) -> Vec<u64> {
    let totals = live.counters.totals();
    let month = Month::containing(wall_ms).start_ms;
    if live.month_base.0 != month || live.month_base.1.len() != totals.len() {
        live.month_base = (month, totals.clone());
    }
    totals
        .iter()
        .zip(&live.month_base.1)
        .map(|(t, b)| t.saturating_sub(*b))
        .collect()
}

/// The event when target `t` went over its cap or back under it (`over_cap` updated).
fn cost_cap_change(
    over_cap: &mut BTreeSet<String>,
    t: &Target,
    cost: &CostStatus,
    wall_ms: u64,
) -> Option<Event> {
    let was = over_cap.contains(&t.name);
    if cost.over_cap && !was {
        over_cap.insert(t.name.clone());
        Some(Event::new(
            EventKind::CostCap,
            Severity::Warning,
            "target",
            &t.name,
            format!(
                "{}: projected month-end spend ${:.2} is over the ${:.2} cap ({})",
                t.name,
                cost.projected,
                cost.cap.unwrap_or(0.0),
                cost.source
            ),
            wall_ms,
        ))
    } else if !cost.over_cap && was {
        over_cap.remove(&t.name);
        Some(Event::new(
            EventKind::CostCapCleared,
            Severity::Info,
            "target",
            &t.name,
            format!(
                "{}: projected month-end spend ${:.2} is under the cap again",
                t.name, cost.projected
            ),
            wall_ms,
        ))
    } else {
        None
    }
}

/// Real-user measurements (complaints feed the RUM rule, latency per region the latency
/// policy) and the cache score's inputs (seed: over the last 5 minutes: fresh reports, the
/// prober's measured hit ratio) of target `t`.
fn measure(
    t: &Target,
    live: &Live,
    store: &mut HealthStore,
    rum: &mut RumStore,
    region_keys: &RegionKeys,
    now_ms: u64,
) -> Measured {
    let rum_stats = rum
        .all
        .target(&t.name)
        .map(|th| th.series(Level::Check).all_stats(now_ms));
    let mut latency_by_region = Vec::new();
    for (region, k) in region_keys.get(t.name.as_str()).into_iter().flatten() {
        if let Some(th) = rum.by_region.target(k)
            && let Some(p) = th.stats(Level::Check, now_ms, Win::M5).p95
        {
            latency_by_region.push((region.to_string(), p));
        }
    }
    let probe_hit = store
        .target(&t.name)
        .map(|th| th.stats(Level::Cache, now_ms, Win::M5))
        .filter(|s| s.cache_lookups >= MIN_PROBE_CACHE_LOOKUPS)
        .and_then(|s| s.cache_hit_ratio);
    let overall = live.cache_reports.get(&t.name).filter(|r| r.fresh(now_ms));
    let cache = cache_inputs(overall.as_slice(), probe_hit);
    let cache_by_region = live
        .cache_regions
        .get(&t.name)
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.fresh(now_ms))
        .map(|(region, r)| {
            let layers: Vec<&CacheReport> = std::iter::once(r).chain(overall).collect();
            (region.clone(), cache_inputs(&layers, probe_hit))
        })
        .collect();
    Measured {
        rum: rum_stats,
        latency_by_region,
        cache,
        cache_by_region,
    }
}

/// Drop the region overrides whose time is up; an event for each.
fn expire_region_overrides(live: &mut Live, wall_ms: u64) -> Vec<Event> {
    let (keep, ended): (Vec<_>, Vec<_>) = std::mem::take(&mut live.region_overrides)
        .into_iter()
        .partition(|o| o.until_ms.is_none_or(|u| u > wall_ms));
    live.region_overrides = keep;
    ended
        .into_iter()
        .map(|o| {
            let region = o.region.as_ref().map(|r| r.1.as_str()).unwrap_or("");
            let summary = format!("{}: override for clients in {region} expired", o.target);
            override_event(&o.target, summary, wall_ms)
        })
        .collect()
}

/// The region overrides in force, as the policy reads them.
fn region_overrides(cfg: &ValidConfig, live: &Live, wall_ms: u64) -> Vec<RegionOverride> {
    live.region_overrides
        .iter()
        .filter(|o| o.until_ms.is_none_or(|u| u > wall_ms))
        .filter_map(|o| {
            let target = cfg.targets.iter().position(|t| t.name == o.target)?;
            let (key, label) = o.region.clone()?;
            let mut reason = format!("{} by operator for clients in {label}", o.kind);
            if !o.reason.is_empty() {
                reason += &format!(": {}", o.reason);
            }
            Some(RegionOverride {
                target,
                region: key,
                state: EffectiveStatus::from(o.kind),
                reason,
            })
        })
        .collect()
}

/// The events of services entering and leaving all-down between the table in force and a new
/// one.
fn all_down_changes(current: &[String], new: &[String], wall_ms: u64) -> Vec<Event> {
    let entered = new.iter().filter(|s| !current.contains(s)).map(|svc| {
        warn!(service = %svc, "every candidate is down: answering per all_down (fail-open: the least bad; fail-closed: SERVFAIL or the fallback)");
        Event::new(
            EventKind::AllDown,
            Severity::Critical,
            "service",
            svc,
            format!("{svc}: every candidate is down for some clients (answering per all_down)"),
            wall_ms,
        )
    });
    let left = current.iter().filter(|s| !new.contains(s)).map(|svc| {
        info!(service = %svc, "candidates are up again");
        Event::new(
            EventKind::AllDownRecovered,
            Severity::Info,
            "service",
            svc,
            format!("{svc}: a candidate is up again for every client"),
            wall_ms,
        )
    });
    entered.chain(left).collect()
}
