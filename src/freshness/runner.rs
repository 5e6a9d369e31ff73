//! The task: every `check_every` (and after each confirmed purge) every canary fetched from the
//! origin and through each of its targets, the versions judged (`core`), the changes reported
//! through the hooks; and the verification of each confirmed purge.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::core::{Change, Observation, Versions, verdict};
use super::metrics::FreshMetrics;
use super::plan::{Plan, Route, Watched, covers};
use crate::clock::wall_ms;
use crate::config::ValidConfig;
use crate::config::purge::Canary;
use crate::events::{Event, EventKind, Severity};
use crate::probe::canary::{CanaryFetch, Via, fetch};
use crate::probe::tls::TlsConfigs;
use crate::purge::model::{CanaryCheck, Verification};
use crate::purge::{Confirmed, EventSink, Purger};

/// Marks a target stale (why, since when: wall ms) or fresh (None); the policy demotes it when
/// `purge.demote_stale` is on.
pub type StaleFn = Arc<dyn Fn(&str, Option<(String, u64)>) + Send + Sync>;
/// The origin's response headers for a canary URL, at a wall time (ms).
pub type OriginHeadersFn = Arc<dyn Fn(&str, &http::HeaderMap, u64) + Send + Sync>;

/// Where the runner reports.
pub struct Hooks {
    pub events: EventSink,
    pub set_stale: StaleFn,
}

struct Inner {
    plan: Mutex<Arc<Plan>>,
    versions: Mutex<Versions>,
    tls: TlsConfigs,
    kick: Notify,
    hooks: Hooks,
    /// Given the origin's headers of every canary fetched (learning surrogate keys).
    on_origin_headers: Mutex<Option<OriginHeadersFn>>,
    purger: Mutex<Option<Arc<Purger>>>,
    /// Per canary URL, the keys the origin last tagged it with (`Surrogate-Key`, `Cache-Tag`).
    origin_keys: Mutex<BTreeMap<String, Vec<String>>>,
    metrics: FreshMetrics,
}

/// The canary watcher of a running server.
pub struct Freshness {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Freshness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Freshness {
    /// Starts the task for the canaries of `cfg`. Call within a tokio runtime.
    pub fn start(cfg: &ValidConfig, hooks: Hooks) -> Freshness {
        let inner = Arc::new(Inner {
            plan: Mutex::new(Arc::new(Plan::from_config(cfg))),
            versions: Mutex::new(Versions::default()),
            tls: TlsConfigs::default(),
            kick: Notify::new(),
            hooks,
            on_origin_headers: Mutex::new(None),
            purger: Mutex::new(None),
            origin_keys: Mutex::new(BTreeMap::new()),
            metrics: FreshMetrics::new(),
        });
        let task = tokio::spawn(run(inner.clone()));
        Freshness { inner, task }
    }

    /// A new configuration: its canaries from the next check, which starts now.
    pub fn apply(&self, cfg: &ValidConfig) {
        let plan = Plan::from_config(cfg);
        *self.inner.plan.lock() = Arc::new(plan.clone());
        let keep: Vec<(String, String)> = plan
            .watched
            .iter()
            .flat_map(|w| {
                w.routes
                    .iter()
                    .map(|r| (w.canary.url.clone(), r.target.clone()))
            })
            .collect();
        self.inner
            .versions
            .lock()
            .retain(|c, t| keep.iter().any(|(kc, kt)| kc == c && kt == t));
        self.inner.kick.notify_one();
    }

    /// The purger whose confirmations are verified (it is told to call back).
    pub fn set_purger(&self, purger: &Arc<Purger>) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        purger.set_on_confirmed(Some(Arc::new(move |c: Confirmed| {
            if let Some(inner) = weak.upgrade() {
                tokio::spawn(verify(inner, c));
            }
        })));
        *self.inner.purger.lock() = Some(purger.clone());
    }

    /// Called with the origin's response headers of every canary fetched.
    pub fn set_on_origin_headers(&self, f: Option<OriginHeadersFn>) {
        *self.inner.on_origin_headers.lock() = f;
    }

