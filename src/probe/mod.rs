//! The prober: multi-level health checks of every target that has a `[targets.check]`.
//!
//! Checks run on a thread of their own (a single-threaded tokio runtime), never on the DNS
//! listeners' threads or the runtime that serves DNS over TCP. Each target has one task that
//! waits interval × (1 ± jitter), takes a permit of the global concurrency limit and runs its
//! levels with the check's timeout. A passing check's connection is kept (`watch`): its closing
//! triggers a check at once (an edge that died), and a heartbeat (`HEAD` of the check's path,
//! every `heartbeat`) asks on it whether the edge still answers (an edge that hangs keeps its
//! connections open and answers nothing).
//!
//! Confirmation: after a first failure — or as soon as a check or heartbeat has gone
//! unanswered for [`PATIENCE_FACTOR`] × the target's usual latency (at least
//! [`SUSPECT_FLOOR`]) — it re-checks `confirm` times on fresh connections, `confirm_gap` apart,
//! concurrently. The failure is confirmed when the first run failed (refused, reset, or no
//! answer within the whole timeout) and every re-check failed; one answer ends the round. A
//! target that answers within its timeout is therefore never confirmed down, however slow it
//! is next to its usual latency; a dead edge is confirmed in about 0.3 s and a hung one about
//! one timeout after the first unanswered request.
//!
//! A run that could not be made for a local reason ([`local::LocalError`]: descriptors,
//! buffers, memory, ports of this machine) is reported but is no observation of the target.
//!
//! Results leave as [`ProbeReport`]s on a channel; the health module turns them into windows.
//!
//! A new plan ([`Prober::apply`]) stops the tasks of removed or changed checks before it
//! returns: no check outlives its configuration.

pub mod cache;
pub mod check;
pub mod local;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

pub use check::{Checker, LevelResult, Outcome, RunResult};
pub use local::{LocalError, ProbeMetrics};

