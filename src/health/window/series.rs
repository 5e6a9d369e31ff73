//! One stream of observations (one level of one target): per-second buckets, the running
//! aggregate of each window, and the vantage timelines for availability.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::latency::{self, LatencyHist, latency_bin};
use super::stats::{Counts, WINDOWS, Win, WindowConfig, WindowStats};
use super::timeline::Timeline;
use crate::health::CacheStatus;

/// How far back (seconds, relative to the newest second seen) a [`Series`] keeps and accepts data.
pub const HORIZON_SECS: u64 = 600;

/// Upper bound on the per-second buckets a [`Series`] holds (one per second of the horizon, only
/// for seconds that had observations).
pub const MAX_BUCKETS: usize = HORIZON_SECS as usize;

/// Vantage points tracked per [`Series`] for availability (and per level for
/// [`TargetHealth::last`](super::TargetHealth::last)); beyond that the least recently seen is
/// evicted.
pub const MAX_VANTAGES: usize = 64;

/// The observations of one second (only seconds that had some are kept).
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) second: u64,
    pub(super) counts: Counts<u32>,
    /// (histogram bin, samples), sorted by bin; at most `NUM_BINS` entries.
    pub(super) bins: Vec<(u16, u32)>,
}

impl Bucket {
    fn add(&mut self, ok: bool, bin: Option<usize>, hit: Option<bool>) {
        self.counts.add_one(ok, hit);
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
    counts: Counts<u64>,
    latency: LatencyHist,
}

impl Agg {
    fn new() -> Self {
        Agg {
            counts: Counts::ZERO,
            latency: latency::new_hist(),
        }
    }

    fn add_one(&mut self, ok: bool, bin: Option<usize>, hit: Option<bool>) {
        self.counts.add_one(ok, hit);
        if let Some(bin) = bin {
            self.latency.add_at(bin, 1);
        }
    }

    fn add(&mut self, b: &Bucket) {
        self.counts.add(&b.counts);
        for &(bin, n) in &b.bins {
            self.latency.add_at(usize::from(bin), n);
        }
    }

    fn sub(&mut self, b: &Bucket) {
        self.counts.sub(&b.counts);
        for &(bin, n) in &b.bins {
            self.latency.sub_at(usize::from(bin), n);
        }
    }

    fn stats(&self, win: Win, up: u64, down: u64) -> WindowStats {
        WindowStats::new(
            win,
            &self.counts,
            latency::percentiles(&self.latency),
            up,
            down,
        )
    }
}

/// One stream of observations (one level of one target) and its windows.
///
/// Counts and latency: a sparse deque of per-second buckets (only seconds that had observations,
/// at most [`MAX_BUCKETS`]) and one running aggregate per window, to which a bucket's contents are
/// added when an observation lands and from which they are subtracted when its second leaves the
/// window; advancing skips from bucket to bucket, never second by second. Recording costs a
/// binary search for the latency's bin and is otherwise O(1) amortised (a late observation costs
/// a binary search and, for a second not yet seen, an insertion into the deque); reading costs
/// O(histogram bins) plus the buckets that left the window since the last read.
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
    pub(super) buckets: VecDeque<Bucket>,
    /// `aggs[w]` is the sum of the buckets with `second >= lo[w]`.
    aggs: Box<[Agg; 3]>,
    lo: [u64; 3],
    pub(super) vantages: FxHashMap<Box<str>, Timeline>,
    /// Emptied bin lists of dropped buckets, for reuse.
    pub(super) spare: Vec<Vec<(u16, u32)>>,
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
        agg.stats(win, up, down)
    }

    /// [`Series::stats_since`] for every window, in [`WINDOWS`] order.
    pub fn all_stats_since(&mut self, now_ms: u64, since_ms: Option<u64>) -> [WindowStats; 3] {
        WINDOWS.map(|w| self.stats_since(now_ms, w, since_ms))
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
        agg.stats(win, up, down)
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
            counts: Counts::ZERO,
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
    pub(super) fn availability_ms(&self, now_ms: u64, win: Win) -> (u64, u64) {
        let from = now_ms.saturating_sub(win.secs() * 1000);
        let (mut up, mut down) = (0, 0);
        for tl in self.vantages.values() {
            tl.accumulate(from, now_ms, self.gap_ms, &mut up, &mut down);
        }
        (up, down)
    }
}
