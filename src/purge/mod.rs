//! Cache invalidation across the CDNs: a purge accepted through the admin API (or the event
//! bus) is committed to the store (`store`), then fanned out to one worker per CDN target
//! (`worker`), which batches, dedupes, splits to the provider's limits (`provider`),
//! rate-limits, sends and retries it (`queue`). Each CDN's progress is committed as it
//! changes, so a restart resumes every unfinished purge.

pub mod cli;
mod keys;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod queue;
pub mod recent;
pub mod registry;
pub mod store;
pub mod usage;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::clock::wall_ms;
use crate::config::ValidConfig;
pub use crate::config::purge::{Priority, PurgeSettings, PurgeTarget, RateLimit, Secret};
use crate::events::{Event, EventKind, Severity};
use model::{CdnProgress, CdnState, PurgeRecord, PurgeRequest};
use provider::{Item, Provider};
use queue::Ref;
use store::{Inserted, Store, StoreError};
use worker::{Job, Worker};

/// Where events of the purger go (the control plane's log and alert sinks).
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A CDN that confirmed every item of a purge: what it purged.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub id: u64,
    pub target: String,
    pub items: Vec<Item>,
}

/// Called after a CDN's confirmation is committed (the verifier, `freshness`).
pub type ConfirmHook = Arc<dyn Fn(Confirmed) + Send + Sync>;

/// What a request's answer does to one purge's item on one CDN.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Sent,
    Confirmed(Option<String>),
    /// The error, and when it is tried again.
    Retrying(String, u64),
    Failed(String),
    ProviderId(String),
}

pub(crate) fn changes(refs: &[Ref], f: impl Fn(&Ref) -> Change) -> Vec<(Ref, Change)> {
    refs.iter().map(|r| (*r, f(r))).collect()
}

/// Why a purge was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is wrong: the field and reason.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the workers share: settings, the store, the unfinished purges, metrics.
pub(crate) struct Shared {
    pub settings: PurgeSettings,
    store: Arc<Store>,
    open: Mutex<BTreeMap<u64, PurgeRecord>>,
    changed: watch::Sender<u64>,
    pub metrics: metrics::PurgeMetrics,
    events: EventSink,
    /// Serialises commits, so progress reaches the store in the order it was made.
    commit: tokio::sync::Mutex<()>,
    /// Monthly usage and cost per target (`usage`), committed with the progress.
    pub(crate) usage: usage::Usage,
    /// Items confirmed per target over the last 5 minutes (`recent`), for the cache score.
    pub(crate) recent: recent::RecentHandle,
    /// Surrogate keys → URLs, and the parts of items expanded through it (`keys`).
    registry: registry::Registry,
    parts: keys::Parts,
    /// Told of every CDN that confirmed a purge.
    on_confirmed: Mutex<Option<ConfirmHook>>,
}

