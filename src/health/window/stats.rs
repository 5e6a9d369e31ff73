//! The windows (1, 5, 10 min), their configuration and the statistics a window read returns.

use std::fmt;
use std::time::Duration;

use crate::hist::Count;

/// The windows, shortest first. `WINDOWS[w.index()] == w`.
pub const WINDOWS: [Win; 3] = [Win::M1, Win::M5, Win::M10];

/// A sliding-window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Win {
    M1,
    M5,
    M10,
}

impl Win {
    /// Length in seconds.
    pub fn secs(self) -> u64 {
        match self {
            Win::M1 => 60,
            Win::M5 => 300,
            Win::M10 => 600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Win::M1 => "1m",
            Win::M5 => "5m",
            Win::M10 => "10m",
        }
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.secs())
    }

    /// Index into [`WINDOWS`] (and into the array [`Series::all_stats`](super::Series::all_stats)
    /// returns).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Win {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    /// How long one observation speaks for its vantage point: after an observation at `t` the
    /// vantage is up (or down) until its next observation, but at most until `t + max_gap`;
    /// after that its state is unknown and does not count toward availability.
    pub max_gap: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_gap: Duration::from_secs(60),
        }
    }
}

/// Statistics of one window.
///
/// Latency percentiles are nearest-rank: `pq` is the smallest recorded value `v` such that at
/// least `ceil(q * n)` of the `n` latency samples are `<= v`. Samples are counted in a log-linear
/// histogram (16 linear sub-bins per power of two of microseconds) and a percentile is reported
/// as the midpoint of its bin: for a true value `d` with `16 µs <= d < 2^30 µs` (about 17.9 min)
/// the reported value is within `d / 32` (3.125 %) of `d`; below 16 µs it is within 0.5 µs.
/// Values of `2^30 µs` and more are clamped into the last bin (reported as about 1057 s).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub window: Duration,
    /// Observations in the window.
    pub count: u64,
    /// Of which not ok.
    pub failures: u64,
    /// `failures / count`; None when `count == 0`.
    pub error_rate: Option<f64>,
    /// Time-weighted share of known time that vantage points saw the target up, over
    /// `[now - window, now]`; None when no vantage point's state is known in that interval.
    pub availability: Option<f64>,
    /// Time over which the availability was known (up + down), summed over vantage points.
    pub availability_known: Duration,
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub p99: Option<Duration>,
    /// Observations that carried a cache status.
    pub cache_lookups: u64,
    /// Of which [`CacheStatus::is_hit`](crate::health::CacheStatus::is_hit).
    pub cache_hits: u64,
    /// `cache_hits / cache_lookups`; None when `cache_lookups == 0`.
    pub cache_hit_ratio: Option<f64>,
}

impl WindowStats {
    /// A window with nothing in it.
    pub fn empty(win: Win) -> WindowStats {
        WindowStats::new(win, &Counts::ZERO, [None; 3], 0, 0)
    }

    /// From a window's counts, its p50/p95/p99 and its (up, down) milliseconds.
    pub(super) fn new(
        win: Win,
        c: &Counts<u64>,
        [p50, p95, p99]: [Option<Duration>; 3],
        up: u64,
        down: u64,
    ) -> WindowStats {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        WindowStats {
            window: win.duration(),
            count: c.count,
            failures: c.failures,
            error_rate: ratio(c.failures, c.count),
            availability: ratio(up, up + down),
            availability_known: Duration::from_millis(up + down),
            p50,
            p95,
            p99,
            cache_lookups: c.cache_lookups,
            cache_hits: c.cache_hits,
            cache_hit_ratio: ratio(c.cache_hits, c.cache_lookups),
        }
    }

    /// One line: "12 obs, error rate 8.3 %, availability 91.7 %, p50/p95/p99 2.1/3.0/3.0 ms,
    /// cache hits 100 %".
    pub fn summary(&self) -> String {
        fn pct(v: Option<f64>) -> String {
            v.map(|x| format!("{:.1} %", x * 100.0))
                .unwrap_or_else(|| "-".into())
        }
        fn ms(v: Option<Duration>) -> String {
            v.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        }
        format!(
            "{} obs, error rate {}, availability {}, p50/p95/p99 {}/{}/{} ms, cache hits {}",
            self.count,
            pct(self.error_rate),
            pct(self.availability),
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            pct(self.cache_hit_ratio)
        )
    }
}

/// Observations, failures and cache lookups of one second (`u32`) or one window (`u64`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts<C> {
    pub(super) count: C,
    failures: C,
    cache_lookups: C,
    cache_hits: C,
}

impl<C: Count> Counts<C> {
    pub(super) const ZERO: Self = Counts {
        count: C::ZERO,
        failures: C::ZERO,
        cache_lookups: C::ZERO,
        cache_hits: C::ZERO,
    };

    /// One observation; `hit` when it carried a cache status.
    pub(super) fn add_one(&mut self, ok: bool, hit: Option<bool>) {
        self.count += C::ONE;
        if !ok {
            self.failures += C::ONE;
        }
        if let Some(hit) = hit {
            self.cache_lookups += C::ONE;
            if hit {
                self.cache_hits += C::ONE;
            }
        }
    }
}

impl Counts<u64> {
    pub(super) fn add(&mut self, o: &Counts<u32>) {
        self.count += u64::from(o.count);
        self.failures += u64::from(o.failures);
        self.cache_lookups += u64::from(o.cache_lookups);
        self.cache_hits += u64::from(o.cache_hits);
    }

    pub(super) fn sub(&mut self, o: &Counts<u32>) {
        self.count -= u64::from(o.count);
        self.failures -= u64::from(o.failures);
        self.cache_lookups -= u64::from(o.cache_lookups);
        self.cache_hits -= u64::from(o.cache_hits);
    }
}