    /// Stale targets: why, and since when (wall ms).
    pub fn stale(&self) -> BTreeMap<String, (String, u64)> {
        self.inner.versions.lock().stale().clone()
    }

    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.inner.metrics.gather()
    }
}

async fn run(inner: Arc<Inner>) {
    loop {
        check_all(&inner).await;
        let every = inner.plan.lock().settings.check_every;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = inner.kick.notified() => {}
        }
    }
}

/// What one fetch found (or why it failed).
type Fetched = Result<CanaryFetch, String>;

async fn fetch_origin(inner: &Inner, c: &Canary, timeout: std::time::Duration) -> Fetched {
    let via = match c.origin_address {
        Some(a) => Via::Addr(a),
        None => Via::Host(c.origin.host.clone(), c.origin.port),
    };
    let mut url = c.origin.clone();
    url.path = c.at.path.clone();
    let r = fetch(&inner.tls, &via, &url, &c.version, None, timeout).await;
    if let Ok(f) = &r {
        let now = wall_ms();
        let keys: Vec<String> = ["surrogate-key", "cache-tag"]
            .iter()
            .flat_map(|h| f.headers.get_all(*h).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',']))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        if !keys.is_empty() {
            inner.origin_keys.lock().insert(c.url.clone(), keys);
        }
        // The single place the origin's headers leave the runner: the server's hook hands
        // them to `Purger::learn_keys` (the surrogate-key registry).
        let hook = inner.on_origin_headers.lock().clone();
        if let Some(h) = hook {
            h(&c.url, &f.headers, now);
        }
    }
    r
}

async fn fetch_cdn(inner: &Inner, c: &Canary, r: &Route, timeout: std::time::Duration) -> Fetched {
    fetch(
        &inner.tls,
        &r.via,
        &c.at,
        &c.version,
        r.ca_file.as_deref(),
        timeout,
    )
    .await
}

fn version(f: &Fetched) -> Option<&str> {
    f.as_ref().ok().and_then(|f| f.version.as_deref())
}

/// Every canary from the origin and through every target; the changes reported.
async fn check_all(inner: &Arc<Inner>) {
    let plan = inner.plan.lock().clone();
    let timeout = plan.settings.timeout;
    let mut set = JoinSet::new();
    for (wi, w) in plan.watched.iter().enumerate() {
        let i = inner.clone();
        let c = w.canary.clone();
        set.spawn(async move { (wi, None, fetch_origin(&i, &c, timeout).await) });
        for (ri, r) in w.routes.iter().enumerate() {
            let (i, c, r) = (inner.clone(), w.canary.clone(), r.clone());
            set.spawn(async move { (wi, Some(ri), fetch_cdn(&i, &c, &r, timeout).await) });
        }
    }
    let mut origin: Vec<Option<Fetched>> = vec![None; plan.watched.len()];
    let mut cdns: Vec<Vec<Option<Fetched>>> = plan
        .watched
        .iter()
        .map(|w| vec![None; w.routes.len()])
        .collect();
    while let Some(done) = set.join_next().await {
        let Ok((wi, ri, f)) = done else { continue };
        match ri {
            None => origin[wi] = Some(f),
            Some(ri) => cdns[wi][ri] = Some(f),
        }
    }
    let now = wall_ms();
    {
        let mut v = inner.versions.lock();
        for (wi, w) in plan.watched.iter().enumerate() {
            let o = origin[wi].as_ref();
            if let Some(Err(e)) = o {
                debug!(canary = %w.canary.url, "origin not read: {e}");
            }
            let obs = Observation {
                canary: &w.canary.url,
                path: &w.canary.at.path,
                source: &w.canary.version,
                origin: o.and_then(version),
                cdns: w
                    .routes
                    .iter()
                    .zip(&cdns[wi])
                    .map(|(r, f)| (r.target.as_str(), f.as_ref().and_then(version)))
                    .collect(),
            };
            v.observe(&obs, now);
        }
    }
    report(inner, &plan, now);
}