impl Shared {
    /// Applies changes to the purges in memory, commits them, then tells waiters.
    pub(crate) async fn apply(&self, target: &str, changes: Vec<(Ref, Change)>, now: u64) {
        if changes.is_empty() {
            return;
        }
        let _order = self.commit.lock().await;
        self.note_confirmed(target, &changes, now);
        let mut rows: BTreeMap<u64, CdnProgress> = BTreeMap::new();
        let mut events = Vec::new();
        let mut confirmed: Vec<Confirmed> = Vec::new();
        {
            let mut open = self.open.lock();
            let mut counted: Vec<u64> = Vec::new();
            for (r, c) in &changes {
                let Some(rec) = open.get_mut(&r.id) else {
                    continue;
                };
                let Some(p) = rec.cdns.get_mut(target) else {
                    continue;
                };
                if p.state.finished() {
                    continue;
                }
                let Some(c) = self.parts.count(target, r, c) else {
                    continue;
                };
                let c = &c;
                let first = !counted.contains(&r.id);
                match c {
                    Change::Sent => {
                        if first {
                            p.attempts += 1;
                        }
                        p.first_sent_ms.get_or_insert(now);
                        p.state = CdnState::Sent;
                        p.next_retry_ms = None;
                    }
                    Change::Confirmed(id) => {
                        p.done.set(r.idx);
                        if let Some(id) = id {
                            p.push_id(id.clone());
                        }
                    }
                    Change::ProviderId(id) => p.push_id(id.clone()),
                    Change::Retrying(e, at) => {
                        p.state = CdnState::Retrying;
                        p.next_retry_ms = Some(*at);
                        if first {
                            p.push_error(e.clone());
                        }
                    }
                    Change::Failed(e) => {
                        p.failed.set(r.idx);
                        if first {
                            p.push_error(e.clone());
                        }
                    }
                }
                if first {
                    counted.push(r.id);
                }
            }
            for id in counted {
                let rec = open.get_mut(&id).expect("counted");
                let prio = rec.request.priority;
                let accepted = rec.accepted_ms;
                let p = rec.cdns.get_mut(target).expect("counted");
                if p.open().next().is_none() && !p.state.finished() {
                    let failed = p.failed.count() > 0;
                    p.state = if failed {
                        CdnState::Failed
                    } else {
                        CdnState::Confirmed
                    };
                    p.finished_ms = Some(now);
                    p.next_retry_ms = None;
                    events.extend(self.finished(id, target, prio, accepted, p, now));
                    if p.state == CdnState::Confirmed {
                        confirmed.push(Confirmed {
                            id,
                            target: target.to_string(),
                            items: rec.request.items.clone(),
                        });
                    }
                }
                rows.insert(id, p.clone());
                if rec.finished() {
                    open.remove(&id);
                }
            }
        }
        let rows: Vec<(u64, String, CdnProgress)> = rows
            .into_iter()
            .map(|(id, p)| (id, target.to_string(), p))
            .collect();
        let store = self.store.clone();
        let usage = self.usage.take_dirty();
        let done = tokio::task::spawn_blocking(move || {
            store.put_usage(&usage, rows.is_empty())?;
            store.update(&rows)
        })
        .await;
        if let Ok(Err(e)) | Err(e) = done.map_err(|e| StoreError::from_join(&e)) {
            tracing::error!(target, "purge progress not saved: {e}");
        }
        self.changed.send_modify(|n| *n += 1);
        for ev in events {
            (self.events)(ev);
        }
        let hook = self.on_confirmed.lock().clone();
        if let Some(hook) = hook {
            confirmed.into_iter().for_each(|c| hook(c));
        }
    }

    /// Metrics and events of a CDN that finished a purge.
    fn finished(
        &self,
        id: u64,
        target: &str,
        prio: Priority,
        accepted_ms: u64,
        p: &CdnProgress,
        now: u64,
    ) -> Vec<Event> {
        let took = Duration::from_millis(now.saturating_sub(accepted_ms));
        let mut out = Vec::new();
        let m = &self.metrics;
        m.items
            .with_label_values(&[target, "confirmed"])
            .inc_by(p.done.count() as u64);
        m.items
            .with_label_values(&[target, "failed"])
            .inc_by(p.failed.count() as u64);
        if p.state == CdnState::Failed {
            let why = p.errors.last().cloned().unwrap_or_default();
            out.push(Event::new(
                EventKind::PurgeFailed,
                Severity::Warning,
                "target",
                target,
                format!(
                    "{target}: purge {id} failed for {} of {} item(s): {why}",
                    p.failed.count(),
                    p.done.len()
                ),
                now,
            ));
            return out;
        }
        m.completion
            .with_label_values(&[target, prio.as_str()])
            .observe(took.as_secs_f64());
        let sla = self.settings.sla[prio.index()];
        if took > sla {
            m.sla_missed
                .with_label_values(&[target, prio.as_str()])
                .inc();
            out.push(Event::new(
                EventKind::PurgeSlaMissed,
                Severity::Warning,
                "target",
                target,
                format!(
                    "{target}: purge {id} ({}) confirmed after {:.1}s, SLA {:.1}s",
                    prio.as_str(),
                    took.as_secs_f64(),
                    sla.as_secs_f64()
                ),
                now,
            ));
        }
        out
    }

