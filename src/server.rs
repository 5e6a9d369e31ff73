//! A running steerd: the routing table handle, the DNS listeners, and config application.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use tracing::{error, info, warn};

use crate::admin::store::{ConfigSource, ConfigStore};
use crate::admin::{AdminServer, Api, MetricsSource};
use crate::alert::Alerter;
use crate::config::ValidConfig;
use crate::control::Control;
use crate::dns::listener::DnsListeners;
use crate::health::window::HealthStore;
use crate::probe::{ProbePlan, ProbeReport, Prober};
use crate::table::{RoutingTable, TableHandle};

/// A running server.
pub struct Server {
    control: Control,
    listeners: DnsListeners,
    watcher: tokio::task::JoinHandle<()>,
    applier: Applier,
    consumer: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    store: Arc<ConfigStore>,
    admin: Option<AdminServer>,
    /// Saves this month's answers and the reported inputs across restarts (None: not kept).
    state: Option<Arc<crate::control::Saver>>,
    saver: Option<tokio::task::JoinHandle<()>>,
}

/// Applies a configuration to every running part: control plane (compile + swap), prober,
/// alert sinks.
#[derive(Clone)]
struct Applier {
    control: Control,
    prober: Arc<Mutex<Option<Prober>>>,
    alerter: Alerter,
    /// The admin API's tokens (from the configuration in force).
    tokens: crate::admin::Tokens,
    /// The DNS path's rate limiter and cookies.
    guard: Arc<crate::dns::guard::GuardHandle>,
    /// The purger, started by the first configuration with a `[targets.purge]`.
    purger: crate::purge::PurgerSlot,
    rt: tokio::runtime::Handle,
    /// The canary watcher, started by the first configuration with `[[purge.canaries]]`.
    freshness: Arc<Mutex<Option<Arc<crate::freshness::Freshness>>>>,
}

impl Applier {
    /// Gives the purger the configuration, starting it when the first purge target appears.
    fn apply_purger(&self, cfg: &ValidConfig) {
        let _rt = self.rt.enter();
        let mut slot = self.purger.lock();
        if let Some(p) = slot.as_ref() {
            p.apply(cfg);
            return;
        }
        if !cfg.targets.iter().any(|t| t.purge.is_some()) {
            return;
        }
        let control = self.control.clone();
        let sink: crate::purge::EventSink = Arc::new(move |ev| control.record_event(ev));
        match crate::purge::Purger::start(cfg, sink) {
            Ok(p) => {
                info!(store = %cfg.purge.store.display(), "purger started");
                self.control.set_recent_purges(p.recent_purges());
                *slot = Some(p);
            }
            Err(e) => warn!("purges are not accepted: {e}"),
        }
    }

