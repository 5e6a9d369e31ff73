//! The control plane's state: the configuration and geo data in force, and the one place that
//! compiles a new routing table and swaps it in. A background task watches the GeoIP database
//! and the nets file and reloads them when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::config::{self, ValidConfig, schema::NetsFile};
use crate::geo::GeoData;
use crate::health::state::{Signals, TargetMachine, Transition};
use crate::health::window::{HealthStore, Win};
use crate::health::{Level, Observation};
use crate::policy;
use crate::policy::PolicyInputs;
use crate::policy::chain::TargetInput;
use crate::table::{RoutingTable, TableHandle};

/// What identifies a version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

/// Load the geo data a configuration names: database, country table, config nets plus the
/// nets file. The shipped default database may be missing (a binary run outside the
/// repository): then steerd runs without one, with a warning; any other problem is an error.
pub fn load_geo(cfg: &ValidConfig) -> Result<GeoData, String> {
    let mut nets = cfg.geo.nets.clone();
    if let Some(path) = &cfg.geo.nets_file {
        nets.extend(load_nets_file(path, cfg)?);
    }
    let default_db = PathBuf::from(config::schema::GeoConfig::default().database);
    let database = match &cfg.geo.database {
        Some(p) if *p == default_db && !p.exists() => {
            warn!(path = %p.display(), "the shipped GeoIP database is not there: running without one (every client is in the default region)");
            None
        }
        other => other.as_deref(),
    };
    let started = std::time::Instant::now();
    let geo = GeoData::load(database, cfg.countries.clone(), nets)?;
    if let Some(db) = &geo.db {
        info!(
            path = %db.path.display(),
            database_type = %db.database_type,
            ranges = db.ranges(),
            locations = db.locations.len() - 1,
            ms = started.elapsed().as_millis() as u64,
            "GeoIP database loaded"
        );
    }
    Ok(geo)
}

