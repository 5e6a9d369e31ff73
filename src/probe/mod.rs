//! The prober: multi-level health checks of every target that has a `[targets.check]`.
//!
//! Checks run on a thread of their own (a single-threaded tokio runtime), never on the DNS
//! listeners' threads or the runtime that serves DNS over TCP. Each target has one task that
//! waits interval × (1 ± jitter), takes a permit of the global concurrency limit and runs its
//! levels with the check's timeout. After a first failure it re-checks straight away
//! (`confirm` times, `confirm_gap` apart) so a dead target is confirmed in well under a second.
//! Results leave as [`ProbeReport`]s on a channel; the health module turns them into windows.
//!
//! A new plan ([`Prober::apply`]) stops the tasks of removed or changed checks before it
//! returns: no check outlives its configuration.

pub mod cache;
pub mod check;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

pub use check::{Checker, LevelResult, Outcome, RunResult};

use crate::config::ValidConfig;
use crate::config::check::CheckSpec;

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Scheduled,
    /// Re-check `n` of `of` after a first failure.
    Confirm {
        n: u32,
        of: u32,
    },
}

/// One finished run, as the prober reports it.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub vantage: Arc<str>,
    pub run: RunResult,
    pub kind: RunKind,
    /// The failure is confirmed: every re-check of the burst failed too (or no burst is
    /// configured and this was a first failure). Set on the run that confirms it.
    pub confirmed_down: bool,
}

/// What to probe: every target with a check, and the global settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    pub vantage: Arc<str>,
    pub concurrency: usize,
    pub jobs: Vec<(Arc<str>, Arc<CheckSpec>)>,
}

impl ProbePlan {
    pub fn from_config(cfg: &ValidConfig) -> Self {
        Self {
            vantage: Arc::from(cfg.probe.vantage.as_str()),
            concurrency: cfg.probe.concurrency,
            jobs: cfg
                .targets
                .iter()
                .filter_map(|t| t.check.clone().map(|c| (Arc::from(t.name.as_str()), c)))
                .collect(),
        }
    }
}

enum Cmd {
    Apply(ProbePlan, std::sync::mpsc::Sender<()>),
    Stop,
}