    /// Gives the canary watcher the configuration (starting it with the first canary) and the
    /// purger whose confirmations it verifies.
    fn apply_freshness(&self, cfg: &ValidConfig) {
        let _rt = self.rt.enter();
        let mut slot = self.freshness.lock();
        if slot.is_none() && !cfg.purge.freshness.canaries.is_empty() {
            let (c1, c2) = (self.control.clone(), self.control.clone());
            let hooks = crate::freshness::Hooks {
                events: Arc::new(move |ev| c1.record_event(ev)),
                set_stale: Arc::new(move |t: &str, s| {
                    if let Err(e) = c2.set_stale(t, s) {
                        warn!("stale input of {t}: {e}");
                    }
                }),
            };
            let f = Arc::new(crate::freshness::Freshness::start(cfg, hooks));
            // The origin's `Surrogate-Key`/`Cache-Tag` of each canary fill the key registry
            // (one store commit: off the runtime's threads).
            let purger = self.purger.clone();
            f.set_on_origin_headers(Some(Arc::new(
                move |url: &str, headers: &http::HeaderMap, now: u64| {
                    let Some(p) = purger.lock().clone() else {
                        return;
                    };
                    let (url, headers) = (url.to_string(), headers.clone());
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = p.learn_keys(&url, &headers, now) {
                            warn!("surrogate keys of {url} not learned: {e}");
                        }
                    });
                },
            )));
            *slot = Some(f);
        } else if let Some(f) = slot.as_ref() {
            f.apply(cfg);
        }
        if let (Some(f), Some(p)) = (slot.as_ref(), self.purger.lock().as_ref()) {
            f.set_purger(p);
        }
    }

    fn apply(&self, config: ValidConfig) -> Result<Arc<RoutingTable>, String> {
        let current = self.control.config();
        let (old, new) = (&current.server, &config.server);
        if old.dns_listen != new.dns_listen
            || old.udp_sockets != new.udp_sockets
            || old.udp_engine != new.udp_engine
            || old.tcp_idle_timeout != new.tcp_idle_timeout
            || old.tcp != new.tcp
            || old.fd_reserve != new.fd_reserve
            || old.admin_listen != new.admin_listen
            || current.admin.conns != config.admin.conns
        {
            warn!(
                "listener settings in [server] changed: they take effect after a restart \
                 (the rest of the configuration is applied now)"
            );
        }
        if old.state_file != new.state_file {
            warn!(
                "server.state_file changed: the state is kept where it was until a restart \
                 (the rest of the configuration is applied now)"
            );
        }
        let summary = config.summary();
        let plan = ProbePlan::from_config(&config);
        let alerts = config.alerts.clone();
        let tokens = config.admin.tokens.clone();
        let server_settings = config.server.clone();
        let compiled = self.control.apply(config)?;
        self.tokens.store(Arc::new(tokens));
        self.guard.apply(&server_settings);
        {
            // Forget the health data of targets that left the configuration (remote agents'
            // observations of targets this node does not probe are kept).
            let keep: Vec<String> = self
                .control
                .config()
                .targets
                .iter()
                .map(|t| t.name.clone())
                .collect();
            self.control
                .health()
                .lock()
                .retain_targets(|t| keep.iter().any(|k| k == t));
        }
        if let Some(p) = self.prober.lock().as_ref() {
            p.apply(plan);
        }
        self.alerter.apply(&alerts);
        self.apply_purger(&self.control.config());
        self.apply_freshness(&self.control.config());
        info!(
            generation = compiled.generation,
            "applied configuration: {summary}"
        );
        Ok(compiled)
    }
}

/// Records every probe report in the health windows (at the health time the run started); a
/// confirmed failure recompiles at once.
async fn consume_reports(mut rx: tokio::sync::mpsc::Receiver<ProbeReport>, control: Control) {
    let mut down: rustc_hash::FxHashSet<Arc<str>> = Default::default();
    while let Some(report) = rx.recv().await {
        let at = control.now().mono_of_instant(report.run.started);
        let mut observations = report.run.observations(&report.vantage);
        for o in &mut observations {
            o.at_ms = at;
        }
        let target = report.run.target.clone();
        let confirmed = report.confirmed_down.then(|| (target.clone(), at));
        let c = control.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            let now_down = c.record(&observations, confirmed.as_ref().map(|(t, at)| (t, *at)));
            if now_down {
                c.tick();
            }
            now_down
        })
        .await;
        match recorded {
            Ok(true) => {
                down.insert(target.clone());
            }
            Ok(false) => {
                if report.run.ok() && down.remove(&target) {
                    info!(target_name = %target, "check passes again: {}", report.run.summary());
                }
            }
            Err(e) => control_task_failed(&control, "record", e),
        }
    }
}

/// A control-plane task that panicked: logged and counted; the caller goes on with the next
/// run (the DNS path keeps answering from the table in force).
fn control_task_failed(control: &Control, task: &str, e: tokio::task::JoinError) {
    if e.is_panic() {
        control
            .metrics()
            .task_panics
            .with_label_values(&[task])
            .inc();
        let what = e
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|_| "(no message)".into());
        error!(task, "control-plane task panicked: {what}; carrying on");
    }
}

/// The metric families besides the control plane's: the DNS path's and the alert sinks'.
fn metrics_sources(control: &Control, alerter: &Alerter) -> Vec<MetricsSource> {
    use prometheus::core::Collector;
    let a = alerter.clone();
    let dns = crate::dns::stats::collector(control.table().clone());
    vec![
        Arc::new(move || a.collect()),
        Arc::new(move || dns.collect()),
    ]
}

