//! One target's checks: the schedule (interval ± jitter), the kept connection and its
//! heartbeats, and the rounds of confirmation after a failure or a run gone unanswered.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::check::Checker;
use super::local::ProbeMetrics;
use super::plan::{ProbeReport, RunKind};
use super::run::RunResult;
use super::watch::{Beat, Watch};
use crate::clock::wall_ms;
use crate::config::check::CheckSpec;

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
        watch: Option<Watch>,
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
    Passed(Option<Watch>),
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
type Rechecked = (u32, RunResult, Option<Watch>);

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
pub(super) struct Task {
    target: Arc<str>,
    spec: Arc<CheckSpec>,
    shared: Shared,
    /// Latencies of passing checks (fresh connections).
    checks: Recent,
    /// Latencies of answered heartbeats (the kept connection).
    beats: Recent,
}

/// Whether a report confirms its target down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not (yet): a pass, a first failure with re-checks to come, a re-check before the last.
    Open,
    /// Every run of the round failed: the target is confirmed down.
    ConfirmedDown,
}

impl Verdict {
    fn of(confirmed: bool) -> Self {
        if confirmed {
            Verdict::ConfirmedDown
        } else {
            Verdict::Open
        }
    }
}

/// What the tasks of a plan share: the vantage point's name, the checker, the concurrency
/// limit, the reports' channel and the prober's metrics.
#[derive(Clone)]
pub(super) struct Shared {
    pub vantage: Arc<str>,
    pub checker: Arc<Checker>,
    pub sem: Arc<Semaphore>,
    pub reports: mpsc::Sender<ProbeReport>,
    pub metrics: Arc<ProbeMetrics>,
}

impl Task {
    pub(super) fn new(target: Arc<str>, spec: Arc<CheckSpec>, shared: Shared) -> Self {
        Self {
            target,
            spec,
            shared,
            checks: Recent::default(),
            beats: Recent::default(),
        }
    }

    async fn send(&self, run: RunResult, kind: RunKind, verdict: Verdict) -> bool {
        if let Some((l, e)) = run.local_error() {
            self.shared
                .metrics
                .local_error(&self.target, l.level.as_str(), e, &l.detail);
        }
        let report = ProbeReport {
            vantage: self.shared.vantage.clone(),
            run,
            kind,
            confirmed_down: verdict == Verdict::ConfirmedDown,
        };
        self.shared.reports.send(report).await.is_ok()
    }

    /// A check on a fresh connection (within the concurrency limit).
    fn check(&self) -> FirstRun {
        let (checker, sem) = (self.shared.checker.clone(), self.shared.sem.clone());
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
    fn beat(&self, mut w: Watch) -> FirstRun {
        let (target, spec) = (self.target.clone(), self.spec.clone());
        Box::pin(async move {
            let Some(http) = spec.http.as_ref() else {
                return First::Lost;
            };
            let started_ms = wall_ms();
            let t0 = tokio::time::Instant::now();
            match w.beat(http, t0 + spec.timing.timeout).await {
                Beat::Answered { latency, closing } => First::Passed {
                    run: None,
                    watch: (!closing).then_some(w),
                    beat: Some(latency),
                },
                Beat::Lost(why) => {
                    debug!(target_name = %target, "heartbeat: {why}");
                    First::Lost
                }
                Beat::TimedOut => First::Failed(RunResult::unanswered_beat(
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
                return if self.send(run, RunKind::Scheduled, Verdict::Open).await {
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
                if !self
                    .send(run, RunKind::Scheduled, Verdict::of(confirmed))
                    .await
                {
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
                self.shared.checker.clone(),
                self.shared.sem.clone(),
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
                    if !self.send(run, RunKind::Scheduled, Verdict::Open).await
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
                    if !self.send(run, RunKind::Scheduled, Verdict::Open).await {
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
                if !self.send(run, kind, Verdict::of(confirmed)).await {
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
                if !self.send(run, kind, Verdict::Open).await {
                    return false;
                }
            }
        }
        true
    }

    async fn passed(
        &mut self,
        run: Option<RunResult>,
        watch: Option<Watch>,
        beat: Option<Duration>,
    ) -> RoundEnd {
        if let Some(b) = beat {
            self.beats.push(b);
        }
        if let Some(run) = run {
            self.checks.push(run.total);
            if !self.send(run, RunKind::Scheduled, Verdict::Open).await {
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

    pub(super) async fn run(mut self, spread: Duration) {
        let timing = self.spec.timing;
        // Spread the first checks so a thousand targets do not start together.
        let offset = timing
            .interval
            .min(spread)
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        let mut next = tokio::time::Instant::now() + offset;
        let mut failing = false;
        let mut watch: Option<Watch> = None;
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
