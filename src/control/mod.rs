//! The control plane's state: the configuration and geo data in force, and the one place that
//! compiles a new routing table and swaps it in. A background task watches the GeoIP database
//! and the nets file and reloads them when they change.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::alert::Alerter;
use crate::clock::{Now, SharedClock};
use crate::config::{self, ValidConfig};
use crate::events::{Event, EventKind, EventLog, Severity};
use crate::geo::GeoData;
use crate::health::machine::{EffectiveStatus, Override};
use crate::health::machine::{Signals, TargetMachine, Transition};
use crate::health::window::{HealthStore, Win};
use crate::health::{Level, Observation, WindowStats};
use crate::metrics::Metrics;
use crate::policy;
use crate::policy::PolicyInputs;
use crate::policy::chain::CacheInputs;
use crate::policy::chain::TargetInput;
use crate::policy::cost::{CostInputs, CostStatus, Usage};
use crate::table::{RoutingTable, TableHandle};

mod gauges;
mod geo_files;
mod inputs;

pub use geo_files::*;
pub use inputs::*;

/// Health state of the targets, kept across compiles.
pub struct Live {
    pub machines: std::collections::BTreeMap<Arc<str>, TargetMachine>,
    /// Latest failure confirmed by the prober's burst, per target.
    pub confirmed: rustc_hash::FxHashMap<Arc<str>, u64>,
    /// Latency incumbents of the last compile.
    pub memory: policy::chain::Memory,
    /// Transitions, newest last (bounded).
    pub transitions: std::collections::VecDeque<Transition>,
    /// Every event (failover, recovery, all-down, cost cap, cert, override, config), bounded.
    pub log: EventLog,
    /// Targets over their monthly cap, and with a certificate close to expiry.
    pub over_cap: std::collections::BTreeSet<String>,
    /// Per target, the vantage points whose latest TLS check warned of expiry (and the detail).
    pub cert_warn: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Usage reported by the CDNs' billing, per target.
    pub usage: std::collections::BTreeMap<String, Usage>,
    /// Cache metrics reported per target, for all its clients…
    pub cache_reports: std::collections::BTreeMap<String, CacheReport>,
    /// … and per target and region (continent code).
    pub cache_regions:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, CacheReport>>,
    /// Overrides limited to a region (from the configuration).
    pub region_overrides: Vec<config::OverrideSpec>,
    /// Cost status per target as of the last compile.
    pub costs: std::collections::BTreeMap<String, CostStatus>,
    /// Answers per target (shared with every table of the configuration in force).
    pub counters: Arc<crate::table::AnswerCounters>,
    /// Answer totals at the start of the current month, and which month that is.
    pub month_base: (u64, Vec<u64>),
}

impl Live {
    fn new(targets: usize, now: Now) -> Self {
        Self {
            machines: Default::default(),
            confirmed: Default::default(),
            memory: Default::default(),
            transitions: Default::default(),
            // Ids start from the time (µs) so they keep increasing across restarts.
            log: EventLog::starting_at(MAX_EVENTS, now.wall_ms.saturating_mul(1000).max(1)),
            over_cap: Default::default(),
            cert_warn: Default::default(),
            usage: Default::default(),
            cache_reports: Default::default(),
            cache_regions: Default::default(),
            region_overrides: Vec::new(),
            costs: Default::default(),
            counters: Arc::new(crate::table::AnswerCounters::new(targets)),
            // This month from the start: answers given before the first compile are this
            // month's too.
            month_base: (
                crate::policy::cost::Month::containing(now.wall_ms).start_ms,
                vec![0; targets],
            ),
        }
    }
}

/// Events kept in memory.
const MAX_EVENTS: usize = 10_000;

/// Build an event (its id is given by the log).
fn event(
    kind: EventKind,
    severity: Severity,
    subject_kind: &'static str,
    subject: &str,
    summary: String,
    at_ms: u64,
) -> Event {
    Event {
        id: 0,
        at_ms,
        kind,
        severity,
        subject_kind,
        subject: subject.to_string(),
        summary,
        from: None,
        to: None,
    }
}

