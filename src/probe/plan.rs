//! The prober's input and output: the plan of checks taken from the configuration, and the
//! report of each finished run.

use std::sync::Arc;

use super::run::RunResult;
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