use crate::config::ValidConfig;
use crate::config::check::CheckSpec;

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Scheduled,
    /// Re-check `n` of `of` after a first failure (or a run without an answer for long).
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
    metrics: Arc<ProbeMetrics>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Start probing `plan` on a new thread; reports go to `reports`. The checks are running
    /// when this returns.
    pub fn start(plan: ProbePlan, reports: mpsc::Sender<ProbeReport>) -> std::io::Result<Self> {
        let (cmd, mut rx) = mpsc::unbounded_channel();
        let running = Arc::new(Mutex::new(BTreeMap::new()));
        let running2 = running.clone();
        let metrics = Arc::new(ProbeMetrics::new());
        let metrics2 = metrics.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("steerd-probe")
            .build()?;
        let thread = std::thread::Builder::new()
            .name("steerd-probe".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut sched = Scheduler::new(reports, running2, metrics2);
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
            metrics,
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

    /// The prober's own metrics (local errors).
    pub fn metrics(&self) -> Arc<ProbeMetrics> {
        self.metrics.clone()
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
    metrics: Arc<ProbeMetrics>,
}

impl Scheduler {
    fn new(
        reports: mpsc::Sender<ProbeReport>,
        running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
        metrics: Arc<ProbeMetrics>,
    ) -> Self {
        Self {
            reports,
            checker: Arc::new(Checker::new()),
            sem: Arc::new(Semaphore::new(1)),
            concurrency: 0,
            vantage: Arc::from("local"),
            jobs: BTreeMap::new(),
            running,
            metrics,
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
            let task = Task {
                target: name.clone(),
                spec: spec.clone(),
                vantage: self.vantage.clone(),
                checker: self.checker.clone(),
                sem: self.sem.clone(),
                reports: self.reports.clone(),
                metrics: self.metrics.clone(),
                checks: Recent::default(),
                beats: Recent::default(),
            };
            let task = tokio::spawn(task.run(spread));
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

/// A check or heartbeat still unanswered after this many times the target's usual latency (the
/// largest of its last [`RECENT`] answers) is suspect: the confirmation re-checks start at once,
/// on fresh connections, while it waits out its timeout.
const PATIENCE_FACTOR: u32 = 4;
/// ... but not before this.
const SUSPECT_FLOOR: Duration = Duration::from_millis(250);
/// A re-check without an answer fails once the first failure's timeout is over and it has
/// waited [`PATIENCE_FACTOR`] × the usual latency of a check, and at least this long (at most
/// the check's timeout).
const RECHECK_FLOOR: Duration = Duration::from_millis(500);
/// Answers remembered per target for its usual latency.
const RECENT: usize = 8;

/// interval × (1 ± jitter), at random.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return interval;
    }
    let f = rand::thread_rng().gen_range(-jitter..=jitter);
    interval.mul_f64(1.0 + f)
}

/// The latencies of a target's last few answers.
#[derive(Default)]
struct Recent(std::collections::VecDeque<Duration>);

impl Recent {
    fn push(&mut self, d: Duration) {
        if self.0.len() == RECENT {
            self.0.pop_front();
        }
        self.0.push_back(d);
    }
    fn max(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

/// How long to wait for an answer before acting on its absence: [`PATIENCE_FACTOR`] × `usual`,
/// within [`floor`, `timeout`]; the whole timeout while the usual latency is unknown.
fn patience(usual: Option<Duration>, floor: Duration, timeout: Duration) -> Duration {
    match usual {
        None => timeout,
        Some(u) => (u * PATIENCE_FACTOR).max(floor).min(timeout),
    }
}

/// How the first run of a round ended.
enum First {
    /// It passed. `run` is None for a heartbeat (no observation); `beat` is its latency.
    Passed {
        run: Option<RunResult>,
        watch: Option<check::Watch>,
        beat: Option<Duration>,
    },
    /// A failure of the target: a failed check or a heartbeat unanswered within the timeout.
    Failed(RunResult),
    /// A check that could not run for a local reason.
    Local(RunResult),
    /// A heartbeat's connection closed or failed.
    Lost,
}

type FirstRun = std::pin::Pin<Box<dyn std::future::Future<Output = First> + Send>>;

/// How a round ended.
enum RoundEnd {
    Passed(Option<check::Watch>),
    /// A failure; `confirmed` when the round confirmed it (or the target was already down).
    Failed {
        confirmed: bool,
    },
    Local,
    /// A heartbeat found the kept connection closed before anything else happened.
    Lost,
    /// The report channel is closed: stop.
    Stop,
}

/// A finished re-check: its number, result and kept connection.
type Rechecked = (u32, RunResult, Option<check::Watch>);

/// A confirmation re-check: starts at `at`, gets at least `min_wait` and at least until the
/// first failure's timeout is over (`first_deadline`), at most the check's timeout.
#[allow(clippy::too_many_arguments)]
async fn recheck(
    n: u32,
    at: tokio::time::Instant,
    min_wait: Duration,
    first_deadline: tokio::time::Instant,
    checker: Arc<Checker>,
    sem: Arc<Semaphore>,
    target: Arc<str>,
    spec: Arc<CheckSpec>,
) -> Rechecked {
    tokio::time::sleep_until(at).await;
    let _permit = sem.acquire_owned().await.ok();
    let start = tokio::time::Instant::now();
    let deadline = (start + min_wait)
        .max(first_deadline)
        .min(start + spec.timing.timeout);
    let (r, w) = checker.run_watch_until(&target, &spec, deadline).await;
    (n, r, w)
}

/// One target's checks: the schedule, the kept connection and its heartbeats, and the rounds
/// of confirmation.
struct Task {
    target: Arc<str>,
    spec: Arc<CheckSpec>,
    vantage: Arc<str>,
    checker: Arc<Checker>,
    sem: Arc<Semaphore>,
    reports: mpsc::Sender<ProbeReport>,
    metrics: Arc<ProbeMetrics>,
    /// Latencies of passing checks (fresh connections).
    checks: Recent,
    /// Latencies of answered heartbeats (the kept connection).
    beats: Recent,
}

impl Task {
    async fn send(&self, run: RunResult, kind: RunKind, confirmed_down: bool) -> bool {
        if let Some((l, e)) = run.local_error() {
            self.metrics
                .local_error(&self.target, l.level.as_str(), e, &l.detail);
        }
        let report = ProbeReport {
            vantage: self.vantage.clone(),
            run,
            kind,
            confirmed_down,
        };
        self.reports.send(report).await.is_ok()
    }

    /// A check on a fresh connection (within the concurrency limit).
    fn check(&self) -> FirstRun {
        let (checker, sem) = (self.checker.clone(), self.sem.clone());
        let (target, spec) = (self.target.clone(), self.spec.clone());
        Box::pin(async move {
            let _permit = sem.acquire_owned().await.ok();
            let (run, watch) = checker.run_watch(&target, &spec).await;
            if run.local_error().is_some() {
                First::Local(run)
            } else if run.ok() {
                First::Passed {
                    run: Some(run),
                    watch,
                    beat: None,
                }
            } else {
                First::Failed(run)
            }
        })
    }

    /// A heartbeat on the kept connection `w`.
    fn beat(&self, mut w: check::Watch) -> FirstRun {
        let (target, spec) = (self.target.clone(), self.spec.clone());
        Box::pin(async move {
            let Some(http) = spec.http.as_ref() else {
                return First::Lost;
            };
            let started_ms = check::now_ms();
            let t0 = tokio::time::Instant::now();
            match w.beat(http, t0 + spec.timing.timeout).await {
                check::Beat::Answered { latency, closing } => First::Passed {
                    run: None,
                    watch: (!closing).then_some(w),
                    beat: Some(latency),
                },
                check::Beat::Lost(why) => {
                    debug!(target_name = %target, "heartbeat: {why}");
                    First::Lost
                }
                check::Beat::TimedOut => First::Failed(RunResult::unanswered_beat(
                    &target,
                    &spec,
                    started_ms,
                    t0.elapsed(),
                )),
            }
        })
    }

    /// Run `first`; when it fails, or has no answer after `suspect_after`, re-check `confirm`
    /// times on fresh connections, `confirm_gap` apart and concurrently (each waiting for its
    /// own answer, not for the one before). The failure is confirmed when the first run and
    /// every re-check failed; one success ends the round. `confirm` None: the target is already
    /// down, no round, and the failure is not confirmed again.
    async fn round(
        &mut self,
        mut first: FirstRun,
        suspect_after: Duration,
        confirm: Option<u32>,
    ) -> RoundEnd {
        let timing = self.spec.timing;
        let first_deadline = tokio::time::Instant::now() + timing.timeout;
        let n = confirm.unwrap_or(0);
        let early = if n == 0 {
            Some((&mut first).await)
        } else {
            tokio::select! {
                o = &mut first => Some(o),
                _ = tokio::time::sleep(suspect_after) => None,
            }
        };
        let mut first_pending = true;
        match early {
            Some(First::Passed { run, watch, beat }) => {
                return self.passed(run, watch, beat).await;
            }
            Some(First::Local(run)) => {
                return if self.send(run, RunKind::Scheduled, false).await {
                    RoundEnd::Local
                } else {
                    RoundEnd::Stop
                };
            }
            Some(First::Lost) => return RoundEnd::Lost,
            Some(First::Failed(run)) => {
                if confirm.is_some() {
                    info!(
                        target_name = %self.target,
                        "check failed ({n} re-checks to confirm): {}",
                        run.summary()
                    );
                }
                let confirmed = confirm == Some(0);
                if !self.send(run, RunKind::Scheduled, confirmed).await {
                    return RoundEnd::Stop;
                }
                if n == 0 {
                    return RoundEnd::Failed {
                        confirmed: confirm.is_none() || confirmed,
                    };
                }
                first_pending = false;
            }
            None => debug!(
                target_name = %self.target,
                "no answer after {suspect_after:?}: re-checking on fresh connections"
            ),
        }

        // The re-checks, `confirm_gap` apart, each on its own connection.
        let base = tokio::time::Instant::now();
        let min_wait = patience(self.checks.max(), RECHECK_FLOOR, timing.timeout);
        let mut set = tokio::task::JoinSet::new();
        for i in 1..=n {
            set.spawn(recheck(
                i,
                base + timing.confirm_gap * i,
                min_wait,
                first_deadline,
                self.checker.clone(),
                self.sem.clone(),
                self.target.clone(),
                self.spec.clone(),
            ));
        }
        // Reports go out in order: the first run's, then re-check 1, 2, ...
        let mut done: Vec<Option<RunResult>> = (0..n).map(|_| None).collect();
        let mut sent = 0usize;
        let mut local = false;
        enum Ev {
            First(First),
            Re(Option<Result<Rechecked, tokio::task::JoinError>>),
        }
        loop {
            let ev = tokio::select! {
                o = async {
                    if first_pending {
                        (&mut first).await
                    } else {
                        std::future::pending().await
                    }
                } => Ev::First(o),
                j = set.join_next(), if !set.is_empty() => Ev::Re(j),
            };
            match ev {
                Ev::First(First::Passed { run, watch, beat }) => {
                    // Answered after all, within the timeout: no failure. The re-checks
                    // stop; those done are reported.
                    set.abort_all();
                    if !self.send_done(&mut done, sent).await {
                        return RoundEnd::Stop;
                    }
                    return self.passed(run, watch, beat).await;
                }
                Ev::First(First::Local(run)) => {
                    set.abort_all();
                    if !self.send(run, RunKind::Scheduled, false).await
                        || !self.send_done(&mut done, sent).await
                    {
                        return RoundEnd::Stop;
                    }
                    return RoundEnd::Local;
                }
                Ev::First(First::Failed(run)) => {
                    first_pending = false;
                    info!(
                        target_name = %self.target,
                        "check failed ({n} re-checks to confirm): {}",
                        run.summary()
                    );
                    if !self.send(run, RunKind::Scheduled, false).await {
                        return RoundEnd::Stop;
                    }
                }
                Ev::First(First::Lost) => first_pending = false,
                Ev::Re(Some(Ok((i, run, watch)))) => {
                    let ok = run.ok();
                    local |= run.local_error().is_some();
                    if ok {
                        self.checks.push(run.total);
                    }
                    done[i as usize - 1] = Some(run);
                    if ok {
                        // A transient failure. A first run still out (a kept connection that
                        // hangs while fresh ones are answered) is dropped unreported.
                        set.abort_all();
                        if !self.send_done(&mut done, sent).await {
                            return RoundEnd::Stop;
                        }
                        return RoundEnd::Passed(watch);
                    }
                }
                Ev::Re(Some(Err(e))) => {
                    warn!(target_name = %self.target, "re-check task failed: {e}");
                    local = true;
                }
                Ev::Re(None) => {}
            }
            if first_pending {
                continue;
            }
            // Send what is in order; the last report carries the verdict.
            while sent < n as usize {
                let Some(run) = done[sent].take() else {
                    break;
                };
                sent += 1;
                let last = sent == n as usize;
                let confirmed = last && !local;
                if confirmed {
                    warn!(
                        target_name = %self.target,
                        "confirmed down after {n} re-checks: {}",
                        run.summary()
                    );
                }
                let kind = RunKind::Confirm {
                    n: sent as u32,
                    of: n,
                };
                if !self.send(run, kind, confirmed).await {
                    return RoundEnd::Stop;
                }
                if last {
                    return RoundEnd::Failed { confirmed };
                }
            }
            if set.is_empty() && sent < n as usize {
                // A re-check task that died: no verdict.
                if !self.send_done(&mut done, sent).await {
                    return RoundEnd::Stop;
                }
                return RoundEnd::Failed { confirmed: false };
            }
        }
    }

    /// Report the re-checks that are done and not yet reported (after a success), in order.
    async fn send_done(&self, done: &mut [Option<RunResult>], sent: usize) -> bool {
        let of = done.len() as u32;
        for (i, d) in done.iter_mut().enumerate().skip(sent) {
            if let Some(run) = d.take() {
                let kind = RunKind::Confirm {
                    n: i as u32 + 1,
                    of,
                };
                if !self.send(run, kind, false).await {
                    return false;
                }
            }
        }
        true
    }

    async fn passed(
        &mut self,
        run: Option<RunResult>,
        watch: Option<check::Watch>,
        beat: Option<Duration>,
    ) -> RoundEnd {
        if let Some(b) = beat {
            self.beats.push(b);
        }
        if let Some(run) = run {
            self.checks.push(run.total);
            if !self.send(run, RunKind::Scheduled, false).await {
                return RoundEnd::Stop;
            }
        }
        RoundEnd::Passed(watch)
    }

    /// A check now, with its round.
    async fn check_round(&mut self, failing: bool) -> RoundEnd {
        let timing = self.spec.timing;
        let suspect = patience(self.checks.max(), SUSPECT_FLOOR, timing.timeout);
        let first = self.check();
        self.round(first, suspect, (!failing).then_some(timing.confirm))
            .await
    }

    async fn run(mut self, spread: Duration) {
        let timing = self.spec.timing;
        // Spread the first checks so a thousand targets do not start together.
        let offset = timing
            .interval
            .min(spread)
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        let mut next = tokio::time::Instant::now() + offset;
        let mut failing = false;
        let mut watch: Option<check::Watch> = None;
        let mut next_beat: Option<tokio::time::Instant> = None;
        let beat_every = if timing.watch {
            timing.heartbeat
        } else {
            Duration::ZERO
        };
        let mut young_closes = 0u32;
        #[derive(PartialEq)]
        enum Wake {
            Scheduled,
            Closed,
            Beat,
        }
        loop {
            // Wait for the next check, the next heartbeat, or the kept connection to close (an
            // edge that died).
            let wake = match watch.as_mut() {
                None => {
                    tokio::time::sleep_until(next).await;
                    Wake::Scheduled
                }
                Some(w) => {
                    let beat_at = next_beat.filter(|_| w.can_beat() && !beat_every.is_zero());
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {
                            young_closes = 0;
                            Wake::Scheduled
                        }
                        _ = async {
                            match beat_at {
                                Some(t) => tokio::time::sleep_until(t).await,
                                None => std::future::pending().await,
                            }
                        } => Wake::Beat,
                        _ = w.closed() => {
                            let age = w.age();
                            if age >= MIN_WATCH_AGE {
                                young_closes = 0;
                                Wake::Closed
                            } else if young_closes == 0 {
                                // Closed soon after the check: check again one second after it.
                                young_closes += 1;
                                tokio::time::sleep(MIN_WATCH_AGE - age).await;
                                Wake::Closed
                            } else {
                                // Twice in a row: an edge that drops idle connections at once
                                // is no signal; rely on the interval.
                                tokio::time::sleep_until(next).await;
                                Wake::Scheduled
                            }
                        }
                    }
                }
            };
            let mut early = wake == Wake::Closed;
            let end = if wake == Wake::Beat {
                let w = watch.take().expect("a heartbeat needs the kept connection");
                let suspect = patience(
                    self.beats.max().or(self.checks.max()),
                    SUSPECT_FLOOR,
                    timing.timeout,
                );
                let first = self.beat(w);
                match self.round(first, suspect, Some(timing.confirm)).await {
                    RoundEnd::Lost => {
                        debug!(target_name = %self.target, "kept connection lost: checking now");
                        early = true;
                        self.check_round(failing).await
                    }
                    end => end,
                }
            } else {
                watch = None;
                if early {
                    debug!(target_name = %self.target, "connection closed by the target: checking now");
                }
                self.check_round(failing).await
            };
            let now = tokio::time::Instant::now();
            match end {
                RoundEnd::Stop => return,
                RoundEnd::Passed(w) => {
                    failing = false;
                    watch = if timing.watch { w } else { None };
                }
                RoundEnd::Failed { confirmed } => failing = confirmed,
                RoundEnd::Local | RoundEnd::Lost => {}
            }
            next_beat = watch.as_ref().map(|_| now + beat_every);
            if wake == Wake::Beat && !early {
                // Heartbeats leave the schedule alone.
                if next <= now {
                    next = now + jittered(timing.interval, timing.jitter);
                }
            } else if early {
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
        let state = if r.ok() {
            "ok"
        } else if r.local_error().is_some() {
            "local error"
        } else {
            "FAIL"
        };
        rows.push([
            r.target.to_string(),
            "check".into(),
            state.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn patience_is_a_multiple_of_the_usual_latency_within_floor_and_timeout() {
        let timeout = 2000 * MS;
        // Unknown latency: the whole timeout (nothing is suspect before it).
        assert_eq!(patience(None, SUSPECT_FLOOR, timeout), timeout);
        // A fast target: the floor.
        assert_eq!(
            patience(Some(2 * MS), SUSPECT_FLOOR, timeout),
            SUSPECT_FLOOR
        );
        // 4 × its usual latency.
        assert_eq!(patience(Some(100 * MS), SUSPECT_FLOOR, timeout), 400 * MS);
        // A slow target: at most the timeout.
        assert_eq!(patience(Some(900 * MS), SUSPECT_FLOOR, timeout), timeout);
        // A floor above a short timeout gives way to it.
        assert_eq!(patience(Some(MS), RECHECK_FLOOR, 300 * MS), 300 * MS);
    }

    #[test]
    fn usual_latency_is_the_largest_of_the_last_answers() {
        let mut r = Recent::default();
        assert_eq!(r.max(), None);
        r.push(50 * MS);
        for _ in 0..RECENT - 1 {
            r.push(MS);
        }
        assert_eq!(r.max(), Some(50 * MS));
        // One more answer pushes the slow one out.
        r.push(2 * MS);
        assert_eq!(r.max(), Some(2 * MS));
    }
}