/// The event a health transition is (its time on the wall clock of `now`).
fn transition_event(tr: &Transition, now: Now) -> Event {
    let (kind, severity) = match (tr.from.usable(), tr.to) {
        (_, EffectiveStatus::Down) => (EventKind::Failover, Severity::Critical),
        (_, EffectiveStatus::ForcedDown | EffectiveStatus::Drained) => {
            (EventKind::Failover, Severity::Warning)
        }
        (_, EffectiveStatus::Degraded) => (EventKind::Degraded, Severity::Warning),
        (_, EffectiveStatus::Healthy | EffectiveStatus::ForcedUp) => {
            (EventKind::Recovery, Severity::Info)
        }
    };
    let mut ev = event(
        kind,
        severity,
        "target",
        &tr.target,
        format!(
            "{}: {} -> {}: {}",
            tr.target,
            tr.from.as_str(),
            tr.to.as_str(),
            tr.reason
        ),
        now.wall_of(tr.at_ms),
    );
    ev.from = Some(tr.from.as_str().into());
    ev.to = Some(tr.to.as_str().into());
    ev
}

/// Unix time now from the wall clock (ms).
pub fn now_ms() -> u64 {
    crate::clock::wall_ms()
}

struct Inner {
    live: Live,
    config: ValidConfig,
    geo: Arc<GeoData>,
    db_stamp: Option<FileStamp>,
    nets_stamp: Option<FileStamp>,
}

/// The control plane: config + geo → table.
#[derive(Clone)]
pub struct Control {
    table: TableHandle,
    clock: SharedClock,
    inner: Arc<Mutex<Inner>>,
    health: Arc<Mutex<HealthStore>>,
    rum: Arc<Mutex<RumStore>>,
    alerter: Arc<Mutex<Option<Alerter>>>,
    metrics: Arc<Metrics>,
    /// Remote agents' vantage names as metric labels (bounded).
    vantage_labels: Arc<crate::metrics::BoundedLabel>,
    /// Held by an apply or a geo reload from start to swap (they read files without `state`).
    applying: Arc<Mutex<()>>,
}

/// Record `ev` everywhere it goes: the log, the metrics, the journal and the alert sinks.
fn emit(live: &mut Live, metrics: &Metrics, alerter: &Mutex<Option<Alerter>>, ev: Event) {
    let ev = live.log.push(ev);
    metrics.events.with_label_values(&[ev.kind.as_str()]).inc();
    match ev.severity {
        Severity::Critical | Severity::Warning => {
            warn!(kind = ev.kind.as_str(), id = ev.id, "event: {}", ev.summary)
        }
        Severity::Info => info!(kind = ev.kind.as_str(), id = ev.id, "event: {}", ev.summary),
    }
    if let Some(a) = alerter.lock().as_ref() {
        a.send(&ev);
    }
}

/// Record a health transition: kept, counted, and an event.
fn record_transition(
    live: &mut Live,
    metrics: &Metrics,
    alerter: &Mutex<Option<Alerter>>,
    tr: Transition,
    now: Now,
) {
    metrics
        .transitions
        .with_label_values(&[&*tr.target, tr.from.as_str(), tr.to.as_str()])
        .inc();
    // From one unusable state to another (down → drained, forced down → down) nothing fails
    // over: the operator's override has its own event.
    let ev = (tr.from.usable() || tr.to.usable()).then(|| transition_event(&tr, now));
    live.transitions.push_back(tr);
    if live.transitions.len() > MAX_EVENTS {
        live.transitions.pop_front();
    }
    if let Some(ev) = ev {
        emit(live, metrics, alerter, ev);
    }
}

fn stamps(cfg: &ValidConfig) -> (Option<FileStamp>, Option<FileStamp>) {
    (
        cfg.geo.database.as_deref().and_then(stamp),
        cfg.geo.nets_file.as_deref().and_then(stamp),
    )
}

impl Control {
    /// Load geo data for `config` and compile the first table into a new handle, on the
    /// machine's clock.
    pub fn new(config: ValidConfig) -> Result<Self, String> {
        Self::with_clock(config, crate::clock::SystemClock::shared())
    }

