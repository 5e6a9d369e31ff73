//! Alert sinks: every event goes to the configured sinks (generic JSON webhook, Slack incoming
//! webhook, PagerDuty Events API v2, Alertmanager v2) through a bounded queue per sink with
//! retries and exponential backoff.
//!
//! Each sink has its own queue and delivery task, and delivers strictly in order: an event is
//! retried (backoff from `retry_initial`, doubling up to `retry_max`, with ±20 % jitter, or the
//! receiver's `Retry-After`) until it is delivered, refused for good (a 4xx other than 408/429),
//! or older than `max_age`; only then does the next one go. A full queue drops its oldest event.
//! Every drop is counted (`steerd_alert_dropped_total`) and logged.

mod format;
mod sink;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub use crate::config::schema::{AlertsConfig, SinkConfig};
pub use crate::config::{AlertSettings, SinkKind, SinkSpec};

use crate::events::Event;
use sink::{Globals, Sink};

/// Delivery counters of one sink.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SinkStats {
    pub sink: String,
    pub kind: &'static str,
    /// Events delivered (2xx).
    pub delivered: u64,
    /// Failed delivery attempts (each retry that failed counts once).
    pub failures: u64,
    /// Events given up on (queue full, refused by the receiver, retried past `max_age`, or
    /// abandoned when the sink was removed or stopped).
    pub dropped: u64,
    /// Events waiting now (including the one being delivered).
    pub queued: u64,
    /// Alertmanager sinks: alerts firing, re-sent every `resend` period (none: nothing is
    /// re-sent).
    pub firing: u64,
}

const METRICS: [(&str, &str); 4] = [
    (
        "steerd_alert_deliveries_total",
        "Alert events delivered, by sink.",
    ),
    (
        "steerd_alert_failures_total",
        "Failed alert delivery attempts, by sink.",
    ),
    (
        "steerd_alert_dropped_total",
        "Alert events given up on (queue full, refused, expired, abandoned), by sink.",
    ),
    (
        "steerd_alert_queue_depth",
        "Alert events waiting for delivery, by sink.",
    ),
];
const LABELS: [&str; 2] = ["sink", "kind"];

struct Inner {
    rt: tokio::runtime::Handle,
    client: reqwest::Client,
    globals: Arc<ArcSwap<Globals>>,
    sinks: ArcSwap<Vec<Arc<Sink>>>,
    /// Serialises `apply` and `stop`.
    apply_lock: Mutex<()>,
    stopped: AtomicBool,
    descs: Vec<Desc>,
}

impl Inner {
    fn stop(&self) {
        let _g = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.stopped.store(true, Ordering::SeqCst);
        for s in self.sinks.load().iter() {
            s.close("alerts stopped");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The running sinks. Cheap to clone; `send` never blocks. The delivery tasks run until
/// [`Alerter::stop`] or until the last clone (including a registered collector) is dropped.
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

fn globals(settings: &AlertSettings) -> Globals {
    Globals {
        node: settings.node.clone(),
        queue: settings.queue.max(1),
        max_age: settings.max_age,
        retry_initial: settings.retry_initial,
        retry_max: settings.retry_max.max(settings.retry_initial),
    }
}

impl Alerter {
    /// Start one delivery task per sink. Must be called inside a tokio runtime (the tasks, also
    /// those `apply` starts later, run on it).
    pub fn start(settings: &AlertSettings) -> Alerter {
        let rt = tokio::runtime::Handle::try_current()
            .expect("Alerter::start must be called inside a tokio runtime");
        let client = reqwest::Client::builder()
            .user_agent(concat!("steerd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::error!("alert HTTP client: {e}; using the default client");
                reqwest::Client::new()
            });
        let descs = METRICS
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    LABELS.iter().map(|l| l.to_string()).collect(),
                    HashMap::new(),
                )
                .expect("static metric description")
            })
            .collect();
        let alerter = Alerter {
            inner: Arc::new(Inner {
                rt,
                client,
                globals: Arc::new(ArcSwap::from_pointee(globals(settings))),
                sinks: ArcSwap::from_pointee(Vec::new()),
                apply_lock: Mutex::new(()),
                stopped: AtomicBool::new(false),
                descs,
            }),
        };
        alerter.apply(settings);
        alerter
    }

