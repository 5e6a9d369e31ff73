//! One vantage point's timeline for availability: runs of same-state observations.

/// State runs kept per vantage point. Only state changes (and gaps longer than `max_gap`) start a
/// run, so this is only reached by a vantage flapping faster than about twice a second; the
/// oldest runs are then dropped (that part of its timeline becomes unknown).
pub const MAX_RUNS_PER_VANTAGE: usize = 1024;

use std::collections::VecDeque;

/// A run of consecutive observations of one vantage point in the same state, each within
/// `max_gap` of the one before. It speaks for `[start, min(next run's start, last + max_gap))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) start: u64,
    pub(super) last: u64,
    /// Observations merged into the run (used to estimate their spacing, see `Timeline::insert`).
    n: u32,
    up: bool,
}

/// The state changes seen from one vantage point. Runs are sorted by `start` and
/// `runs[i].last <= runs[i + 1].start`.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    pub(super) runs: VecDeque<Run>,
    /// The newest `at_ms` of this vantage.
    pub(super) last_seen: u64,
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
    pub(super) fn insert(&mut self, t: u64, up: bool, gap: u64) {
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
    pub(super) fn prune(&mut self, horizon_ms: u64, gap: u64) {
        while !self.runs.is_empty() && self.end_of(0, gap) <= horizon_ms {
            self.runs.pop_front();
        }
    }

    /// Adds up and down milliseconds within `[from, to]`.
    pub(super) fn accumulate(&self, from: u64, to: u64, gap: u64, up: &mut u64, down: &mut u64) {
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