    /// Like [`Control::new`], reading the time from `clock`.
    pub fn with_clock(config: ValidConfig, clock: SharedClock) -> Result<Self, String> {
        let (db_stamp, nets_stamp) = stamps(&config);
        let geo = Arc::new(load_geo(&config)?);
        let live = Live::new(config.targets.len(), clock.now());
        let mut first = policy::compile(&config, &geo);
        first.counters = live.counters.clone();
        let table = crate::table::handle(first);
        let me = Self {
            table,
            clock,
            inner: Arc::new(Mutex::new(Inner {
                live,
                config,
                geo,
                db_stamp,
                nets_stamp,
            })),
            health: Arc::new(Mutex::new(HealthStore::new(Default::default()))),
            rum: Arc::new(Mutex::new(RumStore {
                all: HealthStore::new(Default::default()),
                by_region: HealthStore::new(Default::default()),
            })),
            alerter: Arc::new(Mutex::new(None)),
            metrics: Arc::new(Metrics::new()),
            vantage_labels: Default::default(),
            applying: Default::default(),
        };
        {
            let mut st = me.inner.lock();
            if !st.config.overrides.is_empty() {
                let now = me.now();
                me.sync_overrides(&mut st, now);
                me.compile_locked(&mut st, now, true);
            }
        }
        Ok(me)
    }

    /// The time now on this control plane's clock.
    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// The clock this control plane reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Send every event from now on to these sinks too.
    pub fn set_alerter(&self, a: Option<Alerter>) {
        *self.alerter.lock() = a;
    }

