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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::{CacheStatus, Level, Observation};

/// The windows, shortest first. `WINDOWS[w.index()] == w`.
pub const WINDOWS: [Win; 3] = [Win::M1, Win::M5, Win::M10];

/// How far back (seconds, relative to the newest second seen) a [`Series`] keeps and accepts data.
pub const HORIZON_SECS: u64 = 600;

/// Upper bound on the per-second buckets a [`Series`] holds (one per second of the horizon, only
/// for seconds that had observations).
pub const MAX_BUCKETS: usize = HORIZON_SECS as usize;

/// Vantage points tracked per [`Series`] for availability (and per level for
/// [`TargetHealth::last`]); beyond that the least recently seen is evicted.
pub const MAX_VANTAGES: usize = 64;

/// State runs kept per vantage point. Only state changes (and gaps longer than `max_gap`) start a
/// run, so this is only reached by a vantage flapping faster than about twice a second; the
/// oldest runs are then dropped (that part of its timeline becomes unknown).
pub const MAX_RUNS_PER_VANTAGE: usize = 1024;

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

    /// Index into [`WINDOWS`] (and into the array [`Series::all_stats`] returns).
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
    /// Of which [`CacheStatus::is_hit`].
    pub cache_hits: u64,
    /// `cache_hits / cache_lookups`; None when `cache_lookups == 0`.
    pub cache_hit_ratio: Option<f64>,
}