/// Step the health machines and recompile every second (swapping only on change).
async fn tick_loop(control: Control) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let c = control.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || c.tick()).await {
            control_task_failed(&control, "tick", e);
        }
    }
}

impl Server {
    /// Compile the first table from `config`, bind every listener and start answering.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: ValidConfig) -> anyhow::Result<Self> {
        Self::start_with_source(config, ConfigSource::none()).await
    }

    /// Like [`Server::start`], with the configuration's text and file: the admin API edits
    /// and persists it, and [`Server::reload`] re-reads the file.
    pub async fn start_with_source(
        config: ValidConfig,
        source: ConfigSource,
    ) -> anyhow::Result<Self> {
        Self::start_with_clock(config, source, crate::clock::SystemClock::shared()).await
    }

    /// Like [`Server::start_with_source`], with the control plane reading the time from
    /// `clock` (a [`crate::clock::ManualClock`] lets a test run minutes of health time at
    /// once; the DNS rate limiter's seconds and cookie times too; the prober's checks still run
    /// on the machine's timers).
    pub async fn start_with_clock(
        config: ValidConfig,
        source: ConfigSource,
        clock: crate::clock::SharedClock,
    ) -> anyhow::Result<Self> {
        let summary = config.summary();
        let admin_listen = config.server.admin_listen;
        let version = config.version;
        let alerts = config.alerts.clone();
        let settings = config.server.clone();
        let state_path =
            crate::persist::path_for(settings.state_file.as_deref(), source.path.as_deref());
        let dns_clock = clock.clone();
        let control = tokio::task::spawn_blocking(move || Control::with_clock(config, clock))
            .await?
            .map_err(anyhow::Error::msg)?;
        // Before the listeners: the first answers already see the month's counts.
        let state = match state_path {
            Some(path) => {
                let c = control.clone();
                tokio::task::spawn_blocking(move || crate::control::Saver::open(path, c))
                    .await?
                    .map(Arc::new)
            }
            None => None,
        };
        info!(generation = control.table().load().generation, "{summary}");
        let conns = crate::conns::Registry::default();
        let (tcp_limits, admin_limits) = {
            let mut dns = settings.tcp;
            let mut admin = control.config().admin.conns;
            let addrs = settings.dns_listen.len();
            let udp = addrs
                * settings
                    .udp_sockets
                    .max(std::thread::available_parallelism().map_or(1, |n| n.get()));
            crate::conns::fit_budget(
                &conns,
                &mut [
                    ("dns", addrs, &mut dns),
                    ("admin", usize::from(admin_listen.is_some()), &mut admin),
                ],
                settings.fd_reserve,
                udp + addrs + 1,
            );
            (dns, admin)
        };
        let listeners = DnsListeners::start_with(
            &settings,
            control.table().clone(),
            tcp_limits,
            &conns,
            dns_clock,
        )?;
        let watcher = control.spawn_geo_watcher();
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let plan = ProbePlan::from_config(&control.config());
        let probed = plan.jobs.len();
        let prober = tokio::task::spawn_blocking(move || Prober::start(plan, tx)).await??;
        let probe_metrics = prober.metrics();
        if probed > 0 {
            info!("probing {probed} target(s)");
        }
        let consumer = tokio::spawn(consume_reports(rx, control.clone()));
        let ticker = tokio::spawn(tick_loop(control.clone()));
        let alerter = Alerter::start(&alerts);
        control.set_alerter(Some(alerter.clone()));
        let tokens: crate::admin::Tokens = Arc::new(arc_swap::ArcSwap::from_pointee(
            control.config().admin.tokens.clone(),
        ));
        let applier = Applier {
            control: control.clone(),
            prober: Arc::new(Mutex::new(Some(prober))),
            alerter: alerter.clone(),
            tokens: tokens.clone(),
            guard: listeners.guard().clone(),
            purger: Arc::default(),
            rt: tokio::runtime::Handle::current(),
            freshness: Arc::default(),
        };
        applier.apply_purger(&control.config());
        applier.apply_freshness(&control.config());
        let store = Arc::new(ConfigStore::new(source, version));
        let admin = match admin_listen {
            Some(addr) => {
                let a = applier.clone();
                let apply: crate::admin::Apply =
                    Arc::new(move |cfg| a.apply(cfg).map(|t| t.generation));
                let mut sources = metrics_sources(&control, &alerter);
                let (c, g) = (conns.clone(), listeners.guard().clone());
                sources.push(Arc::new(move || c.collect()));
                sources.push(Arc::new(move || g.collect()));
                sources.push(Arc::new(move || probe_metrics.gather()));
                let slot = applier.purger.clone();
                sources.push(Arc::new(move || {
                    slot.lock().as_ref().map(|p| p.gather()).unwrap_or_default()
                }));
                let fresh = applier.freshness.clone();
                sources.push(Arc::new(move || {
                    fresh
                        .lock()
                        .as_ref()
                        .map(|f| f.gather())
                        .unwrap_or_default()
                }));
                let api = Api::new(
                    control.clone(),
                    store.clone(),
                    apply,
                    sources,
                    tokens,
                    state.clone(),
                    applier.purger.clone(),
                );
                match AdminServer::start(addr, api, admin_limits, &conns).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        anyhow::bail!("cannot listen on the admin address {addr}: {e}");
                    }
                }
            }
            None => None,
        };
        let saver = state
            .clone()
            .map(|s| tokio::spawn(crate::control::save_loop(s)));
        Ok(Self {
            control,
            listeners,
            watcher,
            applier,
            consumer,
            ticker,
            store,
            admin,
            state,
            saver,
        })
    }

    /// The admin API's address (with the port picked when port 0 was asked for).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The configuration store (text, version) the admin API edits.
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// Re-read the configuration file and apply it (SIGHUP). A bad file is rejected and the
    /// running configuration keeps serving.
    pub fn reload(&self) -> Result<u64, String> {
        let a = self.applier.clone();
        crate::admin::reload_file(&self.store, &self.control, |cfg| {
            a.apply(cfg).map(|t| t.generation)
        })
        .map(|w| w.version)
        .map_err(|e| e.to_string())
    }

    /// The control plane (config, geo data, compile and swap).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Actual UDP addresses (with the port picked when port 0 was asked for).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.listeners.udp_addrs
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.listeners.tcp_addrs
    }

    /// The table handle the DNS path reads from.
    pub fn table(&self) -> &TableHandle {
        self.control.table()
    }

    /// Health windows of every probed target.
    pub fn health(&self) -> &Arc<Mutex<HealthStore>> {
        self.control.health()
    }

    /// Targets whose health checks are running.
    pub fn probing(&self) -> Vec<String> {
        self.applier
            .prober
            .lock()
            .as_ref()
            .map(Prober::running)
            .unwrap_or_default()
    }

    /// The configuration in force.
    pub fn config(&self) -> ValidConfig {
        self.control.config()
    }

    /// Compile `config` and swap the new table in. Listener settings (addresses, socket count,
    /// engine, TCP timeout) cannot change while running; a difference is logged and needs a
    /// restart. Everything else, `max_udp_payload` and the hash prefixes included, applies now.
    pub fn apply(&mut self, config: ValidConfig) -> Result<Arc<RoutingTable>, String> {
        self.applier.apply(config)
    }

    /// Stop listening and wait for in-flight work.
    pub async fn shutdown(mut self) {
        self.watcher.abort();
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        self.applier.alerter.stop();
        let prober = self.applier.prober.lock().take();
        if let Some(p) = prober {
            let _ = tokio::task::spawn_blocking(move || p.stop()).await;
        }
        self.consumer.abort();
        self.ticker.abort();
        if let Some(s) = self.saver.take() {
            s.abort();
            let _ = s.await;
        }
        self.listeners.shutdown().await;
        // After the listeners: the last answers are counted too.
        if let Some(s) = self.state.take() {
            let _ = tokio::task::spawn_blocking(move || s.save()).await;
        }
        info!("DNS listeners stopped");
    }
}