fn load_nets_file(path: &Path, cfg: &ValidConfig) -> Result<Vec<config::NetOverride>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read nets file: {e}", path.display()))?;
    let file: NetsFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .map_or(String::new(), |l| format!(":{l}"));
        format!("{}{line}: {}", path.display(), e.message().trim())
    })?;
    config::validate_nets(&file.nets, "nets", &cfg.countries).map_err(|issues| {
        issues
            .iter()
            .map(|i| format!("{}: {}: {}", path.display(), i.field, i.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Health state of the targets, kept across compiles.
pub struct Live {
    pub machines: std::collections::BTreeMap<Arc<str>, TargetMachine>,
    /// Latest failure confirmed by the prober's burst, per target.
    pub confirmed: rustc_hash::FxHashMap<Arc<str>, u64>,
    /// Latency incumbents of the last compile.
    pub memory: policy::chain::Memory,
    /// Transitions, newest last (bounded).
    pub events: std::collections::VecDeque<Transition>,
    /// Answers per target (shared with every table of the configuration in force).
    pub counters: Arc<crate::table::AnswerCounters>,
    /// Answer totals at the start of the current month, and which month that is.
    pub month_base: (u64, Vec<u64>),
}

impl Live {
    fn new(targets: usize) -> Self {
        Self {
            machines: Default::default(),
            confirmed: Default::default(),
            memory: Default::default(),
            events: Default::default(),
            counters: Arc::new(crate::table::AnswerCounters::new(targets)),
            month_base: (0, vec![0; targets]),
        }
    }
}

/// Events kept in memory.
const MAX_EVENTS: usize = 10_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct State {
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
    state: Arc<Mutex<State>>,
    health: Arc<Mutex<HealthStore>>,
}

fn stamps(cfg: &ValidConfig) -> (Option<FileStamp>, Option<FileStamp>) {
    (
        cfg.geo.database.as_deref().and_then(stamp),
        cfg.geo.nets_file.as_deref().and_then(stamp),
    )
}

impl Control {
    /// Load geo data for `config` and compile the first table into a new handle.
    pub fn new(config: ValidConfig) -> Result<Self, String> {
        let (db_stamp, nets_stamp) = stamps(&config);
        let geo = Arc::new(load_geo(&config)?);
        let live = Live::new(config.targets.len());
        let mut first = policy::compile(&config, &geo);
        first.counters = live.counters.clone();
        let table = crate::table::handle(first);
        Ok(Self {
            table,
            state: Arc::new(Mutex::new(State {
                live,
                config,
                geo,
                db_stamp,
                nets_stamp,
            })),
            health: Arc::new(Mutex::new(HealthStore::new(Default::default()))),
        })
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
        {
            let mut store = self.health.lock().unwrap();
            for o in observations {
                store.record(o);
            }
        }
        match confirmed_down {
            Some((t, at)) => {
                self.state
                    .lock()
                    .unwrap()
                    .live
                    .confirmed
                    .insert(t.clone(), at);
                true
            }
            None => false,
        }
    }

    /// Step every target's health state machine to `now_ms`, compile with the result and
    /// swap the new table in when its answers differ from the table in force. Returns the
    /// new table when one was swapped in.
    pub fn tick(&self, now_ms: u64) -> Option<Arc<RoutingTable>> {
        let mut st = self.state.lock().unwrap();
        self.compile_locked(&mut st, now_ms, false)
    }

    /// The policy inputs as of `now_ms` (health states, latencies), without stepping.
    pub fn inputs(&self, now_ms: u64) -> PolicyInputs {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        self.build_inputs(&st.config, &mut st.live, now_ms, false)
    }

    /// The latency incumbents of the last compile.
    pub fn memory(&self) -> policy::chain::Memory {
        self.state.lock().unwrap().live.memory.clone()
    }

    /// Force a target up, down or drained (None clears it); takes effect in the returned table.
    pub fn set_override(
        &self,
        target: &str,
        o: Option<crate::health::state::Override>,
        now_ms: u64,
    ) -> Result<Option<Arc<RoutingTable>>, String> {
        let mut st = self.state.lock().unwrap();
        if !st.config.targets.iter().any(|t| t.name == target) {
            return Err(format!("no target named \"{target}\""));
        }
        let name: Arc<str> = Arc::from(target);
        let machine = st
            .live
            .machines
            .entry(name.clone())
            .or_insert_with(|| TargetMachine::new(name, now_ms));
        let transitions = machine.set_override(o, now_ms);
        for tr in transitions {
            warn!(target_name = %tr.target, from = tr.from.as_str(), to = tr.to.as_str(), "health: {}", tr.reason);
            st.live.events.push_back(tr);
        }
        Ok(self.compile_locked(&mut st, now_ms, false))
    }

    /// Health transitions so far, oldest first.
    pub fn events(&self) -> Vec<Transition> {
        self.state
            .lock()
            .unwrap()
            .live
            .events
            .iter()
            .cloned()
            .collect()
    }

    fn build_inputs(
        &self,
        cfg: &ValidConfig,
        live: &mut Live,
        now_ms: u64,
        step: bool,
    ) -> PolicyInputs {
        let mut store = self.health.lock().unwrap();
        let mut targets = Vec::with_capacity(cfg.targets.len());
        // Answers this month, per target.
        let totals = live.counters.totals();
        let month = crate::policy::cost::Month::containing(now_ms).start_ms;
        if live.month_base.0 != month || live.month_base.1.len() != totals.len() {
            live.month_base = (month, totals.clone());
        }
        let this_month: Vec<u64> = totals
            .iter()
            .zip(&live.month_base.1)
            .map(|(t, b)| t.saturating_sub(*b))
            .collect();
        for (ti, t) in cfg.targets.iter().enumerate() {
            let cost = match &t.cost {
                Some(model) => model.status(
                    &crate::policy::cost::CostInputs {
                        reported: None,
                        answers: vec![("default".into(), this_month[ti])],
                    },
                    now_ms,
                ),
                None => crate::policy::cost::CostStatus::unmetered(),
            };
            if t.check.is_none() {
                let mut input = TargetInput::unknown();
                input.cost = cost;
                // An operator override still applies to a target nobody probes.
                if let Some(m) = live.machines.get_mut(t.name.as_str()) {
                    if step {
                        for tr in m.step(&Signals::empty(), &cfg.health, now_ms) {
                            warn!(target_name = %tr.target, from = tr.from.as_str(), to = tr.to.as_str(), "health: {}", tr.reason);
                            live.events.push_back(tr);
                        }
                    }
                    input.state = m.effective();
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
            let (signals, latency) = match th {
                Some(th) => {
                    let lat = th.stats(Level::Check, now_ms, Win::M5).p95;
                    (Signals::from_target(th, now_ms, confirmed), lat)
                }
                None => (Signals::empty(), None),
            };
            if step {
                for tr in machine.step(&signals, &cfg.health, now_ms) {
                    warn!(target_name = %tr.target, from = tr.from.as_str(), to = tr.to.as_str(), "health: {}", tr.reason);
                    live.events.push_back(tr);
                    if live.events.len() > MAX_EVENTS {
                        live.events.pop_front();
                    }
                }
            }
            let mut input = TargetInput::unknown();
            input.state = machine.effective();
            input.unstable = machine.unstable(now_ms);
            input.reason = machine.reason().to_string();
            input.latency = latency;
            input.cost = cost;
            targets.push(input);
        }
        PolicyInputs {
            now_ms,
            targets,
            region_overrides: Vec::new(),
        }
    }

    fn compile_locked(
        &self,
        st: &mut State,
        now_ms: u64,
        force: bool,
    ) -> Option<Arc<RoutingTable>> {
        let st = &mut *st;
        // Forget targets that left the configuration.
        st.live
            .machines
            .retain(|k, _| st.config.targets.iter().any(|t| *t.name == **k));
        let inputs = self.build_inputs(&st.config, &mut st.live, now_ms, true);
        let (mut table, memory) =
            policy::compile_with(&st.config, &st.geo, &inputs, &st.live.memory);
        st.live.memory = memory;
        table.counters = st.live.counters.clone();
        let current = self.table.load();
        for svc in table
            .all_down
            .iter()
            .filter(|s| !current.all_down.contains(s))
        {
            warn!(service = %svc, "every candidate is down: answering per all_down (fail-open: the least bad; fail-closed: SERVFAIL or the fallback)");
        }
        for svc in current
            .all_down
            .iter()
            .filter(|s| !table.all_down.contains(s))
        {
            info!(service = %svc, "candidates are up again");
        }
        if !force && table.fingerprint == current.fingerprint {
            return None;
        }
        let table = Arc::new(table);
        self.table.store(table.clone());
        if !force {
            info!(
                generation = table.generation,
                "health changed the answers: new routing table"
            );
        }
        Some(table)
    }

    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The configuration in force.
    pub fn config(&self) -> ValidConfig {
        self.state.lock().unwrap().config.clone()
    }

    /// The geo data in force.
    pub fn geo(&self) -> Arc<GeoData> {
        self.state.lock().unwrap().geo.clone()
    }

    /// Apply a new configuration: reload the geo data if its settings changed, compile, swap.
    /// On error nothing changes.
    pub fn apply(&self, config: ValidConfig) -> Result<Arc<RoutingTable>, String> {
        let mut st = self.state.lock().unwrap();
        let geo = if config.geo != st.config.geo || *config.countries != *st.config.countries {
            let (db, nets) = stamps(&config);
            let g = Arc::new(load_geo(&config)?);
            st.db_stamp = db;
            st.nets_stamp = nets;
            g
        } else {
            st.geo.clone()
        };
        let old = (
            std::mem::replace(&mut st.config, config),
            std::mem::replace(&mut st.geo, geo),
        );
        let _ = old;
        let table = self
            .compile_locked(&mut st, now_ms(), true)
            .expect("a forced compile always swaps");
        Ok(table)
    }

    /// Reload the database and nets file if they changed on disk since the last load. A file
    /// that fails to load is logged and the data in force keeps serving. Returns the new
    /// table when one was swapped in.
    pub fn reload_geo_if_changed(&self) -> Option<Arc<RoutingTable>> {
        let mut st = self.state.lock().unwrap();
        let (db, nets) = stamps(&st.config);
        if db == st.db_stamp && nets == st.nets_stamp {
            return None;
        }
        st.db_stamp = db;
        st.nets_stamp = nets;
        match load_geo(&st.config) {
            Ok(geo) => {
                st.geo = Arc::new(geo);
                let table = self
                    .compile_locked(&mut st, now_ms(), true)
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
                let every = me.state.lock().unwrap().config.geo.reload_interval;
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
