//! One sink: its bounded queue and the task that delivers it, strictly in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rand::Rng;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::format::{self, AmState};
use crate::config::{SinkKind, SinkSpec};
use crate::events::Event;

/// The `[alerts]` settings every sink shares (changed in place by `apply`).
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub node: String,
    pub queue: usize,
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

struct Queued {
    event: Arc<Event>,
    queued_at: Instant,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Queued>,
    /// Taken off `waiting`, being delivered (or waiting for its next attempt).
    inflight: Option<Queued>,
    /// The sink was removed or stopped: nothing more is queued.
    closed: bool,
}

pub(crate) struct Sink {
    pub name: String,
    pub kind: SinkKind,
    spec: ArcSwap<SinkSpec>,
    globals: Arc<ArcSwap<Globals>>,
    q: Mutex<QueueState>,
    /// New work queued.
    wake: Notify,
    /// The spec changed: retry at once.
    retarget: Notify,
    delivered: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    /// Alertmanager: the alerts firing (kept alive by re-sends).
    firing: AtomicU64,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Counters and depth of one sink, read at once.
pub(crate) struct Counts {
    pub delivered: u64,
    pub failures: u64,
    pub dropped: u64,
    pub queued: u64,
    pub firing: u64,
}

enum Outcome {
    Delivered,
    /// Try again later (5xx, 408, 429, network error, timeout); the server's `Retry-After`.
    Retry(String, Option<Duration>),
    /// The receiver refused the event for good (other 4xx, 3xx).
    Permanent(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sink {
    pub fn new(spec: SinkSpec, globals: Arc<ArcSwap<Globals>>) -> Arc<Sink> {
        Arc::new(Sink {
            name: spec.name.clone(),
            kind: spec.kind,
            spec: ArcSwap::from_pointee(spec),
            globals,
            q: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            retarget: Notify::new(),
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            firing: AtomicU64::new(0),
            task: Mutex::new(None),
        })
    }

    pub fn spawn(self: &Arc<Self>, rt: &tokio::runtime::Handle, client: reqwest::Client) {
        let task = rt.spawn(run(self.clone(), client));
        *lock(&self.task) = Some(task.abort_handle());
    }

    pub fn spec(&self) -> Arc<SinkSpec> {
        self.spec.load_full()
    }

    /// Take a changed spec (same name and kind): the queue is kept, minus the events the new
    /// spec does not want; a pending retry happens at once.
    pub fn retarget(&self, spec: SinkSpec) {
        let mut q = lock(&self.q);
        let before = q.waiting.len();
        q.waiting
            .retain(|it| spec.wants(it.event.kind, it.event.severity));
        let removed = before - q.waiting.len();
        drop(q);
        if removed > 0 {
            debug!(
                sink = %self.name,
                removed,
                "alert sink reconfigured: queued events it no longer takes removed"
            );
        }
        self.spec.store(Arc::new(spec));
        self.retarget.notify_one();
    }

    /// Drop the oldest waiting events beyond the queue size.
    pub fn trim(&self) {
        let cap = self.globals.load().queue;
        let mut q = lock(&self.q);
        let mut over = Vec::new();
        while q.waiting.len() > cap {
            over.extend(q.waiting.pop_front());
        }
        drop(q);
        for it in over {
            self.drop_event(&it.event, "queue full");
        }
    }

    /// Queue `event` if this sink wants it. Never blocks beyond a short lock.
    pub fn push(&self, event: &Arc<Event>) {
        let spec = self.spec.load();
        if !spec.wants(event.kind, event.severity) {
            return;
        }
        let cap = self.globals.load().queue;
        let mut q = lock(&self.q);
        if q.closed {
            return;
        }
        q.waiting.push_back(Queued {
            event: event.clone(),
            queued_at: Instant::now(),
        });
        let mut over = Vec::new();
        while q.waiting.len() > cap {
            over.extend(q.waiting.pop_front());
        }
        drop(q);
        self.wake.notify_one();
        for it in over {
            self.drop_event(&it.event, "queue full");
        }
    }

    fn drop_event(&self, ev: &Event, reason: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        warn!(
            sink = %self.name,
            sink_kind = self.kind.as_str(),
            event_id = ev.id,
            event_kind = ev.kind.as_str(),
            subject = %ev.subject,
            "alert dropped: {reason}"
        );
    }

    /// Stop the task and abandon the queue (counted as dropped).
    pub fn close(&self, why: &str) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
        let mut q = lock(&self.q);
        q.closed = true;
        let n = q.waiting.len() + usize::from(q.inflight.is_some());
        q.waiting.clear();
        q.inflight = None;
        drop(q);
        if n > 0 {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            warn!(
                sink = %self.name,
                sink_kind = self.kind.as_str(),
                dropped = n,
                "alerts dropped: {why} with undelivered events"
            );
        }
    }

    pub fn counts(&self) -> Counts {
        let queued = {
            let q = lock(&self.q);
            (q.waiting.len() + usize::from(q.inflight.is_some())) as u64
        };
        Counts {
            delivered: self.delivered.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued,
            firing: self.firing.load(Ordering::Relaxed),
        }
    }

    /// The next event to deliver (the one being retried, else the oldest waiting), after
    /// dropping those older than `max_age`.
    fn next(&self, max_age: Duration) -> Option<(Arc<Event>, Instant)> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut q = lock(&self.q);
        if q.inflight
            .as_ref()
            .is_some_and(|it| now.duration_since(it.queued_at) >= max_age)
        {
            expired.extend(q.inflight.take());
        }
        while q
            .waiting
            .front()
            .is_some_and(|it| now.duration_since(it.queued_at) >= max_age)
        {
            expired.extend(q.waiting.pop_front());
        }
        if q.inflight.is_none() {
            q.inflight = q.waiting.pop_front();
        }
        let next = q
            .inflight
            .as_ref()
            .map(|it| (it.event.clone(), it.queued_at));
        drop(q);
        for it in expired {
            self.drop_event(
                &it.event,
                &format!("undelivered for {:?} (max_age)", max_age),
            );
        }
        next
    }