    pub(crate) fn queued(&self, target: &str, n: usize) {
        self.metrics
            .queued
            .with_label_values(&[target])
            .set(n as i64);
    }

    pub(crate) fn deduped(&self, target: &str, total: u64) {
        let c = self.metrics.deduped.with_label_values(&[target]);
        let seen = c.get();
        if total > seen {
            c.inc_by(total - seen);
            self.usage.deduped(target, total - seen, wall_ms());
        }
    }

    pub(crate) fn api_call(&self, target: &str, failed: bool) {
        let result = if failed { "error" } else { "ok" };
        self.metrics
            .api_calls
            .with_label_values(&[target, result])
            .inc();
    }
}

impl StoreError {
    fn from_join(e: &tokio::task::JoinError) -> StoreError {
        StoreError::new(format!("store task: {e}"))
    }
}

/// The purger of a running server, once a configuration with a purge target has been
/// applied (None before).
pub type PurgerSlot = Arc<Mutex<Option<Arc<Purger>>>>;

/// The purger of a running server: the store, one worker per target with `[targets.purge]`.
pub struct Purger {
    shared: Arc<Shared>,
    workers: Mutex<BTreeMap<String, mpsc::UnboundedSender<Job>>>,
    /// Targets that purges may name now (those with `[targets.purge]`).
    targets: Mutex<BTreeMap<String, Provider>>,
}

impl Purger {
    /// Opens the store, starts a worker per purge target of `cfg`, and resumes every purge
    /// the store holds unfinished. Call within a tokio runtime.
    pub fn start(cfg: &ValidConfig, events: EventSink) -> Result<Arc<Purger>, StoreError> {
        let settings = cfg.purge.clone();
        let store = Arc::new(Store::open(&settings.store)?);
        let usage = usage::Usage::load(store.usage()?, wall_ms());
        let (changed, _) = watch::channel(0);
        let registry = registry::Registry::open(store.clone(), settings.registry_max_urls)?;
        let shared = Arc::new(Shared {
            settings,
            store,
            open: Mutex::new(BTreeMap::new()),
            changed,
            metrics: metrics::PurgeMetrics::new(),
            events,
            commit: tokio::sync::Mutex::new(()),
            usage,
            recent: Default::default(),
            registry,
            parts: keys::Parts::default(),
            on_confirmed: Mutex::new(None),
        });
        let purger = Arc::new(Purger {
            shared,
            workers: Mutex::new(BTreeMap::new()),
            targets: Mutex::new(BTreeMap::new()),
        });
        purger.apply(cfg);
        purger.resume()?;
        Ok(purger)
    }

