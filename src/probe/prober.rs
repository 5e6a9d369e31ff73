//! The running prober: a thread of its own with a single-threaded runtime, and the plan in
//! force — one task per target, started, kept or stopped as plans change.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use super::check::Checker;
use super::local::ProbeMetrics;
use super::plan::{ProbePlan, ProbeReport};
use super::task::{Shared, Task};
use crate::config::check::CheckSpec;

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
        self.running.lock().keys().map(|k| k.to_string()).collect()
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
    /// What the plan's tasks share (its semaphore allows `concurrency` runs at a time).
    shared: Shared,
    concurrency: usize,
    jobs: BTreeMap<Arc<str>, Job>,
    running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
}

impl Scheduler {
    fn new(
        reports: mpsc::Sender<ProbeReport>,
        running: Arc<Mutex<BTreeMap<Arc<str>, Arc<CheckSpec>>>>,
        metrics: Arc<ProbeMetrics>,
    ) -> Self {
        Self {
            shared: Shared {
                vantage: Arc::from("local"),
                checker: Arc::new(Checker::new()),
                sem: Arc::new(Semaphore::new(1)),
                reports,
                metrics,
            },
            concurrency: 0,
            jobs: BTreeMap::new(),
            running,
        }
    }

    fn apply(&mut self, plan: ProbePlan) {
        // A new limit or vantage name restarts everything (rare: an operator's edit).
        if plan.concurrency != self.concurrency || plan.vantage != self.shared.vantage {
            self.stop_all();
            self.concurrency = plan.concurrency;
            self.shared.vantage = plan.vantage.clone();
            self.shared.sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
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
            let task = Task::new(name.clone(), spec.clone(), self.shared.clone());
            let task = tokio::spawn(task.run(spread));
            debug!(target_name = %name, "check started");
            self.jobs.insert(name, Job { spec, task });
        }
        *self.running.lock() = self
            .jobs
            .iter()
            .map(|(k, j)| (k.clone(), j.spec.clone()))
            .collect();
    }

    fn stop_all(&mut self) {
        for (_, job) in std::mem::take(&mut self.jobs) {
            job.task.abort();
        }
        self.running.lock().clear();
    }
}