    /// Replace the sinks (a config change). A sink with the same name and kind as before keeps
    /// its queue and counters (an unchanged spec is left alone; a changed one — URL, key,
    /// headers, filters, timeout — takes effect at the next attempt, and queued events it no
    /// longer wants are removed). Sinks no longer configured are stopped, their undelivered
    /// events counted as dropped. May be called from any thread.
    pub fn apply(&self, settings: &AlertSettings) {
        let inner = &self.inner;
        let _g = inner.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        inner.globals.store(Arc::new(globals(settings)));
        let old = inner.sinks.load_full();
        let mut new: Vec<Arc<Sink>> = Vec::with_capacity(settings.sinks.len());
        for spec in &settings.sinks {
            match old
                .iter()
                .find(|s| s.name == spec.name && s.kind == spec.kind)
            {
                Some(s) => {
                    if *s.spec() != *spec {
                        s.retarget(spec.clone());
                    }
                    s.trim();
                    new.push(s.clone());
                }
                None => {
                    let s = Sink::new(spec.clone(), inner.globals.clone());
                    s.spawn(&inner.rt, inner.client.clone());
                    new.push(s);
                }
            }
        }
        inner.sinks.store(Arc::new(new.clone()));
        for s in old.iter() {
            if !new.iter().any(|n| Arc::ptr_eq(n, s)) {
                s.close("sink removed from the configuration");
            }
        }
    }

    /// Queue an event for every sink that wants it. Never blocks or awaits (takes each sink's
    /// queue lock briefly): callable while holding a lock.
    pub fn send(&self, event: &Event) {
        let sinks = self.inner.sinks.load();
        if sinks.is_empty() {
            return;
        }
        let ev = Arc::new(event.clone());
        for s in sinks.iter() {
            s.push(&ev);
        }
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.inner
            .sinks
            .load()
            .iter()
            .map(|s| {
                let c = s.counts();
                SinkStats {
                    sink: s.name.clone(),
                    kind: s.kind.as_str(),
                    delivered: c.delivered,
                    failures: c.failures,
                    dropped: c.dropped,
                    queued: c.queued,
                    firing: c.firing,
                }
            })
            .collect()
    }

    /// Stop the delivery tasks (queued events are abandoned and counted as dropped). Later
    /// `send`s and `apply`s do nothing.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// This alerter as a boxed collector, for `Registry::register`.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

/// `steerd_alert_deliveries_total`, `steerd_alert_failures_total`, `steerd_alert_dropped_total`
/// (counters) and `steerd_alert_queue_depth` (gauge), labelled `sink` and `kind`.
impl Collector for Alerter {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let counter = |i: usize| {
            IntCounterVec::new(Opts::new(METRICS[i].0, METRICS[i].1), &LABELS)
                .expect("static metric")
        };
        let (delivered, failures, dropped) = (counter(0), counter(1), counter(2));
        let depth = IntGaugeVec::new(Opts::new(METRICS[3].0, METRICS[3].1), &LABELS)
            .expect("static metric");
        for st in self.stats() {
            let l = [st.sink.as_str(), st.kind];
            delivered.with_label_values(&l).inc_by(st.delivered);
            failures.with_label_values(&l).inc_by(st.failures);
            dropped.with_label_values(&l).inc_by(st.dropped);
            depth
                .with_label_values(&l)
                .set(i64::try_from(st.queued).unwrap_or(i64::MAX));
        }
        let mut out = Vec::with_capacity(4);
        out.extend(delivered.collect());
        out.extend(failures.collect());
        out.extend(dropped.collect());
        out.extend(depth.collect());
        out
    }
}
