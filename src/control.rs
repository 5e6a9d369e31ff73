//! The control plane's state: the configuration and geo data in force, and the one place that
//! compiles a new routing table and swaps it in. A background task watches the GeoIP database
//! and the nets file and reloads them when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::config::{self, ValidConfig, schema::NetsFile};
use crate::geo::GeoData;
use crate::policy;
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

struct State {
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
        let table = crate::table::handle(policy::compile(&config, &geo));
        Ok(Self {
            table,
            state: Arc::new(Mutex::new(State {
                config,
                geo,
                db_stamp,
                nets_stamp,
            })),
        })
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
        let table = Arc::new(policy::compile(&config, &geo));
        self.table.store(table.clone());
        st.config = config;
        st.geo = geo;
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
                let geo = Arc::new(geo);
                let table = Arc::new(policy::compile(&st.config, &geo));
                self.table.store(table.clone());
                st.geo = geo;
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