impl WindowStats {
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

// ---------------------------------------------------------------------------------------------
// Latency histogram

/// log2 of the sub-bins per power of two.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// The last power of two with its own bins: [2^29, 2^30) µs.
const MAX_EXP: u32 = 29;
/// Bins 0..16 are exact microseconds 0..15; then 16 sub-bins for each octave [2^e, 2^(e+1)) µs,
/// e = 4..=29.
const NUM_BINS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// The histogram bin of a latency.
fn latency_bin(d: Duration) -> usize {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if us < SUB as u64 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros();
    if e > MAX_EXP {
        return NUM_BINS - 1;
    }
    let sub = ((us >> (e - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (e - SUB_BITS) as usize * SUB + sub
}

/// `(lowest value, width)` of a bin, in microseconds.
fn bin_bounds(bin: usize) -> (u64, u64) {
    if bin < SUB {
        return (bin as u64, 1);
    }
    let e = ((bin - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((bin - SUB) % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    ((1u64 << e) + sub * width, width)
}

/// The value reported for a bin: its midpoint.
fn bin_value(bin: usize) -> Duration {
    let (lo, width) = bin_bounds(bin);
    Duration::from_nanos(lo * 1000 + width * 500)
}

/// Nearest-rank percentiles, as (numerator, denominator) to keep the rank computation exact.
const QUANTILES: [(u64, u64); 3] = [(50, 100), (95, 100), (99, 100)];

/// The 1-based rank of quantile `q` among `n` samples: `ceil(q * n)`, at least 1.
fn nearest_rank(n: u64, (num, den): (u64, u64)) -> u64 {
    (n * num).div_ceil(den).max(1)
}

// ---------------------------------------------------------------------------------------------
// Counts

/// The observations of one second (only seconds that had some are kept).
#[derive(Debug)]
struct Bucket {
    second: u64,
    count: u32,
    failures: u32,
    cache_lookups: u32,
    cache_hits: u32,
    /// (histogram bin, samples), sorted by bin; at most `NUM_BINS` entries.
    bins: Vec<(u16, u32)>,
}

impl Bucket {
    fn add(&mut self, ok: bool, bin: Option<usize>, hit: Option<bool>) {
        self.count += 1;
        self.failures += u32::from(!ok);
        if let Some(hit) = hit {
            self.cache_lookups += 1;
            self.cache_hits += u32::from(hit);
        }
        if let Some(bin) = bin {
            let bin = bin as u16;
            match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
                Ok(i) => self.bins[i].1 += 1,
                Err(i) => self.bins.insert(i, (bin, 1)),
            }
        }
    }
}

/// Running totals of one window: the sum of the buckets it covers.
#[derive(Clone)]
struct Agg {
    count: u64,
    failures: u64,
    cache_lookups: u64,
    cache_hits: u64,
    latency_count: u64,
    hist: [u32; NUM_BINS],
}

impl Agg {
    fn new() -> Self {
        Agg {
            count: 0,
            failures: 0,
            cache_lookups: 0,
            cache_hits: 0,
            latency_count: 0,
            hist: [0; NUM_BINS],
        }
    }

    fn add_one(&mut self, ok: bool, bin: Option<usize>, hit: Option<bool>) {
        self.count += 1;
        self.failures += u64::from(!ok);
        if let Some(hit) = hit {
            self.cache_lookups += 1;
            self.cache_hits += u64::from(hit);
        }
        if let Some(bin) = bin {
            self.latency_count += 1;
            self.hist[bin] += 1;
        }
    }

    fn add(&mut self, b: &Bucket) {
        self.count += u64::from(b.count);
        self.failures += u64::from(b.failures);
        self.cache_lookups += u64::from(b.cache_lookups);
        self.cache_hits += u64::from(b.cache_hits);
        for &(bin, n) in &b.bins {
            self.latency_count += u64::from(n);
            self.hist[usize::from(bin)] += n;
        }
    }

    fn sub(&mut self, b: &Bucket) {
        self.count -= u64::from(b.count);
        self.failures -= u64::from(b.failures);
        self.cache_lookups -= u64::from(b.cache_lookups);
        self.cache_hits -= u64::from(b.cache_hits);
        for &(bin, n) in &b.bins {
            self.latency_count -= u64::from(n);
            self.hist[usize::from(bin)] -= n;
        }
    }

    /// p50, p95, p99 (see [`WindowStats`]).
    fn percentiles(&self) -> [Option<Duration>; 3] {
        let mut out = [None; 3];
        if self.latency_count == 0 {
            return out;
        }
        let ranks = QUANTILES.map(|q| nearest_rank(self.latency_count, q));
        let mut cum = 0u64;
        let mut k = 0;
        for (bin, &n) in self.hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            cum += u64::from(n);
            while k < ranks.len() && cum >= ranks[k] {
                out[k] = Some(bin_value(bin));
                k += 1;
            }
            if k == ranks.len() {
                break;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Availability

/// A run of consecutive observations of one vantage point in the same state, each within
/// `max_gap` of the one before. It speaks for `[start, min(next run's start, last + max_gap))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u64,
    last: u64,
    /// Observations merged into the run (used to estimate their spacing, see `Timeline::insert`).
    n: u32,
    up: bool,
}

/// The state changes seen from one vantage point. Runs are sorted by `start` and
/// `runs[i].last <= runs[i + 1].start`.
#[derive(Debug, Default)]
struct Timeline {
    runs: VecDeque<Run>,
    /// The newest `at_ms` of this vantage.
    last_seen: u64,
}

impl Timeline {
    /// End (exclusive) of the time run `j` speaks for, before clipping to `now`.
    fn end_of(&self, j: usize, gap: u64) -> u64 {
        let end = self.runs[j].last.saturating_add(gap);
        match self.runs.get(j + 1) {
            Some(next) => end.min(next.start),
            None => end,
        }
    }

    /// Adds an observation at `t`. Exact when it is this vantage's newest, when it lands in a gap
    /// between runs, or when it agrees with the run around it. A late observation contradicting
    /// the run around it (an up run that was in fact down for a moment) splits the run; as the
    /// times of the run's own observations are not kept, its state is assumed to last one mean
    /// spacing of the run's observations.
    fn insert(&mut self, t: u64, up: bool, gap: u64) {
        self.last_seen = self.last_seen.max(t);
        let runs = &mut self.runs;
        let i = runs.partition_point(|r| r.start <= t);
        if i > 0 {
            let r = &mut runs[i - 1];
            if t <= r.last {
                if r.up == up {
                    r.n = r.n.saturating_add(1);
                    return;
                }
                if t < r.last {
                    let Run { start, last, n, .. } = *r;
                    let spacing = ((last - start) / u64::from(n.max(2) - 1)).max(1);
                    let first_last = t.saturating_sub(spacing).max(start);
                    let second_start = (t + spacing).min(last);
                    let n1 = u32::try_from((first_last - start) / spacing + 1)
                        .unwrap_or(u32::MAX)
                        .clamp(1, n.saturating_sub(1).max(1));
                    let n2 = n.saturating_sub(n1).max(1);
                    let second = Run {
                        start: second_start,
                        last,
                        n: n2,
                        up: !up,
                    };
                    let new = Run {
                        start: t,
                        last: t,
                        n: 1,
                        up,
                    };
                    if t > start {
                        r.last = first_last;
                        r.n = n1;
                        runs.insert(i, new);
                        runs.insert(i + 1, second);
                    } else {
                        // Same instant as the run's first observation: the later arrival wins.
                        runs[i - 1] = new;
                        runs.insert(i, second);
                    }
                    self.cap();
                    return;
                }
                // t == r.last with the other state: the later arrival wins, a new run starts.
            } else if r.up == up && t - r.last <= gap {
                r.last = t;
                r.n = r.n.saturating_add(1);
                self.merge_next(i - 1, gap);
                return;
            }
        }
        if let Some(next) = runs.get_mut(i)
            && next.up == up
            && next.start - t <= gap
        {
            next.start = t;
            next.n = next.n.saturating_add(1);
            return;
        }
        runs.insert(
            i,
            Run {
                start: t,
                last: t,
                n: 1,
                up,
            },
        );
        self.cap();
    }

    fn merge_next(&mut self, j: usize, gap: u64) {
        if let Some(&next) = self.runs.get(j + 1) {
            let r = &mut self.runs[j];
            if next.up == r.up && next.start - r.last <= gap {
                r.last = next.last;
                r.n = r.n.saturating_add(next.n);
                self.runs.remove(j + 1);
            }
        }
    }

    fn cap(&mut self) {
        while self.runs.len() > MAX_RUNS_PER_VANTAGE {
            self.runs.pop_front();
        }
    }

    /// Drops runs that end at or before `horizon_ms`.
    fn prune(&mut self, horizon_ms: u64, gap: u64) {
        while !self.runs.is_empty() && self.end_of(0, gap) <= horizon_ms {
            self.runs.pop_front();
        }
    }

    /// Adds up and down milliseconds within `[from, to]`.
    fn accumulate(&self, from: u64, to: u64, gap: u64, up: &mut u64, down: &mut u64) {
        let mut j = self
            .runs
            .partition_point(|r| r.start <= from)
            .saturating_sub(1);
        while j < self.runs.len() {
            let r = self.runs[j];
            if r.start >= to {
                break;
            }
            let end = self.end_of(j, gap).min(to);
            let start = r.start.max(from);
            if end > start {
                *if r.up { &mut *up } else { &mut *down } += end - start;
            }
            j += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Series

/// One stream of observations (one level of one target) and its windows.
///
/// Counts and latency: a sparse deque of per-second buckets (only seconds that had observations,
/// at most [`MAX_BUCKETS`]) and one running aggregate per window, to which a bucket's contents are
/// added when an observation lands and from which they are subtracted when its second leaves the
/// window; advancing skips from bucket to bucket, never second by second. Recording is O(1)
/// amortised (a late observation costs a binary search and, for a second not yet seen, an
/// insertion into the deque); reading costs O(histogram bins) plus the buckets that left the
/// window since the last read.
///
/// Availability: per vantage point, the runs of same-state observations (only state changes and
/// gaps longer than `max_gap` start a new run). After an observation at `t` the vantage is up or
/// down (its `ok`) until its next observation, at most until `t + max_gap`, and unknown after
/// that; the latest observation's state extends to `min(now, t + max_gap)`. Availability over a
/// window is up time / (up + down time) summed over all vantages, clipped to
/// `[now_ms - W * 1000, now_ms]`. Reading costs O(vantages + runs in the window).
pub struct Series {
    gap_ms: u64,
    max_gap: Duration,
    /// Newest `at_ms` recorded or `now_ms` read.
    head_ms: u64,
    buckets: VecDeque<Bucket>,
    /// `aggs[w]` is the sum of the buckets with `second >= lo[w]`.
    aggs: Box<[Agg; 3]>,
    lo: [u64; 3],
    vantages: FxHashMap<Box<str>, Timeline>,
    /// Emptied bin lists of dropped buckets, for reuse.
    spare: Vec<Vec<(u16, u32)>>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut vantages: Vec<&str> = self.vantages.keys().map(|k| &**k).collect();
        vantages.sort_unstable();
        f.debug_struct("Series")
            .field("max_gap", &self.max_gap)
            .field("head_ms", &self.head_ms)
            .field("buckets", &self.buckets.len())
            .field("oldest_second", &self.buckets.front().map(|b| b.second))
            .field("vantages", &vantages)
            .finish_non_exhaustive()
    }
}

impl Series {
    pub fn new(cfg: WindowConfig) -> Self {
        Series {
            gap_ms: u64::try_from(cfg.max_gap.as_millis()).unwrap_or(u64::MAX),
            max_gap: cfg.max_gap,
            head_ms: 0,
            buckets: VecDeque::new(),
            aggs: Box::new([Agg::new(), Agg::new(), Agg::new()]),
            lo: [0; 3],
            vantages: FxHashMap::default(),
            spare: Vec::new(),
        }
    }

    /// Records one observation. `latency` feeds the percentiles, `cache` the hit ratio.
    /// Returns false (and records nothing) when its second is [`HORIZON_SECS`] or more before the
    /// newest second seen; observations out of order or ahead of `now` are otherwise accepted.
    pub fn record(
        &mut self,
        vantage: &str,
        at_ms: u64,
        ok: bool,
        latency: Option<Duration>,
        cache: Option<CacheStatus>,
    ) -> bool {
        let s = at_ms / 1000;
        if s + HORIZON_SECS <= self.head_ms / 1000 {
            return false;
        }
        self.advance(at_ms);
        let bin = latency.map(latency_bin);
        let hit = cache.map(CacheStatus::is_hit);
        let i = self.bucket_index(s);
        self.buckets[i].add(ok, bin, hit);
        for (agg, &lo) in self.aggs.iter_mut().zip(&self.lo) {
            if s >= lo {
                agg.add_one(ok, bin, hit);
            }
        }
        self.record_availability(vantage, at_ms, ok);
        true
    }

    /// The statistics of one window at `now_ms`, counting only what happened after
    /// `since_ms` when that is inside the window: observations of later seconds than
    /// `since_ms`'s, and availability over `(since_ms, now_ms]`. This is how a target that
    /// recovered is judged only on what came after its recovery.
    pub fn stats_since(&mut self, now_ms: u64, win: Win, since_ms: Option<u64>) -> WindowStats {
        let from = now_ms.saturating_sub(win.secs() * 1000);
        let Some(since) = since_ms.filter(|&s| s > from) else {
            return self.stats(now_ms, win);
        };
        self.advance(now_ms);
        let (lo_s, now_s) = (since / 1000 + 1, now_ms / 1000);
        let mut agg = Agg::new();
        let first = self.buckets.partition_point(|b| b.second < lo_s);
        for b in self.buckets.range(first..) {
            if b.second > now_s {
                break;
            }
            agg.add(b);
        }
        let (mut up, mut down) = (0, 0);
        for tl in self.vantages.values() {
            tl.accumulate(since.min(now_ms), now_ms, self.gap_ms, &mut up, &mut down);
        }
        Self::window_stats(win, &agg, up, down)
    }

    /// [`Series::stats_since`] for every window, in [`WINDOWS`] order.
    pub fn all_stats_since(&mut self, now_ms: u64, since_ms: Option<u64>) -> [WindowStats; 3] {
        WINDOWS.map(|w| self.stats_since(now_ms, w, since_ms))
    }

    fn window_stats(win: Win, agg: &Agg, up: u64, down: u64) -> WindowStats {
        let [p50, p95, p99] = agg.percentiles();
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        WindowStats {
            window: win.duration(),
            count: agg.count,
            failures: agg.failures,
            error_rate: ratio(agg.failures, agg.count),
            availability: ratio(up, up + down),
            availability_known: Duration::from_millis(up + down),
            p50,
            p95,
            p99,
            cache_lookups: agg.cache_lookups,
            cache_hits: agg.cache_hits,
            cache_hit_ratio: ratio(agg.cache_hits, agg.cache_lookups),
        }
    }

    /// The statistics of one window at `now_ms`.
    pub fn stats(&mut self, now_ms: u64, win: Win) -> WindowStats {
        self.advance(now_ms);
        let now_s = now_ms / 1000;
        let lo = (now_s + 1).saturating_sub(win.secs());
        let w = win.index();
        self.move_lo(w, lo);
        let ahead;
        let agg = if self.buckets.back().is_some_and(|b| b.second > now_s) {
            let mut a = self.aggs[w].clone();
            for b in self.buckets.iter().rev().take_while(|b| b.second > now_s) {
                a.sub(b);
            }
            ahead = a;
            &ahead
        } else {
            &self.aggs[w]
        };
        let (up, down) = self.availability_ms(now_ms, win);
        Self::window_stats(win, agg, up, down)
    }

    /// The statistics of all windows at `now_ms`, in [`WINDOWS`] order.
    pub fn all_stats(&mut self, now_ms: u64) -> [WindowStats; 3] {
        WINDOWS.map(|w| self.stats(now_ms, w))
    }

    /// Moves the newest time seen forward to `ms` (if later) and drops what fell off the horizon.
    fn advance(&mut self, ms: u64) {
        if ms <= self.head_ms {
            return;
        }
        self.head_ms = ms;
        let head_s = ms / 1000;
        while let Some(b) = self.buckets.front() {
            if b.second + HORIZON_SECS > head_s {
                break;
            }
            let mut b = self.buckets.pop_front().expect("front exists");
            for (agg, &lo) in self.aggs.iter_mut().zip(&self.lo) {
                if b.second >= lo {
                    agg.sub(&b);
                }
            }
            if self.spare.len() < 4 {
                b.bins.clear();
                self.spare.push(b.bins);
            }
        }
        let horizon = self.head_ms.saturating_sub(HORIZON_SECS * 1000);
        let gap = self.gap_ms;
        self.vantages.retain(|_, tl| {
            tl.prune(horizon, gap);
            !tl.runs.is_empty()
        });
    }

    /// The index of second `s`'s bucket, created if needed.
    fn bucket_index(&mut self, s: u64) -> usize {
        let at = match self.buckets.back() {
            Some(b) if b.second == s => return self.buckets.len() - 1,
            Some(b) if b.second > s => match self.buckets.binary_search_by_key(&s, |b| b.second) {
                Ok(i) => return i,
                Err(i) => i,
            },
            _ => self.buckets.len(),
        };
        let bucket = Bucket {
            second: s,
            count: 0,
            failures: 0,
            cache_lookups: 0,
            cache_hits: 0,
            bins: self.spare.pop().unwrap_or_default(),
        };
        self.buckets.insert(at, bucket);
        at
    }

    /// Makes `aggs[w]` the sum of the buckets with `second >= new_lo`.
    fn move_lo(&mut self, w: usize, new_lo: u64) {
        let old = self.lo[w];
        let agg = &mut self.aggs[w];
        if new_lo > old {
            let from = self.buckets.partition_point(|b| b.second < old);
            for b in self.buckets.range(from..) {
                if b.second >= new_lo {
                    break;
                }
                agg.sub(b);
            }
        } else if new_lo < old {
            let from = self.buckets.partition_point(|b| b.second < new_lo);
            for b in self.buckets.range(from..) {
                if b.second >= old {
                    break;
                }
                agg.add(b);
            }
        }
        self.lo[w] = new_lo;
    }

    fn record_availability(&mut self, vantage: &str, at_ms: u64, ok: bool) {
        let gap = self.gap_ms;
        let horizon = self.head_ms.saturating_sub(HORIZON_SECS * 1000);
        if !self.vantages.contains_key(vantage) {
            if self.vantages.len() >= MAX_VANTAGES
                && let Some(oldest) = self
                    .vantages
                    .iter()
                    .min_by_key(|(_, tl)| tl.last_seen)
                    .map(|(k, _)| k.clone())
            {
                self.vantages.remove(&oldest);
            }
            self.vantages.insert(vantage.into(), Timeline::default());
        }
        let tl = self.vantages.get_mut(vantage).expect("just inserted");
        tl.insert(at_ms, ok, gap);
        tl.prune(horizon, gap);
    }

    /// (up, down) milliseconds of all vantages within `[now_ms - W * 1000, now_ms]`.
    fn availability_ms(&self, now_ms: u64, win: Win) -> (u64, u64) {
        let from = now_ms.saturating_sub(win.secs() * 1000);
        let (mut up, mut down) = (0, 0);
        for tl in self.vantages.values() {
            tl.accumulate(from, now_ms, self.gap_ms, &mut up, &mut down);
        }
        (up, down)
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// Everything the health module keeps about one target: one Series per Level (index
/// `Level::index()`), and the latest Observation per (level, vantage) for status displays.
///
/// Latencies feed the percentiles only from ok observations (a failure's latency is how long it
/// took to fail, a timeout for instance, not how fast the target answers).
pub struct TargetHealth {
    series: [Series; Level::ALL.len()],
    /// Per level: the observation with the newest `at_ms` per vantage (at most [`MAX_VANTAGES`]).
    last: [BTreeMap<Arc<str>, Observation>; Level::ALL.len()],
}

impl fmt::Debug for TargetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for level in Level::ALL {
            let i = level.index();
            if !self.series[i].buckets.is_empty() || !self.last[i].is_empty() {
                m.entry(&level.as_str(), &self.series[i]);
            }
        }
        m.finish()
    }
}

impl TargetHealth {
    pub fn new(cfg: WindowConfig) -> Self {
        TargetHealth {
            series: std::array::from_fn(|_| Series::new(cfg)),
            last: std::array::from_fn(|_| BTreeMap::new()),
        }
    }

    /// Records into the observation's level; see [`Series::record`] for the return value. The
    /// latest-per-vantage table is updated whenever the observation is the newest of its vantage.
    pub fn record(&mut self, obs: &Observation) -> bool {
        let i = obs.level.index();
        let last = &mut self.last[i];
        match last.get_mut(&obs.vantage) {
            Some(prev) => {
                if obs.at_ms >= prev.at_ms {
                    *prev = obs.clone();
                }
            }
            None => {
                let oldest = last
                    .iter()
                    .min_by_key(|(_, o)| o.at_ms)
                    .map(|(k, o)| (k.clone(), o.at_ms));
                match oldest {
                    Some((k, at)) if last.len() >= MAX_VANTAGES => {
                        if at <= obs.at_ms {
                            last.remove(&k);
                            last.insert(obs.vantage.clone(), obs.clone());
                        }
                    }
                    _ => {
                        last.insert(obs.vantage.clone(), obs.clone());
                    }
                }
            }
        }
        self.series[i].record(
            &obs.vantage,
            obs.at_ms,
            obs.ok,
            obs.ok.then_some(obs.latency),
            obs.cache.as_ref().map(|c| c.status),
        )
    }

    pub fn series(&mut self, level: Level) -> &mut Series {
        &mut self.series[level.index()]
    }

    pub fn stats(&mut self, level: Level, now_ms: u64, win: Win) -> WindowStats {
        self.series[level.index()].stats(now_ms, win)
    }

    /// The latest observation of each vantage at this level, sorted by vantage.
    pub fn last(&self, level: Level) -> Vec<&Observation> {
        self.last[level.index()].values().collect()
    }

    pub fn last_from(&self, level: Level, vantage: &str) -> Option<&Observation> {
        self.last[level.index()].get(vantage)
    }
}

/// All targets.
pub struct HealthStore {
    cfg: WindowConfig,
    targets: FxHashMap<Arc<str>, TargetHealth>,
}

impl fmt::Debug for HealthStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&Arc<str>> = self.targets.keys().collect();
        names.sort_unstable();
        let mut m = f.debug_map();
        for name in names {
            m.entry(name, &self.targets[name]);
        }
        m.finish()
    }
}

impl HealthStore {
    pub fn new(cfg: WindowConfig) -> Self {
        HealthStore {
            cfg,
            targets: FxHashMap::default(),
        }
    }

    /// Records into the observation's target, created on first use. See [`TargetHealth::record`].
    pub fn record(&mut self, obs: &Observation) -> bool {
        if let Some(t) = self.targets.get_mut(&*obs.target) {
            return t.record(obs);
        }
        let mut t = TargetHealth::new(self.cfg);
        let accepted = t.record(obs);
        self.targets.insert(obs.target.clone(), t);
        accepted
    }

    pub fn target(&mut self, name: &str) -> Option<&mut TargetHealth> {
        self.targets.get_mut(name)
    }

    /// Sorted.
    pub fn target_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.targets.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Drops the targets `keep` says no to (targets removed from the configuration).
    pub fn retain_targets(&mut self, keep: impl Fn(&str) -> bool) {
        self.targets.retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A round second, in ms.
    const T0: u64 = 1_700_000_000_000;

    fn series() -> Series {
        Series::new(WindowConfig::default())
    }

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn rel_err(got: Duration, want: Duration) -> f64 {
        (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64()
    }

    #[test]
    fn win_accessors() {
        for (i, w) in WINDOWS.into_iter().enumerate() {
            assert_eq!(w.index(), i);
            assert_eq!(w.duration(), Duration::from_secs(w.secs()));
        }
        assert_eq!(WINDOWS.map(Win::secs), [60, 300, 600]);
        assert_eq!(WINDOWS.map(Win::as_str), ["1m", "5m", "10m"]);
        assert_eq!(Win::M5.to_string(), "5m");
        assert_eq!(WindowConfig::default().max_gap, Duration::from_secs(60));
    }

    #[test]
    fn histogram_layout_and_error_bound() {
        assert_eq!(NUM_BINS, 432);
        // Bins tile [0, 2^30) µs without holes, in order.
        let mut next = 0;
        for bin in 0..NUM_BINS {
            let (lo, width) = bin_bounds(bin);
            assert_eq!(lo, next, "bin {bin}");
            assert_eq!(latency_bin(us(lo)), bin);
            assert_eq!(latency_bin(us(lo + width) - Duration::from_nanos(1)), bin);
            next = lo + width;
        }
        assert_eq!(next, 1 << 30);
        assert!(next > 600_000_000, "covers 10 minutes");
        assert!(latency_bin(Duration::from_secs(600)) < NUM_BINS - 1);
        assert_eq!(latency_bin(Duration::from_secs(3600)), NUM_BINS - 1);
        assert_eq!(latency_bin(Duration::MAX), NUM_BINS - 1);

        let check = |d: Duration| {
            let got = bin_value(latency_bin(d));
            let err = got.abs_diff(d).as_nanos();
            let ns = d.as_nanos();
            if ns >= 16_000 {
                assert!(err * 32 <= ns, "{d:?} reported as {got:?}");
            } else {
                assert!(err <= 500, "{d:?} reported as {got:?}");
            }
        };
        // Both edges of every bin, where the error is largest.
        for bin in 0..NUM_BINS {
            let (lo, width) = bin_bounds(bin);
            check(us(lo));
            check(us(lo + width) - Duration::from_nanos(1));
        }
        let mut rng = StdRng::seed_from_u64(1);
        let top = ((1u64 << 30) as f64 * 1000.0).log10();
        for _ in 0..100_000 {
            let ns = 10f64.powf(rng.gen_range(0.0..top)) as u64;
            check(Duration::from_nanos(ns));
        }
        // The bound is tight: the first value of an octave is reported 1/32 high.
        let d = us(1 << 20);
        assert_eq!(bin_value(latency_bin(d)), d + d / 32);
    }

    #[test]
    fn window_edges_are_whole_seconds() {
        let now = T0 + 1_000_700;
        let now_s = now / 1000;
        for win in WINDOWS {
            let w = win.secs();
            let mut s = series();
            // Last millisecond of the second just outside the window.
            assert!(s.record("a", (now_s - w) * 1000 + 999, false, None, None));
            // First millisecond of the oldest second inside it.
            assert!(s.record("a", (now_s - w + 1) * 1000, true, None, None));
            // Last millisecond of the current second is inside (ahead of now_ms by 299 ms).
            assert!(s.record("a", now_s * 1000 + 999, false, None, None));
            let st = s.stats(now, win);
            assert_eq!(st.window, win.duration());
            assert_eq!((st.count, st.failures), (2, 1), "{win}");
            assert_eq!(st.error_rate, Some(0.5));
            // The next second starts: the oldest one leaves.
            let st = s.stats((now_s + 1) * 1000, win);
            assert_eq!((st.count, st.failures), (1, 1), "{win}");
        }
    }

    #[test]
    fn stats_since_counts_only_what_came_after() {
        let mut s = series();
        // Failures over seconds 100..110, passes afterwards, one check a second.
        for sec in 100..200u64 {
            s.record("v", sec * 1000, sec >= 110, Some(ms(10)), None);
        }
        let now = 199_500;
        let all = s.stats(now, Win::M5);
        assert_eq!((all.count, all.failures), (100, 10));
        // Judged until second 120: only seconds 121..=199 count, availability from 120 s.
        let after = s.stats_since(now, Win::M5, Some(120_000));
        assert_eq!((after.count, after.failures), (79, 0));
        assert_eq!(after.availability, Some(1.0));
        assert_eq!(
            after.availability_known,
            Duration::from_millis(now - 120_000)
        );
        // A floor before the window changes nothing.
        let same = s.stats_since(now, Win::M1, Some(100_000));
        assert_eq!(same, s.stats(now, Win::M1));
        // A floor inside the outage sees its tail.
        let tail = s.stats_since(now, Win::M5, Some(105_000));
        assert_eq!((tail.count, tail.failures), (94, 4));
        assert!(tail.availability.unwrap() < 1.0);
    }

    #[test]
    fn error_rate_per_window() {
        let mut s = series();
        let now_s = T0 / 1000 + 5000;
        // One observation per second over 10 minutes, `ago` seconds before now.
        for ago in (0..600).rev() {
            let fail = match ago {
                0..60 => ago % 10 == 0,
                60..300 => ago % 4 == 0,
                _ => true,
            };
            assert!(s.record("a", (now_s - ago) * 1000 + 250, !fail, None, None));
        }
        let [m1, m5, m10] = s.all_stats(now_s * 1000 + 500);
        assert_eq!((m1.count, m1.failures, m1.error_rate), (60, 6, Some(0.1)));
        assert_eq!(
            (m5.count, m5.failures, m5.error_rate),
            (300, 66, Some(0.22))
        );
        assert_eq!(
            (m10.count, m10.failures, m10.error_rate),
            (600, 366, Some(0.61))
        );
        assert_eq!(m1.cache_hit_ratio, None);
        assert_eq!(m1.p50, None);
        // Five minutes later only the newest five minutes are left in the 10-minute window.
        let m10 = s.stats((now_s + 300) * 1000 + 500, Win::M10);
        assert_eq!((m10.count, m10.failures), (300, 66));
        let m5 = s.stats((now_s + 300) * 1000 + 500, Win::M5);
        assert_eq!((m5.count, m5.error_rate), (0, None));
    }

    #[test]
    fn availability_is_time_weighted() {
        let mut s = series();
        // Up for 540 s, down for the last 60 s, one observation every 10 s.
        for i in 0..60 {
            assert!(s.record("a", T0 + i * 10_000, i < 54, None, None));
        }
        let now = T0 + 600_000;
        let [m1, m5, m10] = s.all_stats(now);
        assert_eq!(m10.availability, Some(0.9));
        assert_eq!(m5.availability, Some(0.8));
        assert_eq!(m1.availability, Some(0.0));
        // Counting observations would say 54/60 too, but not with uneven spacing: a single down
        // observation answered for a whole minute.
        let mut s = series();
        for i in 0..540 {
            s.record("a", T0 + i * 1000, true, None, None);
        }
        s.record("a", T0 + 540_000, false, None, None);
        let st = s.stats(now, Win::M10);
        // (second T0 / 1000 itself is just outside the 10-minute window of seconds)
        assert_eq!((st.count, st.failures), (540, 1));
        assert_eq!(st.availability, Some(0.9));
    }

    #[test]
    fn availability_gap_longer_than_max_gap_is_unknown() {
        let mut s = series();
        s.record("a", T0, true, None, None);
        s.record("a", T0 + 10_000, true, None, None);
        // Silent for 290 s (max_gap 60 s): up until T0 + 70 s, then unknown.
        s.record("a", T0 + 300_000, false, None, None);
        let st = s.stats(T0 + 330_000, Win::M10);
        assert_eq!(s.availability_ms(T0 + 330_000, Win::M10), (70_000, 30_000));
        assert_eq!(st.availability, Some(0.7));
        // The last observation speaks for at most max_gap.
        assert_eq!(s.availability_ms(T0 + 500_000, Win::M10), (70_000, 60_000));
        // Long silence: nothing known in the window.
        let st = s.stats(T0 + 1_000_000, Win::M10);
        assert_eq!(st.availability, None);

        // A shorter max_gap.
        let mut s = Series::new(WindowConfig {
            max_gap: Duration::from_secs(5),
        });
        for i in 0..10 {
            s.record("a", T0 + i * 10_000, true, None, None);
        }
        s.stats(T0 + 100_000, Win::M10);
        assert_eq!(s.availability_ms(T0 + 100_000, Win::M10), (50_000, 0));
    }

    #[test]
    fn availability_of_two_vantages_is_weighted_by_time() {
        let mut s = series();
        for i in 0..60 {
            s.record("a", T0 + i * 10_000, true, None, None);
        }
        // "b" only reports during the last 200 s, all down.
        for i in 0..4 {
            s.record("b", T0 + 400_000 + i * 50_000, false, None, None);
        }
        let now = T0 + 600_000;
        assert_eq!(s.availability_ms(now, Win::M10), (600_000, 200_000));
        assert_eq!(s.stats(now, Win::M10).availability, Some(0.75));
        // Over the last minute: 60 s up, 60 s down.
        assert_eq!(s.stats(now, Win::M1).availability, Some(0.5));
    }

    /// (up, down) ms of one vantage's observations, from first principles.
    fn brute_avail(obs: &[(u64, bool)], from: u64, to: u64, gap: u64) -> (u64, u64) {
        let mut v = obs.to_vec();
        v.sort_by_key(|o| o.0); // stable: at equal times the later arrival wins
        let (mut up, mut down) = (0, 0);
        for (k, &(t, ok)) in v.iter().enumerate() {
            let mut end = t.saturating_add(gap);
            if let Some(&(next, _)) = v.get(k + 1) {
                end = end.min(next);
            }
            let (start, end) = (t.max(from), end.min(to));
            if end > start {
                *if ok { &mut up } else { &mut down } += end - start;
            }
        }
        (up, down)
    }

    #[test]
    fn late_observations_in_availability() {
        let gap = 60_000;
        let mut s = series();
        let mut seen = Vec::new();
        let mut rec = |s: &mut Series, t: u64, ok: bool| {
            assert!(s.record("a", T0 + t, ok, None, None));
            seen.push((T0 + t, ok));
        };
        for t in (0..=100_000).step_by(10_000) {
            rec(&mut s, t, true);
        }
        for t in (300_000..=400_000).step_by(10_000) {
            rec(&mut s, t, false);
        }
        // Late, in the unknown gap, the other state than the run before it: exact.
        rec(&mut s, 150_000, false);
        // Late, extending the run before it: exact.
        rec(&mut s, 140_000, true);
        // Late, bridging to the next run: exact.
        rec(&mut s, 250_000, false);
        // Late, inside a run and agreeing with it: exact (no change).
        rec(&mut s, 55_000, true);
        // Late, before everything.
        rec(&mut s, 0, true);
        let now = T0 + 420_000;
        s.stats(now, Win::M10);
        for win in WINDOWS {
            let from = now - win.secs() * 1000;
            assert_eq!(
                s.availability_ms(now, win),
                brute_avail(&seen, from, now, gap),
                "{win}"
            );
        }
        // Up [0, 150 s), down [150, 210), [250, 420).
        assert_eq!(s.availability_ms(now, Win::M10), (150_000, 230_000));

        // Late and contradicting the run around it: the run's observation times are not kept, so
        // the other state is assumed to last one mean spacing of the run (here 590/58 s instead
        // of the true 10 s).
        let mut s = series();
        for i in (0..60).filter(|&i| i != 30) {
            s.record("a", T0 + i * 10_000, true, None, None);
        }
        let now = T0 + 600_000;
        assert_eq!(s.stats(now, Win::M10).availability, Some(1.0));
        assert!(s.record("a", T0 + 300_000, false, None, None));
        let (up, down) = s.availability_ms(now, Win::M10);
        assert_eq!(up + down, 600_000);
        assert_eq!(down, 590_000 / 58);
        let runs = &s.vantages["a"].runs;
        assert_eq!(runs.len(), 3);
        assert!(
            runs.iter()
                .zip(runs.iter().skip(1))
                .all(|(a, b)| a.last <= b.start)
        );
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut s = series();
        let mut rng = StdRng::seed_from_u64(3);
        let mut values: Vec<u64> = (1..=1000).collect();
        // Shuffled, spread over 50 seconds, so that order and buckets do not matter.
        for i in (1..values.len()).rev() {
            values.swap(i, rng.gen_range(0..=i));
        }
        for (i, v) in values.iter().enumerate() {
            let at = T0 + (i as u64 % 50) * 1000;
            assert!(s.record("a", at, true, Some(ms(*v)), None));
        }
        let st = s.stats(T0 + 59_000, Win::M1);
        assert_eq!(st.count, 1000);
        for (got, want) in [(st.p50, 500), (st.p95, 950), (st.p99, 990)] {
            let got = got.expect("latencies recorded");
            assert!(rel_err(got, ms(want)) <= 1.0 / 32.0, "{got:?} vs {want} ms");
            assert_eq!(got, bin_value(latency_bin(ms(want))));
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // 990 fast, 10 slow: p99 is the 990th value, a fast one.
        let mut s = series();
        for i in 0..1000 {
            let lat = if i < 990 { ms(10) } else { ms(1000) };
            s.record("a", T0, true, Some(lat), None);
        }
        let st = s.stats(T0, Win::M1);
        let fast = bin_value(latency_bin(ms(10)));
        let slow = bin_value(latency_bin(ms(1000)));
        assert_eq!(
            (st.p50, st.p95, st.p99),
            (Some(fast), Some(fast), Some(fast))
        );
        // One more slow one moves the 990th value into the slow ones.
        let mut s = series();
        for i in 0..1000 {
            let lat = if i < 989 { ms(10) } else { ms(1000) };
            s.record("a", T0, true, Some(lat), None);
        }
        let st = s.stats(T0, Win::M1);
        assert_eq!((st.p95, st.p99), (Some(fast), Some(slow)));
        // A single sample is every percentile; observations without latency do not count.
        let mut s = series();
        s.record("a", T0, true, Some(ms(42)), None);
        s.record("a", T0, false, None, None);
        let st = s.stats(T0, Win::M1);
        let v = Some(bin_value(latency_bin(ms(42))));
        assert_eq!((st.count, st.p50, st.p95, st.p99), (2, v, v, v));
    }

    #[test]
    fn cache_hit_ratio() {
        let mut s = series();
        let statuses = [
            Some(CacheStatus::Hit),
            Some(CacheStatus::Stale),
            Some(CacheStatus::Miss),
            Some(CacheStatus::Other),
            None,
            Some(CacheStatus::Hit),
        ];
        for (i, c) in statuses.into_iter().enumerate() {
            s.record("a", T0 + i as u64 * 20_000, true, None, c);
        }
        let now = T0 + 100_000;
        let m5 = s.stats(now, Win::M5);
        assert_eq!((m5.count, m5.cache_lookups, m5.cache_hits), (6, 5, 3));
        assert_eq!(m5.cache_hit_ratio, Some(0.6));
        // The last minute: Other (at 60 s, second 60 is inside), None, Hit.
        let m1 = s.stats(now, Win::M1);
        assert_eq!((m1.count, m1.cache_lookups, m1.cache_hits), (3, 2, 1));
        assert_eq!(m1.cache_hit_ratio, Some(0.5));
    }

    #[test]
    fn out_of_order_observations() {
        let mut s = series();
        let now = T0 + 1_000_000;
        let head_s = now / 1000;
        assert!(s.record("a", now, true, None, None));
        assert!(s.record("b", now - 30_000, false, None, None));
        assert!(s.record("b", now - 90_000, true, None, None));
        // The oldest second still inside the 10-minute horizon, and the one before it.
        assert!(s.record("c", (head_s - 599) * 1000, true, None, None));
        assert!(!s.record("c", (head_s - 600) * 1000 + 999, true, None, None));
        assert!(!s.record("c", now - 3_600_000, true, None, None));
        let counts = |s: &mut Series| s.all_stats(now).map(|st| st.count);
        assert_eq!(counts(&mut s), [2, 3, 4]);
        // Late again, after a read moved the windows: lands only in the windows covering it.
        assert!(s.record("b", now - 70_000, false, None, None));
        assert!(s.record("b", now - 30_000, true, None, None)); // an existing second
        assert_eq!(counts(&mut s), [3, 5, 6]);
        assert_eq!(s.stats(now, Win::M1).failures, 1);
        assert_eq!(s.stats(now, Win::M5).failures, 2);
        // Rejection is relative to the newest time seen, reads included.
        s.stats(now + 500_000, Win::M1);
        assert!(!s.record("a", now - 100_000, true, None, None));
        assert!(s.record("a", now - 99_000, true, None, None));
    }

    #[test]
    fn observations_ahead_of_now() {
        let mut s = series();
        let now = T0 + 1_000_000;
        assert!(s.record("a", now, true, None, None));
        // A vantage whose clock runs 3 s (and 20 s) ahead.
        assert!(s.record("b", now + 3_000, false, None, None));
        assert!(s.record("b", now + 20_000, false, None, None));
        assert_eq!(s.stats(now, Win::M1).count, 1);
        assert_eq!(s.stats(now + 3_000, Win::M1).count, 2);
        assert_eq!(s.stats(now + 20_000, Win::M1).count, 3);
        // Reading an earlier time again gives the same answer as before.
        assert_eq!(s.stats(now, Win::M1).count, 1);
        assert_eq!(s.stats(now + 62_000, Win::M1).count, 2);
        assert_eq!(s.stats(now, Win::M1).count, 1);
        // Observations from the future side of now do not count toward availability yet.
        assert_eq!(s.stats(now + 1_000, Win::M1).availability, Some(1.0));
    }

    #[test]
    fn expiry_after_long_silence() {
        let mut s = series();
        for i in 0..600 {
            s.record(
                if i % 2 == 0 { "a" } else { "b" },
                T0 + i * 100,
                i % 3 != 0,
                Some(ms(i)),
                Some(CacheStatus::Miss),
            );
        }
        let st = s.stats(T0 + 60_000, Win::M10);
        assert_eq!(st.count, 600);
        assert!(st.availability.is_some() && st.p99.is_some());
        // The 1-minute window empties after a minute, availability after max_gap too.
        let m1 = s.stats(T0 + 60_000 + 120_000, Win::M1);
        assert_eq!((m1.count, m1.availability), (0, None));
        let later = T0 + 60_000 + 11 * 60_000;
        for st in s.all_stats(later) {
            let empty = WindowStats {
                window: st.window,
                count: 0,
                failures: 0,
                error_rate: None,
                availability: None,
                availability_known: Duration::ZERO,
                p50: None,
                p95: None,
                p99: None,
                cache_lookups: 0,
                cache_hits: 0,
                cache_hit_ratio: None,
            };
            assert_eq!(st, empty);
        }
        assert!(s.buckets.is_empty());
        assert!(s.vantages.is_empty());
        // And it starts again from nothing.
        assert!(s.record("a", later, false, Some(ms(5)), None));
        let st = s.stats(later, Win::M1);
        assert_eq!((st.count, st.failures, st.availability), (1, 1, None));
        assert_eq!(s.stats(later + 1000, Win::M1).availability, Some(0.0));
    }

    fn check_bounds(s: &Series) {
        assert!(s.buckets.len() <= MAX_BUCKETS);
        assert!(
            s.buckets
                .iter()
                .zip(s.buckets.iter().skip(1))
                .all(|(a, b)| a.second < b.second)
        );
        for b in &s.buckets {
            assert!(b.bins.len() <= NUM_BINS);
            assert!(b.bins.len() <= b.count as usize);
        }
        assert!(s.spare.len() <= 4);
        assert!(s.vantages.len() <= MAX_VANTAGES);
        for tl in s.vantages.values() {
            assert!(tl.runs.len() <= MAX_RUNS_PER_VANTAGE);
        }
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = series();
        let mut rng = StdRng::seed_from_u64(7);
        let names: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        // 100,000 observations over 10,000 s: 10 a second, half from a vantage flapping at every
        // observation, half from 100 vantages in turn (more than MAX_VANTAGES).
        for i in 0..100_000u64 {
            let at = T0 + i * 100;
            let (vantage, ok) = if i % 2 == 0 {
                ("flappy", i % 4 == 0)
            } else {
                (names[(i / 2 % 100) as usize].as_str(), rng.gen_bool(0.9))
            };
            let lat = Duration::from_nanos(rng.gen_range(1_000..5_000_000_000));
            assert!(s.record(vantage, at, ok, Some(lat), Some(CacheStatus::Hit)));
            if i % 997 == 0 {
                check_bounds(&s);
            }
            if i % 5003 == 0 {
                s.all_stats(at);
            }
        }
        check_bounds(&s);
        assert_eq!(s.buckets.len(), MAX_BUCKETS);
        assert_eq!(s.vantages.len(), MAX_VANTAGES);
        assert_eq!(s.vantages["flappy"].runs.len(), MAX_RUNS_PER_VANTAGE);
        let st = s.stats(T0 + 9_999_999, Win::M10);
        assert_eq!((st.count, st.cache_hits), (6000, 6000));
    }

    #[derive(Debug, Clone, Copy)]
    struct Rec {
        at_ms: u64,
        ok: bool,
        lat: Option<Duration>,
        cache: Option<CacheStatus>,
    }

    /// (count, failures, cache lookups, cache hits, [p50, p95, p99]) from a plain list.
    type Brute = (u64, u64, u64, u64, [Option<Duration>; 3]);

    fn brute(recs: &[Rec], head_ms: u64, now_ms: u64, win: Win) -> Brute {
        let (head_s, now_s) = (head_ms / 1000, now_ms / 1000);
        let first = (now_s + 1).saturating_sub(win.secs());
        let inside: Vec<&Rec> = recs
            .iter()
            .filter(|r| {
                let s = r.at_ms / 1000;
                first <= s && s <= now_s && s + HORIZON_SECS > head_s
            })
            .collect();
        let count = inside.len() as u64;
        let failures = inside.iter().filter(|r| !r.ok).count() as u64;
        let lookups = inside.iter().filter(|r| r.cache.is_some()).count() as u64;
        let hits = inside
            .iter()
            .filter(|r| r.cache.is_some_and(|c| c.is_hit()))
            .count() as u64;
        let mut bins: Vec<usize> = inside
            .iter()
            .filter_map(|r| r.lat.map(latency_bin))
            .collect();
        bins.sort_unstable();
        let n = bins.len() as u64;
        let pct = [(50, 100), (95, 100), (99, 100)].map(|(num, den): (u64, u64)| {
            if n == 0 {
                return None;
            }
            let rank = (n * num).div_ceil(den).max(1);
            Some(bin_value(bins[rank as usize - 1]))
        });
        (count, failures, lookups, hits, pct)
    }

    #[test]
    fn aggregates_match_brute_force() {
        let statuses = [
            None,
            Some(CacheStatus::Hit),
            Some(CacheStatus::Miss),
            Some(CacheStatus::Stale),
            Some(CacheStatus::Other),
        ];
        let mut compared = 0;
        for seed in 0..10 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = series();
            let mut kept: Vec<Rec> = Vec::new();
            let mut head_ms = 0u64;
            let mut cur = T0 + rng.gen_range(0..1000);
            for _ in 0..2500 {
                cur += match rng.gen_range(0..1000) {
                    0..900 => rng.gen_range(0..300),
                    900..970 => rng.gen_range(300..10_000),
                    970..995 => rng.gen_range(10_000..120_000),
                    _ => rng.gen_range(120_000..1_200_000),
                };
                for _ in 0..rng.gen_range(1..=8) {
                    let at_ms = match rng.gen_range(0..20) {
                        0..14 => cur.saturating_sub(rng.gen_range(0..1000)),
                        14..17 => cur.saturating_sub(rng.gen_range(0..700_000)),
                        17 => cur + rng.gen_range(0..8000),
                        _ => cur,
                    };
                    let lat = rng
                        .gen_bool(0.85)
                        .then(|| Duration::from_nanos(10f64.powf(rng.gen_range(2.0..12.5)) as u64));
                    let r = Rec {
                        at_ms,
                        ok: rng.gen_bool(0.8),
                        lat,
                        cache: statuses[rng.gen_range(0..statuses.len())],
                    };
                    let want = at_ms / 1000 + HORIZON_SECS > head_ms / 1000;
                    let vantage = ["a", "b", "c"][rng.gen_range(0..3)];
                    let got = s.record(vantage, r.at_ms, r.ok, r.lat, r.cache);
                    assert_eq!(got, want, "seed {seed} record {r:?} head {head_ms}");
                    if got {
                        kept.push(r);
                        head_ms = head_ms.max(at_ms);
                    }
                }
                if rng.gen_bool(0.3) {
                    let now = match rng.gen_range(0..10) {
                        0 => cur.saturating_sub(rng.gen_range(0..200_000)),
                        1 => cur + rng.gen_range(0..100_000),
                        _ => cur,
                    };
                    head_ms = head_ms.max(now);
                    let mut order = WINDOWS;
                    if rng.gen_bool(0.5) {
                        order.reverse();
                    }
                    for win in order {
                        let st = s.stats(now, win);
                        let got = (
                            st.count,
                            st.failures,
                            st.cache_lookups,
                            st.cache_hits,
                            [st.p50, st.p95, st.p99],
                        );
                        let want = brute(&kept, head_ms, now, win);
                        assert_eq!(got, want, "seed {seed} now {now} {win}");
                        let rate = (want.0 > 0).then(|| want.1 as f64 / want.0 as f64);
                        assert_eq!(st.error_rate, rate);
                        let ratio = (want.2 > 0).then(|| want.3 as f64 / want.2 as f64);
                        assert_eq!(st.cache_hit_ratio, ratio);
                        compared += 1;
                    }
                    check_bounds(&s);
                }
                if kept.len() > 1000 {
                    kept.retain(|r| r.at_ms / 1000 + HORIZON_SECS > head_ms / 1000);
                }
            }
        }
        assert!(compared > 20_000, "{compared}");
    }

    #[test]
    fn availability_matches_brute_force() {
        let mut compared = 0;
        for seed in 0..16 {
            let mut rng = StdRng::seed_from_u64(100 + seed);
            let gap = rng.gen_range(5_000..90_000);
            let mut s = Series::new(WindowConfig { max_gap: ms(gap) });
            let nv = rng.gen_range(1..=5);
            let names = ["a", "b", "c", "d", "e"];
            let mut vt = vec![T0; nv];
            let mut up = vec![true; nv];
            let mut seen: Vec<Vec<(u64, bool)>> = vec![Vec::new(); nv];
            let mut head = 0u64;
            for _ in 0..1500 {
                // Each vantage in order, the vantages interleaved out of order.
                let v = rng.gen_range(0..nv);
                let cur = *vt.iter().max().expect("vantages");
                let dt = match rng.gen_range(0..100) {
                    0..5 => 0,
                    5..80 => rng.gen_range(1..20_000),
                    80..95 => rng.gen_range(20_000..150_000),
                    _ => rng.gen_range(150_000..900_000),
                };
                vt[v] = (vt[v] + dt).max(cur.saturating_sub(rng.gen_range(0..40_000)));
                if rng.gen_bool(0.25) {
                    up[v] = !up[v];
                }
                if s.record(names[v], vt[v], up[v], None, None) {
                    seen[v].push((vt[v], up[v]));
                    head = head.max(vt[v]);
                }
                if rng.gen_bool(0.3) {
                    let now = head
                        + if rng.gen_bool(0.5) {
                            0
                        } else {
                            rng.gen_range(0..120_000)
                        };
                    head = now;
                    for win in WINDOWS {
                        let st = s.stats(now, win);
                        let from = now.saturating_sub(win.secs() * 1000);
                        let (mut u, mut d) = (0, 0);
                        for obs in &seen {
                            let (a, b) = brute_avail(obs, from, now, gap);
                            u += a;
                            d += b;
                        }
                        assert_eq!(s.availability_ms(now, win), (u, d), "seed {seed} {win}");
                        let want = (u + d > 0).then(|| u as f64 / (u + d) as f64);
                        assert_eq!(st.availability, want);
                        compared += 1;
                    }
                    for tl in s.vantages.values() {
                        let r = &tl.runs;
                        assert!(
                            r.iter()
                                .zip(r.iter().skip(1))
                                .all(|(a, b)| a.last <= b.start)
                        );
                    }
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
    }

    fn obs(
        target: &str,
        level: Level,
        vantage: &str,
        at_ms: u64,
        ok: bool,
        lat: u64,
    ) -> Observation {
        Observation {
            target: target.into(),
            level,
            vantage: vantage.into(),
            at_ms,
            ok,
            latency: ms(lat),
            detail: String::new(),
            cache: None,
        }
    }

    #[test]
    fn target_health_and_store() {
        let mut store = HealthStore::new(WindowConfig::default());
        assert!(store.record(&obs("cdn-b", Level::Http, "zz", T0, true, 20)));
        assert!(store.record(&obs("cdn-b", Level::Http, "aa", T0 + 1000, true, 20)));
        // A failure's latency (a timeout) is not a latency sample.
        assert!(store.record(&obs("cdn-b", Level::Http, "aa", T0 + 2000, false, 5000)));
        // Older than the latest of its vantage: counted, but not the latest.
        assert!(store.record(&obs("cdn-b", Level::Http, "zz", T0 - 1000, false, 20)));
        assert!(store.record(&obs("cdn-a", Level::Dns, "aa", T0, true, 1)));
        assert_eq!(
            store.target_names(),
            vec![Arc::<str>::from("cdn-a"), Arc::from("cdn-b")]
        );
        let t = store.target("cdn-b").expect("created");
        let st = t.stats(Level::Http, T0 + 2000, Win::M1);
        assert_eq!((st.count, st.failures), (4, 2));
        let twenty = Some(bin_value(latency_bin(ms(20))));
        assert_eq!((st.p50, st.p99), (twenty, twenty));
        assert_eq!(t.stats(Level::Dns, T0 + 2000, Win::M1).count, 0);
        assert_eq!(t.series(Level::Http).stats(T0 + 2000, Win::M10).count, 4);
        let last: Vec<(&str, u64, bool)> = t
            .last(Level::Http)
            .iter()
            .map(|o| (&*o.vantage, o.at_ms, o.ok))
            .collect();
        assert_eq!(last, [("aa", T0 + 2000, false), ("zz", T0, true)]);
        assert_eq!(t.last_from(Level::Http, "zz").map(|o| o.at_ms), Some(T0));
        assert!(t.last_from(Level::Http, "nope").is_none());
        assert!(t.last(Level::Tls).is_empty());
        assert!(format!("{store:?}").contains("cdn-b"));
        // Too old for the windows: rejected.
        assert!(!store.record(&obs("cdn-b", Level::Http, "aa", T0 - 3_600_000, true, 1)));
        store.retain_targets(|name| name != "cdn-b");
        assert_eq!(store.target_names(), vec![Arc::<str>::from("cdn-a")]);
        assert!(store.target("cdn-b").is_none());
    }

    #[test]
    fn latest_per_vantage_is_bounded() {
        let mut t = TargetHealth::new(WindowConfig::default());
        for i in 0..(MAX_VANTAGES as u64 + 10) {
            t.record(&obs(
                "x",
                Level::Check,
                &format!("v{i:03}"),
                T0 + i,
                true,
                1,
            ));
        }
        let last = t.last(Level::Check);
        assert_eq!(last.len(), MAX_VANTAGES);
        // The least recently seen went first.
        assert_eq!(&*last[0].vantage, "v010");
    }

    #[test]
    fn types_are_send() {
        fn send<T: Send>() {}
        send::<Series>();
        send::<TargetHealth>();
        send::<HealthStore>();
    }
}