    /// The counters and histograms of this control plane.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Make the machines' global overrides and the region overrides match the configuration's
    /// `[[overrides]]` (expired ones are ignored).
    fn sync_overrides(&self, st: &mut Inner, now: Now) {
        let st = &mut *st;
        let now_ms = now.wall_ms;
        let live_now = |o: &&config::OverrideSpec| o.until_ms.is_none_or(|u| u > now_ms);
        let global: Vec<config::OverrideSpec> = st
            .config
            .overrides
            .iter()
            .filter(|o| o.region.is_none())
            .filter(live_now)
            .cloned()
            .collect();
        for t in &st.config.targets {
            let want = global
                .iter()
                .find(|o| o.target == t.name)
                .map(|o| Override {
                    kind: o.kind,
                    until_ms: o.until_ms,
                    reason: o.reason.clone(),
                    set_at_ms: o.set_at_ms,
                });
            let name: Arc<str> = Arc::from(t.name.as_str());
            let has = st
                .live
                .machines
                .get(&name)
                .and_then(|m| m.current_override().cloned());
            let same = match (&want, &has) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.kind == b.kind && a.until_ms == b.until_ms && a.reason == b.reason
                }
                _ => false,
            };
            if same {
                continue;
            }
            let machine = st
                .live
                .machines
                .entry(name.clone())
                .or_insert_with(|| TargetMachine::new(name, now.mono_ms));
            let summary = match &want {
                Some(o) => format!("{}: {}", t.name, o.describe(now_ms)),
                None => format!("{}: override cleared", t.name),
            };
            let transitions = machine.set_override(want, now);
            emit(
                &mut st.live,
                &self.metrics,
                &self.alerter,
                event(
                    EventKind::Override,
                    Severity::Info,
                    "target",
                    &t.name,
                    summary,
                    now_ms,
                ),
            );
            for tr in transitions {
                record_transition(&mut st.live, &self.metrics, &self.alerter, tr, now);
            }
        }
        let regional: Vec<config::OverrideSpec> = st
            .config
            .overrides
            .iter()
            .filter(|o| o.region.is_some())
            .filter(live_now)
            .cloned()
            .collect();
        let key = |o: &config::OverrideSpec| {
            (
                o.target.clone(),
                o.region.as_ref().map(|r| r.1.clone()),
                o.kind,
                o.until_ms,
                o.reason.clone(),
            )
        };
        for o in &regional {
            if !st.live.region_overrides.iter().any(|p| key(p) == key(o)) {
                let region = o.region.as_ref().map(|r| r.1.as_str()).unwrap_or("");
                let mut summary = format!("{}: {} for clients in {region}", o.target, o.kind);
                if let Some(u) = o.until_ms {
                    summary += &format!(" until {}", crate::events::rfc3339_ms(u));
                }
                if !o.reason.is_empty() {
                    summary += &format!(": {}", o.reason);
                }
                emit(
                    &mut st.live,
                    &self.metrics,
                    &self.alerter,
                    event(
                        EventKind::Override,
                        Severity::Info,
                        "target",
                        &o.target,
                        summary,
                        now_ms,
                    ),
                );
            }
        }
        for o in std::mem::take(&mut st.live.region_overrides) {
            if !regional.iter().any(|p| key(p) == key(&o)) {
                let region = o.region.as_ref().map(|r| r.1.as_str()).unwrap_or("");
                emit(
                    &mut st.live,
                    &self.metrics,
                    &self.alerter,
                    event(
                        EventKind::Override,
                        Severity::Info,
                        "target",
                        &o.target,
                        format!("{}: override for clients in {region} ended", o.target),
                        now_ms,
                    ),
                );
            }
        }
        st.live.region_overrides = regional;
    }

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
                let ev = event(
                    EventKind::CertExpiring,
                    Severity::Warning,
                    "target",
                    &o.target,
                    format!("{}: {}", o.target, o.detail),
                    now.wall_of(o.at_ms),
                );
                emit(live, &self.metrics, &self.alerter, ev);
            } else if !is && was {
                let ev = event(
                    EventKind::CertOk,
                    Severity::Info,
                    "target",
                    &o.target,
                    format!("{}: {}", o.target, o.detail),
                    now.wall_of(o.at_ms),
                );
                emit(live, &self.metrics, &self.alerter, ev);
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

    /// Step every target's health state machine to the clock's time, compile with the result
    /// and swap the new table in when its answers differ from the table in force. Returns the
    /// new table when one was swapped in.
    pub fn tick(&self) -> Option<Arc<RoutingTable>> {
        let mut st = self.inner.lock();
        // Read under the lock: steps see time in the order they take it.
        let now = self.now();
        self.compile_locked(&mut st, now, false)
    }

    /// The policy inputs now (health states, latencies), without stepping.
    pub fn inputs(&self) -> PolicyInputs {
        let now = self.now();
        let mut st = self.inner.lock();
        let st = &mut *st;
        self.build_inputs(&st.config, &mut st.live, now, false)
    }

    /// The latency incumbents of the last compile.
    pub fn memory(&self) -> policy::chain::Memory {
        self.inner.lock().live.memory.clone()
    }

    /// Force a target up, down or drained (None clears it); takes effect in the returned table.
    pub fn set_override(
        &self,
        target: &str,
        o: Option<crate::health::machine::Override>,
    ) -> Result<Option<Arc<RoutingTable>>, String> {
        let now = self.now();
        let mut st = self.inner.lock();
        if !st.config.targets.iter().any(|t| t.name == target) {
            return Err(format!("no target named \"{target}\""));
        }
        let name: Arc<str> = Arc::from(target);
        let machine = st
            .live
            .machines
            .entry(name.clone())
            .or_insert_with(|| TargetMachine::new(name, now.mono_ms));
        let summary = match &o {
            Some(o) => format!("{target}: {}", o.describe(now.wall_ms)),
            None => format!("{target}: override cleared"),
        };
        let transitions = machine.set_override(o, now);
        let live = &mut st.live;
        emit(
            live,
            &self.metrics,
            &self.alerter,
            event(
                EventKind::Override,
                Severity::Info,
                "target",
                target,
                summary,
                now.wall_ms,
            ),
        );
        for tr in transitions {
            record_transition(live, &self.metrics, &self.alerter, tr, now);
        }
        Ok(self.compile_locked(&mut st, now, false))
    }

    /// Health transitions so far, oldest first.
    pub fn transitions(&self) -> Vec<Transition> {
        self.inner.lock().live.transitions.iter().cloned().collect()
    }

    /// Events with an id above `after`, oldest first (see [`EventLog::page`]), and the newest
    /// id so far.
    pub fn event_page(
        &self,
        after: u64,
        limit: usize,
        kinds: &[EventKind],
        subject: Option<&str>,
    ) -> (Vec<Event>, u64, Option<u64>) {
        let st = self.inner.lock();
        (
            st.live.log.page(after, limit, kinds, subject),
            st.live.log.last_id(),
            st.live.log.first_id(),
        )
    }

    /// Record a configuration change (API write or reload) as an event.
    pub fn note_config_change(&self, summary: String) {
        let mut st = self.inner.lock();
        emit(
            &mut st.live,
            &self.metrics,
            &self.alerter,
            event(
                EventKind::ConfigChanged,
                Severity::Info,
                "config",
                "",
                summary,
                self.now().wall_ms,
            ),
        );
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
        let mut st = self.inner.lock();
        if !st.config.targets.iter().any(|t| t.name == target) {
            return Err(format!("no target named \"{target}\""));
        }
        match usage {
            Some(u) => st.live.usage.insert(target.to_string(), u),
            None => st.live.usage.remove(target),
        };
        let now = self.now();
        self.compile_locked(&mut st, now, false);
        Ok(())
    }

    /// Cache metrics reported for a target, for all its clients or (`region`, a continent
    /// code) one region's.
    pub fn set_cache_report(
        &self,
        target: &str,
        region: Option<&str>,
        mut report: CacheReport,
    ) -> Result<(), String> {
        let mut st = self.inner.lock();
        if !st.config.targets.iter().any(|t| t.name == target) {
            return Err(format!("no target named \"{target}\""));
        }
        report.received_ms = self.now().mono_ms;
        match region {
            None => {
                st.live.cache_reports.insert(target.to_string(), report);
            }
            Some(r) => {
                st.live
                    .cache_regions
                    .entry(target.to_string())
                    .or_default()
                    .insert(r.to_string(), report);
            }
        }
        let now = self.now();
        self.compile_locked(&mut st, now, false);
        Ok(())
    }

    /// What [`crate::state`] saves: this month's answers, billing reports and cache metrics
    /// of the targets of the configuration in force.
    pub fn saved_state(&self) -> crate::persist::Saved {
        let now_ms = self.now().wall_ms;
        let st = self.inner.lock();
        let month = crate::policy::cost::Month::containing(now_ms).start_ms;
        let totals = st.live.counters.totals();
        let answers = st
            .config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let n = if st.live.month_base.0 == month {
                    let base = st.live.month_base.1.get(i).copied().unwrap_or(0);
                    totals.get(i).copied().unwrap_or(0).saturating_sub(base)
                } else {
                    // The month turned since the last compile: nothing answered in it yet.
                    0
                };
                (t.name.clone(), n)
            })
            .collect();
        crate::persist::Saved {
            format: crate::persist::FORMAT,
            saved_at_ms: now_ms,
            month_start_ms: month,
            answers,
            usage: st.live.usage.clone(),
            cache: st.live.cache_reports.clone(),
            cache_regions: st.live.cache_regions.clone(),
        }
    }

    /// Take back what an earlier run saved: billing reports and cache metrics of targets that
    /// still exist, and their answer counts when they are of this month. Applied at once (one
    /// compile). What was taken, in words.
    pub fn restore_state(&self, saved: crate::persist::Saved) -> String {
        let now = self.now();
        let now_ms = now.wall_ms;
        let mut st = self.inner.lock();
        let month = crate::policy::cost::Month::containing(now_ms).start_ms;
        if st.live.month_base.0 != month {
            st.live.month_base = (month, st.live.counters.totals());
        }
        let names: Vec<String> = st.config.targets.iter().map(|t| t.name.clone()).collect();
        let mut answers = 0;
        if saved.month_start_ms == month {
            for (i, name) in names.iter().enumerate() {
                if let Some(&n) = saved.answers.get(name)
                    && n > 0
                {
                    st.live.counters.add(i, n);
                    answers += 1;
                }
            }
        }
        let mut usage = 0;
        for (name, u) in saved.usage {
            if names.contains(&name) {
                st.live.usage.insert(name, u);
                usage += 1;
            }
        }
        let mut cache = 0;
        // Their age goes on from when they were received.
        let received = |mut c: CacheReport| {
            c.received_ms = now.mono_of(c.at_ms);
            c
        };
        for (name, c) in saved.cache {
            if names.contains(&name) {
                st.live.cache_reports.insert(name, received(c));
                cache += 1;
            }
        }
        for (name, regions) in saved.cache_regions {
            if names.contains(&name) {
                cache += regions.len();
                let kept = regions.into_iter().map(|(r, c)| (r, received(c))).collect();
                st.live.cache_regions.insert(name, kept);
            }
        }
        self.compile_locked(&mut st, now, false);
        format!(
            "this month's answers of {answers} target(s), {usage} usage report(s), {cache} cache report(s)"
        )
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

    fn build_inputs(
        &self,
        cfg: &ValidConfig,
        live: &mut Live,
        now: Now,
        step: bool,
    ) -> PolicyInputs {
        // Calendar months, cost projections, override expiry and event times: the wall clock;
        // health windows and machines: health time.
        let (wall_ms, now_ms) = (now.wall_ms, now.mono_ms);
        let mut store = self.health.lock();
        let mut targets = Vec::with_capacity(cfg.targets.len());
        // Answers this month, per target.
        let totals = live.counters.totals();
        let month = crate::policy::cost::Month::containing(wall_ms).start_ms;
        if live.month_base.0 != month || live.month_base.1.len() != totals.len() {
            live.month_base = (month, totals.clone());
        }
        let this_month: Vec<u64> = totals
            .iter()
            .zip(&live.month_base.1)
            .map(|(t, b)| t.saturating_sub(*b))
            .collect();
        let mut rum = self.rum.lock();
        // RUM windows per region, keyed `target|region`: grouped by target once per compile.
        let region_keys = rum.regions_by_target();
        let mut pending: Vec<Transition> = Vec::new();
        let mut cost_events: Vec<Event> = Vec::new();
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
            if step {
                let was = live.over_cap.contains(&t.name);
                if cost.over_cap && !was {
                    live.over_cap.insert(t.name.clone());
                    cost_events.push(event(
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
                    ));
                } else if !cost.over_cap && was {
                    live.over_cap.remove(&t.name);
                    cost_events.push(event(
                        EventKind::CostCapCleared,
                        Severity::Info,
                        "target",
                        &t.name,
                        format!(
                            "{}: projected month-end spend ${:.2} is under the cap again",
                            t.name, cost.projected
                        ),
                        wall_ms,
                    ));
                }
                live.costs.insert(t.name.clone(), cost.clone());
            }
            // Real-user measurements: complaints feed the RUM rule, latency per region the
            // latency policy.
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
            // The cache score's inputs (seed: over the last 5 minutes): fresh reports, the
            // prober's measured hit ratio.
            let probe_hit = store
                .target(&t.name)
                .map(|th| th.stats(Level::Cache, now_ms, Win::M5))
                .filter(|s| s.cache_lookups >= MIN_PROBE_CACHE_LOOKUPS)
                .and_then(|s| s.cache_hit_ratio);
            let overall = live.cache_reports.get(&t.name).filter(|r| r.fresh(now_ms));
            let cache = cache_inputs(overall.as_slice(), probe_hit);
            let cache_by_region: Vec<(String, CacheInputs)> = live
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
            if t.check.is_none() && store.target(&t.name).is_none() {
                let mut input = TargetInput::unknown();
                input.cost = cost;
                input.cache = cache;
                input.cache_by_region = cache_by_region;
                input.latency_by_region = latency_by_region;
                let mut signals = Signals::empty();
                let has_rum = rum_stats.is_some();
                signals.rum = rum_stats;
                // An operator override (or RUM) still applies to a target nobody probes.
                if has_rum && !live.machines.contains_key(t.name.as_str()) {
                    let name: Arc<str> = Arc::from(t.name.as_str());
                    live.machines
                        .insert(name.clone(), TargetMachine::new(name, now_ms));
                }
                if let Some(m) = live.machines.get_mut(t.name.as_str()) {
                    if step {
                        pending.extend(m.step(&signals, &cfg.health, now));
                    }
                    input.state = m.effective();
                    input.unstable = m.unstable(now_ms);
                    input.reason = m.reason().to_string();
                }
                targets.push(input);
                continue;
            }
            let name: Arc<str> = Arc::from(t.name.as_str());
            let machine = live
                .machines
                .entry(name.clone())
                .or_insert_with(|| TargetMachine::new(name.clone(), now_ms));
            let confirmed = live.confirmed.get(&name).copied();
            let th = store.target(&t.name);
            let (mut signals, latency) = match th {
                Some(th) => {
                    let lat = th.stats(Level::Check, now_ms, Win::M5).p95;
                    let judged = machine.judged_until();
                    (Signals::from_target(th, now_ms, confirmed, judged), lat)
                }
                None => (Signals::empty(), None),
            };
            signals.rum = rum_stats;
            if step {
                pending.extend(machine.step(&signals, &cfg.health, now));
            }
            let mut input = TargetInput::unknown();
            input.state = machine.effective();
            input.unstable = machine.unstable(now_ms);
            input.reason = machine.reason().to_string();
            input.latency = latency;
            input.latency_by_region = latency_by_region;
            input.cache = cache;
            input.cache_by_region = cache_by_region;
            input.cost = cost;
            targets.push(input);
        }
        drop(rum);
        drop(store);
        for tr in pending {
            record_transition(live, &self.metrics, &self.alerter, tr, now);
        }
        for ev in cost_events {
            emit(live, &self.metrics, &self.alerter, ev);
        }
        if step {
            let (keep, ended): (Vec<_>, Vec<_>) = std::mem::take(&mut live.region_overrides)
                .into_iter()
                .partition(|o| o.until_ms.is_none_or(|u| u > wall_ms));
            live.region_overrides = keep;
            for o in ended {
                let region = o.region.as_ref().map(|r| r.1.as_str()).unwrap_or("");
                let ev = event(
                    EventKind::Override,
                    Severity::Info,
                    "target",
                    &o.target,
                    format!("{}: override for clients in {region} expired", o.target),
                    wall_ms,
                );
                emit(live, &self.metrics, &self.alerter, ev);
            }
        }
        let region_overrides = live
            .region_overrides
            .iter()
            .filter(|o| o.until_ms.is_none_or(|u| u > wall_ms))
            .filter_map(|o| {
                let target = cfg.targets.iter().position(|t| t.name == o.target)?;
                let (key, label) = o.region.clone()?;
                let mut reason = format!("{} by operator for clients in {label}", o.kind);
                if !o.reason.is_empty() {
                    reason += &format!(": {}", o.reason);
                }
                Some(crate::policy::RegionOverride {
                    target,
                    region: key,
                    state: EffectiveStatus::from(o.kind),
                    reason,
                })
            })
            .collect();
        PolicyInputs {
            now_ms: wall_ms,
            targets,
            region_overrides,
        }
    }

    fn compile_locked(&self, st: &mut Inner, now: Now, force: bool) -> Option<Arc<RoutingTable>> {
        let st = &mut *st;
        // Forget targets that left the configuration.
        st.live
            .machines
            .retain(|k, _| st.config.targets.iter().any(|t| *t.name == **k));
        let inputs = self.build_inputs(&st.config, &mut st.live, now, true);
        let started = std::time::Instant::now();
        let (mut table, memory) =
            policy::compile_with(&st.config, &st.geo, &inputs, &st.live.memory);
        self.metrics
            .compile_duration
            .observe(started.elapsed().as_secs_f64());
        st.live.memory = memory;
        table.counters = st.live.counters.clone();
        let current = self.table.load();
        for svc in table
            .all_down
            .iter()
            .filter(|s| !current.all_down.contains(s))
        {
            warn!(service = %svc, "every candidate is down: answering per all_down (fail-open: the least bad; fail-closed: SERVFAIL or the fallback)");
            let ev = event(
                EventKind::AllDown,
                Severity::Critical,
                "service",
                svc,
                format!("{svc}: every candidate is down for some clients (answering per all_down)"),
                now.wall_ms,
            );
            emit(&mut st.live, &self.metrics, &self.alerter, ev);
        }
        for svc in current
            .all_down
            .iter()
            .filter(|s| !table.all_down.contains(s))
        {
            info!(service = %svc, "candidates are up again");
            let ev = event(
                EventKind::AllDownRecovered,
                Severity::Info,
                "service",
                svc,
                format!("{svc}: a candidate is up again for every client"),
                now.wall_ms,
            );
            emit(&mut st.live, &self.metrics, &self.alerter, ev);
        }
        if !force && table.fingerprint == current.fingerprint && table.all_down == current.all_down
        {
            return None;
        }
        let table = Arc::new(table);
        self.table.store(table.clone());
        self.metrics.table_swaps.inc();
        if !force {
            info!(
                generation = table.generation,
                "the answers changed (health, overrides or reported inputs): new routing table"
            );
        }
        Some(table)
    }

    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The configuration in force.
    pub fn config(&self) -> ValidConfig {
        self.inner.lock().config.clone()
    }

    /// The geo data in force.
    pub fn geo(&self) -> Arc<GeoData> {
        self.inner.lock().geo.clone()
    }

    /// Apply a new configuration: reload the geo data if its settings changed, compile, swap.
    /// On error nothing changes.
    pub fn apply(&self, config: ValidConfig) -> Result<Arc<RoutingTable>, String> {
        // One apply or geo reload at a time; the geo files are read without the state lock,
        // so ticks, pushed inputs and views go on meanwhile.
        let _one = self.applying.lock();
        let reload = {
            let st = self.inner.lock();
            config.geo != st.config.geo || *config.countries != *st.config.countries
        };
        let loaded = if reload {
            let stamps = stamps(&config);
            Some((Arc::new(load_geo(&config)?), stamps))
        } else {
            None
        };
        let mut st = self.inner.lock();
        let geo = match loaded {
            Some((g, (db, nets))) => {
                st.db_stamp = db;
                st.nets_stamp = nets;
                g
            }
            None => st.geo.clone(),
        };
        let old = (
            std::mem::replace(&mut st.config, config),
            std::mem::replace(&mut st.geo, geo),
        );
        let now = self.now();
        {
            let st = &mut *st;
            // Answer counters are indexed like the targets: when the list changes, carry each
            // target's counts (and this month's base) over by name.
            let old_names: Vec<&str> = old.0.targets.iter().map(|t| t.name.as_str()).collect();
            let new_names: Vec<&str> = st.config.targets.iter().map(|t| t.name.as_str()).collect();
            if old_names != new_names {
                let totals = st.live.counters.totals();
                let counters = st.live.counters.carrying(new_names.len());
                let mut base = vec![0; new_names.len()];
                for (j, n) in new_names.iter().enumerate() {
                    if let Some(i) = old_names.iter().position(|o| o == n) {
                        counters.add(j, totals.get(i).copied().unwrap_or(0));
                        base[j] = st.live.month_base.1.get(i).copied().unwrap_or(0);
                    }
                }
                st.live.counters = Arc::new(counters);
                st.live.month_base.1 = base;
            }
            let names: Vec<&str> = st.config.targets.iter().map(|t| t.name.as_str()).collect();
            st.live.usage.retain(|k, _| names.contains(&k.as_str()));
            st.live
                .cache_reports
                .retain(|k, _| names.contains(&k.as_str()));
            st.live.over_cap.retain(|k| names.contains(&k.as_str()));
            st.live.cert_warn.retain(|k, _| names.contains(&k.as_str()));
            st.live.costs.retain(|k, _| names.contains(&k.as_str()));
        }
        self.sync_overrides(&mut st, now);
        let table = self
            .compile_locked(&mut st, now, true)
            .expect("a forced compile always swaps");
        Ok(table)
    }

    /// Reload the database and nets file if they changed on disk since the last load. A file
    /// that fails to load is logged and the data in force keeps serving. Returns the new
    /// table when one was swapped in.
    pub fn reload_geo_if_changed(&self) -> Option<Arc<RoutingTable>> {
        let _one = self.applying.lock();
        let config = {
            let mut st = self.inner.lock();
            let (db, nets) = stamps(&st.config);
            if db == st.db_stamp && nets == st.nets_stamp {
                return None;
            }
            st.db_stamp = db;
            st.nets_stamp = nets;
            st.config.clone()
        };
        match load_geo(&config) {
            Ok(geo) => {
                let mut st = self.inner.lock();
                st.geo = Arc::new(geo);
                let now = self.now();
                let table = self
                    .compile_locked(&mut st, now, true)
                    .expect("a forced compile always swaps");
                info!(
                    generation = table.generation,
                    "geo data changed on disk: new routing table"
                );
                Some(table)
            }
            Err(e) => {
                error!("geo data rejected, keeping the data in force: {e}");
                None
            }
        }
    }

    /// Poll the geo files every `reload_interval` (read from the config in force) until the
    /// returned handle is aborted.
    pub fn spawn_geo_watcher(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let every = me.inner.lock().config.geo.reload_interval;
                tokio::time::sleep(if every.is_zero() {
                    Duration::from_secs(5)
                } else {
                    every
                })
                .await;
                if every.is_zero() {
                    continue;
                }
                let c = me.clone();
                let _ = tokio::task::spawn_blocking(move || c.reload_geo_if_changed()).await;
            }
        })
    }
}