/// Judge at `now`: events, metrics and the policy input of every change.
fn report(inner: &Inner, plan: &Plan, now: u64) {
    let grace = plan.settings.stale_grace;
    let (changes, behind) = {
        let mut v = inner.versions.lock();
        (
            v.evaluate(now, grace.as_millis() as u64),
            v.behind_seconds(now),
        )
    };
    for (t, s) in behind {
        inner.metrics.behind.with_label_values(&[&t]).set(s);
        inner.metrics.stale.with_label_values(&[&t]).set(0);
    }
    for t in inner.versions.lock().stale().keys() {
        inner.metrics.stale.with_label_values(&[t]).set(1);
    }
    for ch in changes {
        match ch {
            Change::Stale {
                target,
                why,
                since_ms,
            } => {
                let secs = now.saturating_sub(since_ms) / 1000;
                warn!(target = %target, "{why} for {secs}s");
                (inner.hooks.events)(Event::new(
                    EventKind::CdnStale,
                    Severity::Warning,
                    "target",
                    &target,
                    format!(
                        "{target}: {why} for {secs}s (grace {}s){}",
                        grace.as_secs(),
                        if plan.settings.demote_stale {
                            "; ranked behind fresh targets"
                        } else {
                            ""
                        }
                    ),
                    now,
                ));
                (inner.hooks.set_stale)(&target, Some((why, since_ms)));
            }
            Change::Fresh { target } => {
                (inner.hooks.events)(Event::new(
                    EventKind::CdnFresh,
                    Severity::Info,
                    "target",
                    &target,
                    format!("{target}: serves the current version of every canary again"),
                    now,
                ));
                (inner.hooks.set_stale)(&target, None);
            }
        }
    }
}

/// The canaries purge `c` covers on its CDN, fetched through it and from the origin; the
/// verdicts recorded in the purge's progress.
async fn verify(inner: Arc<Inner>, c: Confirmed) {
    let plan = inner.plan.lock().clone();
    if !plan.settings.verify {
        return;
    }
    let purge_host = plan
        .purge_hosts
        .iter()
        .find(|(t, _)| *t == c.target)
        .and_then(|(_, h)| h.clone());
    let keys = inner.origin_keys.lock().clone();
    let chosen: Vec<(&Watched, &Route)> = plan
        .watched
        .iter()
        .filter_map(|w| {
            let r = w.routes.iter().find(|r| r.target == c.target)?;
            let k = keys.get(&w.canary.url).map(Vec::as_slice);
            c.items
                .iter()
                .any(|i| covers(i, &w.canary, purge_host.as_deref(), k))
                .then_some((w, r))
        })
        .collect();
    if chosen.is_empty() {
        return;
    }
    let timeout = plan.settings.timeout;
    let mut checks = Vec::new();
    let now = wall_ms();
    for (w, r) in chosen {
        let (o, f) = tokio::join!(
            fetch_origin(&inner, &w.canary, timeout),
            fetch_cdn(&inner, &w.canary, r, timeout)
        );
        let (ok, detail) = match &f {
            Err(e) => (false, format!("not fetched: {e}")),
            Ok(got) => verdict(
                &w.canary.version,
                got.cache,
                got.version.as_deref(),
                version(&o),
            ),
        };
        let result = if ok { "verified" } else { "unverified" };
        inner
            .metrics
            .verifications
            .with_label_values(&[&c.target, result])
            .inc();
        inner.versions.lock().observe(
            &Observation {
                canary: &w.canary.url,
                path: &w.canary.at.path,
                source: &w.canary.version,
                origin: version(&o),
                cdns: vec![(r.target.as_str(), version(&f))],
            },
            now,
        );
        checks.push(CanaryCheck {
            url: w.canary.url.clone(),
            verified: ok,
            detail,
        });
    }
    let v = Verification {
        verified: checks.iter().all(|c| c.verified),
        checked_ms: now,
        canaries: checks,
    };
    let purger = inner.purger.lock().clone();
    if let Some(p) = purger
        && let Err(e) = p.record_verification(c.id, &c.target, v).await
    {
        warn!(target = %c.target, "verification of purge {} not saved: {e}", c.id);
    }
    report(&inner, &plan, now);
    // Versions after a purge: every CDN, now.
    inner.kick.notify_one();
}