    /// The in-flight event is done with.
    fn finish(&self) {
        lock(&self.q).inflight = None;
    }
}

/// The request body for `ev` in the sink's format; None: this sink does not send it.
fn render(
    spec: &SinkSpec,
    node: &str,
    ev: &Event,
    am: &AmState,
) -> Option<(Vec<u8>, Option<format::AmChange>)> {
    let (value, change) = match spec.kind {
        SinkKind::Webhook => (format::webhook(ev, node), None),
        SinkKind::Slack => (format::slack(ev, node), None),
        SinkKind::PagerDuty => (
            format::pagerduty(ev, node, spec.routing_key.as_deref().unwrap_or(""))?,
            None,
        ),
        SinkKind::Alertmanager => {
            let (v, c) = am.render(ev, node, SystemTime::now(), spec.resend)?;
            (v, Some(c))
        }
    };
    Some((serde_json::to_vec(&value).unwrap_or_default(), change))
}

/// The delivery task of one sink.
async fn run(sink: Arc<Sink>, client: reqwest::Client) {
    let mut am = AmState::default();
    let mut next_refresh = Instant::now();
    // Backoff of the event being retried, and its failed attempts so far.
    let mut delay: Option<Duration> = None;
    let mut attempts = 0u32;
    loop {
        let g = sink.globals.load_full();
        // Alertmanager forgets firing alerts that are not re-sent (not while backing off:
        // the receiver is failing).
        let spec = sink.spec();
        if spec.kind == SinkKind::Alertmanager
            && !am.is_empty()
            && delay.is_none()
            && Instant::now() >= next_refresh
        {
            next_refresh = Instant::now() + spec.resend;
            let body =
                serde_json::to_vec(&am.refresh(SystemTime::now(), spec.resend)).unwrap_or_default();
            match post(&client, &spec, body).await {
                Outcome::Delivered => debug!(sink = %sink.name, "firing alerts re-sent"),
                Outcome::Retry(why, _) | Outcome::Permanent(why) => {
                    sink.failures.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        sink = %sink.name,
                        sink_kind = sink.kind.as_str(),
                        url = %spec.redacted_url(),
                        "re-sending firing alerts failed: {why}"
                    );
                }
            }
        }
        let Some((event, queued_at)) = sink.next(g.max_age) else {
            delay = None;
            attempts = 0;
            if spec.kind == SinkKind::Alertmanager && !am.is_empty() {
                tokio::select! {
                    _ = sink.wake.notified() => {}
                    _ = tokio::time::sleep_until(next_refresh.into()) => {}
                }
            } else {
                sink.wake.notified().await;
            }
            continue;
        };

        let spec = sink.spec();
        let Some((body, change)) = render(&spec, &g.node, &event, &am) else {
            sink.finish();
            continue;
        };
        match post(&client, &spec, body).await {
            Outcome::Delivered => {
                sink.finish();
                sink.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = change {
                    if am.is_empty() {
                        next_refresh = Instant::now() + spec.resend;
                    }
                    am.apply(c);
                    sink.firing.store(am.len() as u64, Ordering::Relaxed);
                }
                if attempts > 0 {
                    info!(
                        sink = %sink.name,
                        sink_kind = sink.kind.as_str(),
                        event_id = event.id,
                        failed_attempts = attempts,
                        "alert delivered after retries"
                    );
                } else {
                    debug!(sink = %sink.name, event_id = event.id, "alert delivered");
                }
                delay = None;
                attempts = 0;
            }
            Outcome::Permanent(why) => {
                sink.finish();
                sink.failures.fetch_add(1, Ordering::Relaxed);
                sink.drop_event(
                    &event,
                    &format!("rejected by {}: {why}", spec.redacted_url()),
                );
                delay = None;
                attempts = 0;
            }
            Outcome::Retry(why, retry_after) => {
                sink.failures.fetch_add(1, Ordering::Relaxed);
                attempts += 1;
                let d = delay
                    .map(|d| d.saturating_mul(2))
                    .unwrap_or(g.retry_initial)
                    .min(g.retry_max);
                delay = Some(d);
                let jittered = d.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
                let wait = retry_after
                    .unwrap_or(jittered)
                    .min(g.retry_max)
                    // Wake up for the expiry at the latest.
                    .min((queued_at + g.max_age).saturating_duration_since(Instant::now()));
                let log = format!(
                    "alert delivery failed (attempt {attempts}), retrying in {wait:.2?}: {why}"
                );
                if attempts == 1 || attempts.is_power_of_two() {
                    warn!(
                        sink = %sink.name,
                        sink_kind = sink.kind.as_str(),
                        url = %spec.redacted_url(),
                        event_id = event.id,
                        "{log}"
                    );
                } else {
                    debug!(sink = %sink.name, event_id = event.id, "{log}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = sink.retarget.notified() => { delay = None; }
                }
            }
        }
    }
}

/// Longest response body kept for a log line.
const EXCERPT: usize = 300;
/// Most of a response body read (so the connection can be reused).
const READ_LIMIT: usize = 64 * 1024;

async fn post(client: &reqwest::Client, spec: &SinkSpec, body: Vec<u8>) -> Outcome {
    let mut req = client
        .post(&spec.url)
        .timeout(spec.timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(describe(e), None),
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut text = Vec::new();
    while text.len() < READ_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => text.extend_from_slice(&c),
            _ => break,
        }
    }
    if status.is_success() {
        return Outcome::Delivered;
    }
    let mut excerpt: String = String::from_utf8_lossy(&text)
        .chars()
        .filter(|c| !c.is_control())
        .take(EXCERPT)
        .collect();
    if excerpt.trim().is_empty() {
        excerpt = "(empty body)".into();
    }
    let why = match location {
        Some(l) if status.is_redirection() => format!(
            "HTTP {status}, redirect to {} (set the final URL)",
            crate::config::redact_url(&l, spec.kind == SinkKind::Slack)
        ),
        _ => format!("HTTP {status}: {excerpt}"),
    };
    if status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        Outcome::Retry(why, retry_after)
    } else {
        Outcome::Permanent(why)
    }
}

/// A reqwest error with its causes, without the URL (a Slack URL is a secret).
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        src = c.source();
    }
    if timeout && !s.contains("timed out") {
        s.push_str(" (timed out)");
    }
    s
}
