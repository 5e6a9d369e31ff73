//! One run of a check: its levels' results as they are recorded (the levels above a failure
//! not reached), its time budget, and what it tells (summary, observations).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::local::LocalError;
use crate::config::check::CheckSpec;
use crate::health::{CacheObservation, Level, Observation};

/// The result of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Passed, with something the operator should know (a certificate close to expiry).
    Warn,
    Fail,
    /// A level below failed, so this one did not run.
    NotReached,
    /// Not run for a local reason: says nothing about the target.
    Local(LocalError),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::NotReached => "not reached",
            Outcome::Local(_) => "local error",
        }
    }
    pub fn passed(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Warn)
    }
}

#[derive(Debug, Clone)]
pub struct LevelResult {
    pub level: Level,
    pub outcome: Outcome,
    pub latency: Duration,
    pub detail: String,
    pub cache: Option<CacheObservation>,
}

/// Everything one run found.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub target: Arc<str>,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_ms: u64,
    /// The same start on the monotonic clock (health time is derived from it).
    pub started: Instant,
    pub total: Duration,
    pub levels: Vec<LevelResult>,
}

impl RunResult {
    /// Every level that ran passed (a local error is no pass).
    pub fn ok(&self) -> bool {
        self.levels
            .iter()
            .all(|l| !matches!(l.outcome, Outcome::Fail | Outcome::Local(_)))
    }

    /// The level that failed, if any.
    pub fn failure(&self) -> Option<&LevelResult> {
        self.levels.iter().find(|l| l.outcome == Outcome::Fail)
    }

    /// The level that could not run for a local reason, and that reason.
    pub fn local_error(&self) -> Option<(&LevelResult, LocalError)> {
        self.levels.iter().find_map(|l| match l.outcome {
            Outcome::Local(e) => Some((l, e)),
            _ => None,
        })
    }

    /// One-line summary: "ok", "tcp: connection refused" or "tcp: local error: …".
    pub fn summary(&self) -> String {
        if let Some((l, _)) = self.local_error() {
            return format!("{}: local error: {}", l.level, l.detail);
        }
        match self.failure() {
            Some(f) => format!("{}: {}", f.level, f.detail),
            None => "ok".into(),
        }
    }

    /// Observations for the health windows: one per level that ran, plus the run's verdict
    /// (level `check`, latency = the whole run). Levels not reached are not observations. A run
    /// with a local error gives only the levels that passed before it, and no verdict.
    pub fn observations(&self, vantage: &Arc<str>) -> Vec<Observation> {
        let local = self.local_error().is_some();
        let mut out: Vec<Observation> = self
            .levels
            .iter()
            .take_while(|l| !matches!(l.outcome, Outcome::Local(_)))
            .filter(|l| l.outcome != Outcome::NotReached)
            .map(|l| Observation {
                target: self.target.clone(),
                level: l.level,
                vantage: vantage.clone(),
                at_ms: self.started_ms,
                ok: l.outcome.passed(),
                latency: l.latency,
                detail: l.detail.clone(),
                cache: l.cache.clone(),
            })
            .collect();
        if local {
            return out;
        }
        out.push(Observation {
            target: self.target.clone(),
            level: Level::Check,
            vantage: vantage.clone(),
            at_ms: self.started_ms,
            ok: self.ok(),
            latency: self.total,
            detail: self.summary(),
            cache: self.levels.iter().find_map(|l| l.cache.clone()),
        });
        out
    }

