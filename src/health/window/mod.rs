//! Per-target sliding windows of health statistics.
//!
//! A pure data structure: time is always passed in (`at_ms` for an observation, `now_ms` for a
//! read), in milliseconds since the Unix epoch. Nothing here reads the clock or sleeps.
//!
//! # Windows and resolution
//!
//! Three windows ([`WINDOWS`]): 1, 5 and 10 minutes. Counts, failures, cache lookups and latency
//! percentiles have a resolution of one second: an observation at `at_ms` belongs to second
//! `at_ms / 1000`, and the window of `W` seconds read at `now_ms` covers the seconds
//! `now_s - W + 1 ..= now_s` where `now_s = now_ms / 1000` (so W whole seconds, the current one
//! included). Observations in seconds after `now_s` (a vantage point whose clock runs ahead, or a
//! read at an earlier `now`) are kept but not counted until `now` reaches them.
//!
//! Availability is time-weighted with millisecond precision over `[now_ms - W * 1000, now_ms]`
//! (see [`Series`]).
//!
//! # Horizon
//!
//! A [`Series`] keeps 10 minutes ([`HORIZON_SECS`]) behind the newest time it has seen: the newest
//! `at_ms` recorded or `now_ms` read, whichever is later. An observation whose second is
//! `HORIZON_SECS` or more before that newest second is rejected ([`Series::record`] returns
//! false); older data is dropped as time advances. Reads at a `now` earlier than the newest time
//! seen are answered from what is still kept.

mod latency;
mod series;
mod stats;
mod store;
mod timeline;

pub use series::{HORIZON_SECS, MAX_BUCKETS, MAX_VANTAGES, Series};
pub use stats::{WINDOWS, Win, WindowConfig, WindowStats};
pub use store::{HealthStore, TargetHealth};
pub use timeline::MAX_RUNS_PER_VANTAGE;

#[cfg(test)]
mod tests;