/// The running prober.
pub struct Prober {
    cmd: mpsc::UnboundedSender<Cmd>,
    running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Start probing `plan` on a new thread; reports go to `reports`. The checks are running
    /// when this returns.
    pub fn start(plan: ProbePlan, reports: mpsc::Sender<ProbeReport>) -> std::io::Result<Self> {
        let (cmd, mut rx) = mpsc::unbounded_channel();
        let running = Arc::new(Mutex::new(BTreeMap::new()));
        let running2 = running.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("steerd-probe")
            .build()?;
        let thread = std::thread::Builder::new()
            .name("steerd-probe".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut sched = Scheduler::new(reports, running2);
                    while let Some(c) = rx.recv().await {
                        match c {
                            Cmd::Apply(p, ack) => {
                                sched.apply(p);
                                let _ = ack.send(());
                            }
                            Cmd::Stop => break,
                        }
                    }
                    sched.stop_all();
                });
            })?;
        let prober = Self {
            cmd,
            running,
            thread: Some(thread),
        };
        prober.apply(plan);
        Ok(prober)
    }

    /// Switch to a new plan. Checks of removed targets, and checks whose settings changed, are
    /// stopped before this returns; new and changed ones start.
    pub fn apply(&self, plan: ProbePlan) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.cmd.send(Cmd::Apply(plan, ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Targets whose checks are running.
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .expect("running map")
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Stop every check and the prober's thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

struct Job {
    spec: Arc<CheckSpec>,
    task: tokio::task::JoinHandle<()>,
}

struct Scheduler {
    reports: mpsc::Sender<ProbeReport>,
    checker: Arc<Checker>,
    sem: Arc<Semaphore>,
    concurrency: usize,
    vantage: Arc<str>,
    jobs: BTreeMap<Arc<str>, Job>,
    running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
}

impl Scheduler {
    fn new(
        reports: mpsc::Sender<ProbeReport>,
        running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
    ) -> Self {
        Self {
            reports,
            checker: Arc::new(Checker::new()),
            sem: Arc::new(Semaphore::new(1)),
            concurrency: 0,
            vantage: Arc::from("local"),
            jobs: BTreeMap::new(),
            running,
        }
    }

    fn apply(&mut self, plan: ProbePlan) {
        // A new limit or vantage name restarts everything (rare: an operator's edit).
        if plan.concurrency != self.concurrency || plan.vantage != self.vantage {
            self.stop_all();
            self.concurrency = plan.concurrency;
            self.vantage = plan.vantage.clone();
            self.sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
        }
        let wanted: BTreeMap<Arc<str>, Arc<CheckSpec>> = plan.jobs.into_iter().collect();
        let stale: Vec<Arc<str>> = self
            .jobs
            .iter()
            .filter(|(name, job)| wanted.get(*name) != Some(&job.spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(job) = self.jobs.remove(&name) {
                job.task.abort();
                debug!(target_name = %name, "check stopped");
            }
        }
        // New checks start at random within a spread that grows with their number: a few
        // targets are checked within a second, a thousand spread over their interval.
        let new_jobs = wanted
            .keys()
            .filter(|k| !self.jobs.contains_key(*k))
            .count();
        let spread = Duration::from_millis(1000 + 10 * new_jobs as u64);
        for (name, spec) in wanted {
            if self.jobs.contains_key(&name) {
                continue;
            }
            let task = tokio::spawn(target_loop(
                name.clone(),
                spec.clone(),
                spread,
                self.vantage.clone(),
                self.checker.clone(),
                self.sem.clone(),
                self.reports.clone(),
            ));
            debug!(target_name = %name, "check started");
            self.jobs.insert(name, Job { spec, task });
        }
        *self.running.lock().expect("running map") = self
            .jobs
            .iter()
            .map(|(k, j)| (k.clone(), j.spec.clone()))
            .collect();
    }

    fn stop_all(&mut self) {
        for (_, job) in std::mem::take(&mut self.jobs) {
            job.task.abort();
        }
        self.running.lock().expect("running map").clear();
    }
}

/// A kept connection closing sooner than this after its check triggers a check only this long
/// after it, and not at all twice in a row.
const MIN_WATCH_AGE: Duration = Duration::from_secs(1);

/// interval × (1 ± jitter), at random.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return interval;
    }
    let f = rand::thread_rng().gen_range(-jitter..=jitter);
    interval.mul_f64(1.0 + f)
}

async fn target_loop(
    target: Arc<str>,
    spec: Arc<CheckSpec>,
    spread: Duration,
    vantage: Arc<str>,
    checker: Arc<Checker>,
    sem: Arc<Semaphore>,
    reports: mpsc::Sender<ProbeReport>,
) {
    let timing = spec.timing;
    // Spread the first checks so a thousand targets do not start together.
    let offset = timing
        .interval
        .min(spread)
        .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    let mut next = tokio::time::Instant::now() + offset;
    let mut failing = false;
    let run = |checker: Arc<Checker>, sem: Arc<Semaphore>| {
        let target = target.clone();
        let spec = spec.clone();
        async move {
            let _permit = sem.acquire_owned().await.ok();
            checker.run_watch(&target, &spec).await
        }
    };
    let send = |run: RunResult, kind: RunKind, confirmed_down: bool| {
        let report = ProbeReport {
            vantage: vantage.clone(),
            run,
            kind,
            confirmed_down,
        };
        let reports = reports.clone();
        async move { reports.send(report).await.is_ok() }
    };
    let mut watch: Option<check::Watch> = None;
    let mut young_closes = 0u32;
    loop {
        // Wait for the next check, or for the kept connection to close: an edge that died.
        let early = match watch.as_mut() {
            None => {
                tokio::time::sleep_until(next).await;
                false
            }
            Some(w) => tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    young_closes = 0;
                    false
                }
                _ = w.closed() => {
                    let age = w.age();
                    if age >= MIN_WATCH_AGE {
                        young_closes = 0;
                        true
                    } else if young_closes == 0 {
                        // Closed soon after the check: check again one second after it.
                        young_closes += 1;
                        tokio::time::sleep(MIN_WATCH_AGE - age).await;
                        true
                    } else {
                        // Twice in a row: an edge that drops idle connections at once is no
                        // signal; rely on the interval.
                        tokio::time::sleep_until(next).await;
                        false
                    }
                }
            },
        };
        watch = None;
        if early {
            debug!(target_name = %target, "connection closed by the target: checking now");
        }
        let (result, w) = run(checker.clone(), sem.clone()).await;
        let ok = result.ok();
        let first_failure = !ok && !failing;
        if first_failure {
            info!(
                target_name = %target,
                "check failed ({} re-checks to confirm): {}",
                timing.confirm,
                result.summary()
            );
        }
        if !send(
            result,
            RunKind::Scheduled,
            first_failure && timing.confirm == 0,
        )
        .await
        {
            return;
        }
        failing = !ok;
        if timing.watch {
            watch = w;
        }
        if first_failure && timing.confirm > 0 {
            // Confirmation burst: re-check now; one success ends it (a transient failure).
            for n in 1..=timing.confirm {
                tokio::time::sleep(timing.confirm_gap).await;
                let (r, w) = run(checker.clone(), sem.clone()).await;
                let rok = r.ok();
                let confirmed = !rok && n == timing.confirm;
                if confirmed {
                    warn!(
                        target_name = %target,
                        "confirmed down after {} re-checks: {}",
                        timing.confirm,
                        r.summary()
                    );
                }
                if !send(
                    r,
                    RunKind::Confirm {
                        n,
                        of: timing.confirm,
                    },
                    confirmed,
                )
                .await
                {
                    return;
                }
                if rok {
                    failing = false;
                    if timing.watch {
                        watch = w;
                    }
                    break;
                }
            }
        }
        let now = tokio::time::Instant::now();
        if early {
            // An extra check: the schedule starts again from now.
            next = now + jittered(timing.interval, timing.jitter);
        } else {
            next += jittered(timing.interval, timing.jitter);
            if next < now {
                next = now + jittered(timing.interval, timing.jitter);
            }
        }
    }
}

/// Run every job of `plan` once, `plan.concurrency` at a time; results in plan order.
pub async fn run_once(plan: &ProbePlan) -> Vec<RunResult> {
    let checker = Arc::new(Checker::new());
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = Vec::new();
    for (name, spec) in &plan.jobs {
        let (checker, sem, name, spec) = (checker.clone(), sem.clone(), name.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            checker.run(&name, &spec).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
}

/// A table of runs: one row per target and level.
pub fn format_table(runs: &[RunResult]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "TARGET".into(),
        "LEVEL".into(),
        "STATE".into(),
        "LATENCY".into(),
        "DETAIL".into(),
    ]];
    for r in runs {
        for l in &r.levels {
            let latency = if l.outcome == Outcome::NotReached {
                "-".to_string()
            } else {
                fmt_ms(l.latency)
            };
            rows.push([
                r.target.to_string(),
                l.level.to_string(),
                l.outcome.as_str().to_string(),
                latency,
                l.detail.clone(),
            ]);
        }
        rows.push([
            r.target.to_string(),
            "check".into(),
            if r.ok() { "ok" } else { "FAIL" }.into(),
            fmt_ms(r.total),
            r.summary(),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < 4 {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            } else {
                out.push_str(cell);
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

fn fmt_ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}
