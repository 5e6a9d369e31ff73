//! The control plane: the configuration and geo data in force, the targets' health between
//! compiles, and the one place that compiles a new routing table and swaps it in. Each concern
//! has its room: the inputs that arrive (`inputs`), overrides (`overrides`), events
//! (`events`), the compile (`compile`), what outlives a restart (`saved`), the geo files
//! (`geo_files`) and the gauges (`gauges`).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{error, info};

use crate::alert::Alerter;
use crate::clock::{Now, SharedClock};
use crate::config::ValidConfig;
use crate::geo::GeoData;
use crate::health::window::HealthStore;
use crate::metrics::Metrics;
use crate::policy;
use crate::table::{RoutingTable, TableHandle};

mod compile;
mod events;
mod gauges;
mod geo_files;
mod inputs;
mod live;
mod overrides;
mod purges;
mod saved;

pub use crate::policy::reports::{
    CACHE_REPORT_MAX_AGE, CacheReport, MIN_PROBE_CACHE_LOOKUPS, cache_inputs,
};
use compile::Swap;
pub use geo_files::*;
pub use inputs::*;
pub use live::Live;
pub use saved::{Saver, save_loop};

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

impl Inner {
    /// Ok when the configuration in force has a target named `target`.
    fn known_target(&self, target: &str) -> Result<(), String> {
        if self.config.targets.iter().any(|t| t.name == target) {
            Ok(())
        } else {
            Err(format!("no target named \"{target}\""))
        }
    }
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
    /// Held by an apply or a geo reload from start to swap (they read files without the lock).
    applying: Arc<Mutex<()>>,
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
                me.compile_locked(&mut st, now, Swap::Always);
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
            .compile_locked(&mut st, now, Swap::Always)
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
                    .compile_locked(&mut st, now, Swap::Always)
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
