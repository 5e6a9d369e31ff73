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
//! unanswered for 4 × the target's usual latency (at least 250 ms; see `task.rs`) — it re-checks `confirm` times on fresh connections, `confirm_gap` apart,
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
pub mod canary;
pub mod check;
mod http;
pub mod local;
mod once;
mod plan;
mod prober;
mod run;
mod task;
pub mod tls;
mod watch;

pub use check::Checker;
pub use local::{LocalError, ProbeMetrics};
pub use once::{format_table, run_once};
pub use plan::{ProbePlan, ProbeReport, RunKind};
pub use prober::Prober;
pub use run::{LevelResult, Outcome, RunResult};
pub use watch::{Beat, Watch};