    /// A new configuration: new purge targets get a worker, changed ones their new
    /// settings. Workers of removed targets finish what they hold.
    pub fn apply(&self, cfg: &ValidConfig) {
        let mut targets = BTreeMap::new();
        let mut workers = self.workers.lock();
        for t in &cfg.targets {
            let Some(pc) = &t.purge else { continue };
            let p = Provider::new(&t.name, pc);
            match workers.get(&t.name) {
                Some(tx) => {
                    let _ = tx.send(Job::Reconfigure(Box::new(p.clone())));
                }
                None => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let w = Worker {
                        provider: p.clone(),
                        shared: self.shared.clone(),
                        rx,
                    };
                    tokio::spawn(w.run());
                    workers.insert(t.name.clone(), tx);
                }
            }
            targets.insert(t.name.clone(), p);
        }
        *self.targets.lock() = targets;
    }

    /// Gives every unfinished purge of the store back to its workers.
    fn resume(&self) -> Result<(), StoreError> {
        for id in self.shared.store.open_ids()? {
            let Some(rec) = self.shared.store.get(id)? else {
                continue;
            };
            self.shared.open.lock().insert(id, rec.clone());
            self.dispatch(&rec);
        }
        Ok(())
    }

    /// Accepts a purge: checks it, commits it, hands it to the workers. Returns its id and
    /// whether it is new (false: its idempotency key named an earlier purge).
    pub async fn submit(&self, mut req: PurgeRequest) -> Result<(u64, bool), SubmitError> {
        self.check(&mut req)?;
        let now = wall_ms();
        let store = self.shared.store.clone();
        let r = req.clone();
        let inserted = tokio::task::spawn_blocking(move || store.insert(now, &r))
            .await
            .map_err(|e| StoreError::from_join(&e))??;
        let id = match inserted {
            Inserted::Existing(id) => return Ok((id, false)),
            Inserted::New(id) => id,
        };
        let rec = PurgeRecord {
            id,
            accepted_ms: now,
            cdns: req
                .targets
                .iter()
                .map(|t| (t.clone(), CdnProgress::new(req.items.len())))
                .collect(),
            request: req,
        };
        self.shared
            .metrics
            .accepted
            .with_label_values(&[rec.request.priority.as_str()])
            .inc();
        self.shared.open.lock().insert(id, rec.clone());
        self.dispatch(&rec);
        Ok((id, true))
    }

    fn check(&self, req: &mut PurgeRequest) -> Result<(), SubmitError> {
        let bad = |s: String| Err(SubmitError::Invalid(s));
        if req.items.is_empty() {
            return bad("nothing to purge: give urls, keys, prefixes, hosts or everything".into());
        }
        let max = self.shared.settings.max_items;
        if req.items.len() > max {
            return bad(format!(
                "{} items: at most {max} in one purge (purge.max_items)",
                req.items.len()
            ));
        }
        let targets = self.targets.lock();
        if targets.is_empty() {
            return bad("no target has [targets.purge]".into());
        }
        if req.targets.is_empty() {
            req.targets = targets.keys().cloned().collect();
        }
        req.targets.sort();
        req.targets.dedup();
        for t in &req.targets {
            if !targets.contains_key(t) {
                return bad(format!("targets: {t:?} is no target with [targets.purge]"));
            }
        }
        Ok(())
    }

    /// Sends each CDN's open items to its worker; items the CDN cannot purge fail at once.
    fn dispatch(&self, rec: &PurgeRecord) {
        let targets = self.targets.lock().clone();
        let workers = self.workers.lock().clone();
        for (t, p) in &rec.cdns {
            if p.state.finished() {
                continue;
            }
            let mut items = Vec::new();
            let mut refused = Vec::new();
            for idx in p.open() {
                let item = rec.request.items[idx as usize].clone();
                match targets.get(t) {
                    Some(pv) => match keys::items_for(&self.shared.registry, pv, &item) {
                        Ok(parts) => {
                            self.shared.parts.expect(t, rec.id, idx, parts.len());
                            items.extend(parts.into_iter().map(|i| (idx, i)));
                        }
                        Err(why) => refused.push((idx, why)),
                    },
                    None => refused.push((idx, format!("{t} no longer has [targets.purge]"))),
                }
            }
            if !refused.is_empty() {
                let changes = refused
                    .into_iter()
                    .map(|(idx, why)| {
                        let r = Ref {
                            id: rec.id,
                            idx,
                            accepted_ms: rec.accepted_ms,
                        };
                        (r, Change::Failed(why))
                    })
                    .collect();
                let shared = self.shared.clone();
                let t = t.clone();
                tokio::spawn(async move { shared.apply(&t, changes, wall_ms()).await });
            }
            if let (false, Some(tx)) = (items.is_empty(), workers.get(t)) {
                let _ = tx.send(Job::Purge {
                    id: rec.id,
                    accepted_ms: rec.accepted_ms,
                    priority: rec.request.priority,
                    soft: rec.request.soft,
                    items,
                });
            }
        }
    }

    /// One purge as it stands.
    pub fn get(&self, id: u64) -> Result<Option<PurgeRecord>, StoreError> {
        if let Some(r) = self.shared.open.lock().get(&id) {
            return Ok(Some(r.clone()));
        }
        self.shared.store.get(id)
    }

    /// Purges newest first (below `before`), those in `state` only when given.
    pub fn list(
        &self,
        state: Option<CdnState>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PurgeRecord>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = before;
        while out.len() < limit {
            let ids = self.shared.store.ids(cursor, 256)?;
            let Some(&last) = ids.last() else { break };
            for id in ids {
                if let Some(r) = self.get(id)?
                    && state.is_none_or(|s| r.state() == s)
                {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            cursor = Some(last);
        }
        Ok(out)
    }

    /// Waits until purge `id` is finished on every CDN or `timeout` passes; the record then.
    pub async fn wait(
        &self,
        id: u64,
        timeout: Duration,
    ) -> Result<Option<PurgeRecord>, StoreError> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.get(id)?;
            if r.as_ref().is_none_or(|r| r.finished()) {
                return Ok(r);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.get(id);
            }
        }
    }

    /// The surrogate-key registry (keys → URLs) of this purger's store.
    pub fn registry(&self) -> &registry::Registry {
        &self.shared.registry
    }

    /// Records the surrogate keys `url`'s answer names in its `Surrogate-Key` (space-separated)
    /// and `Cache-Tag` (comma-separated) headers, in place of those the registry had for it;
    /// the keys recorded, or None (nothing changed) when the answer had neither header. For
    /// fetches of the origin or a CDN (canaries). One store commit: blocking, so async code
    /// calls it from `spawn_blocking`.
    pub fn learn_keys(
        &self,
        url: &str,
        headers: &http::HeaderMap,
        now_ms: u64,
    ) -> Result<Option<Vec<String>>, registry::RegistryError> {
        self.shared.registry.learn(url, headers, now_ms)
    }

    pub fn settings(&self) -> &PurgeSettings {
        &self.shared.settings
    }

    /// Tells `hook` of every CDN that confirms a purge from now on (None: nobody).
    pub fn set_on_confirmed(&self, hook: Option<ConfirmHook>) {
        *self.shared.on_confirmed.lock() = hook;
    }

    /// Records what verifying purge `id` on `target` found; false when there is no such
    /// purge or CDN.
    pub async fn record_verification(
        &self,
        id: u64,
        target: &str,
        v: model::Verification,
    ) -> Result<bool, StoreError> {
        let _order = self.shared.commit.lock().await;
        let open = {
            let mut open = self.shared.open.lock();
            open.get_mut(&id)
                .and_then(|r| r.cdns.get_mut(target))
                .map(|p| {
                    p.verification = Some(v.clone());
                    p.clone()
                })
        };
        let row = match open {
            Some(p) => p,
            None => {
                let store = self.shared.store.clone();
                let rec = tokio::task::spawn_blocking(move || store.get(id))
                    .await
                    .map_err(|e| StoreError::from_join(&e))??;
                let Some(mut p) = rec.and_then(|mut r| r.cdns.remove(target)) else {
                    return Ok(false);
                };
                p.verification = Some(v);
                p
            }
        };
        let rows = vec![(id, target.to_string(), row)];
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || store.update(&rows))
            .await
            .map_err(|e| StoreError::from_join(&e))??;
        self.shared.changed.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// The purger's metric families.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut all = self.shared.metrics.gather();
        all.extend(self.shared.usage.gather());
        all
    }
}

fn kind_name(item: &Item) -> &'static str {
    match item {
        Item::Url(_) => "url",
        Item::Key(_) => "surrogate key",
        Item::Prefix(_) => "prefix",
        Item::Host(_) => "host",
        Item::Everything => "everything",
    }
}