    /// A heartbeat on the kept connection that got no answer within the check's timeout: a
    /// failure of the http level (the levels below it were not run again).
    pub fn unanswered_beat(
        target: &Arc<str>,
        spec: &CheckSpec,
        started_ms: u64,
        total: Duration,
    ) -> RunResult {
        let path = spec.http.as_ref().map_or("/", |h| h.path.as_str());
        let mut run = Run::new(spec);
        run.fail(
            Level::Http,
            total,
            format!(
                "no answer to a heartbeat (HEAD {path}) on the kept connection within {:.1} s \
                 (check timeout)",
                spec.timing.timeout.as_secs_f64()
            ),
        );
        RunResult {
            target: target.clone(),
            started_ms,
            started: Instant::now()
                .checked_sub(total)
                .unwrap_or_else(Instant::now),
            total,
            levels: run.levels,
        }
    }
}

/// A latency as the tables and details show it: "3.2 ms", "140 ms".
pub(super) fn fmt_ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}

/// How long a run may take: until `deadline`, `allotted` after its start; `timeout` is the
/// check's (a confirmation re-check may be allotted less, see `super::task`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    pub allotted: Duration,
}

impl Budget {
    fn timed_out(&self) -> String {
        if self.allotted + Duration::from_millis(1) < self.timeout {
            format!(
                "timed out (no answer in {:.2} s, after the first failure's {:.1} s check timeout)",
                self.allotted.as_secs_f64(),
                self.timeout.as_secs_f64()
            )
        } else {
            format!(
                "timed out (check timeout {:.1} s)",
                self.timeout.as_secs_f64()
            )
        }
    }

    /// Run `fut` until the deadline; Err(detail) on timeout.
    pub async fn until<T>(self, fut: impl Future<Output = T>) -> Result<T, String> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| self.timed_out())
    }

    /// Run `fut` until the deadline: its error as `why` tells it, a timeout as the budget does.
    pub async fn within<T, E>(
        self,
        fut: impl Future<Output = Result<T, E>>,
        why: impl FnOnce(E) -> Failure,
    ) -> Result<T, Failure> {
        self.until(fut).await?.map_err(why)
    }
}

/// Why a level failed, and whether the cause is local (then it is no failure of the target).
pub(super) struct Failure {
    pub detail: String,
    pub local: Option<LocalError>,
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Failure {
            detail,
            local: None,
        }
    }
}

/// Where the check is: results so far and the levels still to run.
pub(super) struct Run<'a> {
    pub spec: &'a CheckSpec,
    pub levels: Vec<LevelResult>,
}

impl<'a> Run<'a> {
    pub fn new(spec: &'a CheckSpec) -> Self {
        Run {
            spec,
            levels: Vec::with_capacity(spec.levels.len()),
        }
    }

    pub fn push(&mut self, level: Level, outcome: Outcome, latency: Duration, detail: String) {
        self.levels.push(LevelResult {
            level,
            outcome,
            latency,
            detail,
            cache: None,
        });
    }

    /// Record a failure of `level` and mark every later level not reached.
    pub fn fail(&mut self, level: Level, latency: Duration, detail: String) {
        self.push(level, Outcome::Fail, latency, detail);
        self.not_reached(level, "failed");
    }

    /// Record `f`: a failure of `level`, or a local error when that is its cause.
    pub fn failed(&mut self, level: Level, latency: Duration, f: Failure) {
        match f.local {
            None => self.fail(level, latency, f.detail),
            Some(e) => {
                let detail = format!("{} ({}: not a failure of the target)", f.detail, e.name());
                self.push(level, Outcome::Local(e), latency, detail);
                self.not_reached(level, "had a local error");
            }
        }
    }

    /// The value of a step of `level` begun at `t`; on its failure, None once it is recorded.
    pub fn step<T>(&mut self, level: Level, t: Instant, r: Result<T, Failure>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(f) => {
                self.failed(level, t.elapsed(), f);
                None
            }
        }
    }

    fn not_reached(&mut self, level: Level, why: &str) {
        for l in self.spec.levels.iter().filter(|l| **l > level) {
            self.levels.push(LevelResult {
                level: *l,
                outcome: Outcome::NotReached,
                latency: Duration::ZERO,
                detail: format!("{level} {why}"),
                cache: None,
            });
        }
    }
}
