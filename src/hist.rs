//! Latency histograms over fixed bucket bounds: the one histogram implementation (bucket lookup,
//! counts, merging, Prometheus-style cumulative buckets and nearest-rank quantiles). Callers own
//! their bounds (a `&'static` table of upper bounds in nanoseconds) and what a bucket's value is.
//!
//! Bucket `i < N` holds the values `v` with `bounds[i - 1] < v <= bounds[i]` (the first from 0);
//! bucket `N` holds everything above the last bound (Prometheus' `+Inf`).

use std::fmt::Debug;
use std::ops::{AddAssign, SubAssign};

/// A bucket counter: `u32` where memory matters, `u64` otherwise.
pub trait Count: Copy + Debug + Eq + AddAssign + SubAssign + Into<u64> {
    const ZERO: Self;
    const ONE: Self;
}

impl Count for u32 {
    const ZERO: u32 = 0;
    const ONE: u32 = 1;
}

impl Count for u64 {
    const ZERO: u64 = 0;
    const ONE: u64 = 1;
}

/// A nearest-rank quantile `num / den`: the smallest recorded value `v` such that at least
/// `ceil(num / den * n)` (and at least one) of the `n` values are `<= v`. Kept as a fraction so
/// the rank is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantile {
    num: u64,
    den: u64,
}

impl Quantile {
    /// `num / den`, with `0 <= num <= den` and `den > 0`.
    pub const fn new(num: u64, den: u64) -> Quantile {
        assert!(den > 0 && num <= den, "a quantile is a fraction in [0, 1]");
        Quantile { num, den }
    }

    /// The 1-based rank of this quantile among `n` values: `ceil(num * n / den)`, at least 1.
    pub fn rank(self, n: u64) -> u64 {
        let r = (u128::from(n) * u128::from(self.num)).div_ceil(u128::from(self.den));
        u64::try_from(r).unwrap_or(u64::MAX).max(1)
    }
}

/// The bucket of `ns` under `bounds` (strictly increasing upper bounds): the first bound `>= ns`,
/// or `bounds.len()` above them all.
#[inline]
pub fn bucket_index(bounds: &[u64], ns: u64) -> usize {
    bounds.partition_point(|&b| b < ns)
}

/// Counts per bucket over `N` upper bounds (so `N + 1` buckets), and their total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hist<const N: usize, C: Count = u64> {
    bounds: &'static [u64; N],
    counts: [C; N],
    /// Values above the last bound.
    above: C,
    total: u64,
}

impl<const N: usize, C: Count> Hist<N, C> {
    /// Empty, over `bounds`: upper bounds in nanoseconds, strictly increasing.
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        debug_assert!(strictly_increasing(bounds), "bounds must increase");
        Hist {
            bounds,
            counts: [C::ZERO; N],
            above: C::ZERO,
            total: 0,
        }
    }

    pub fn bounds(&self) -> &'static [u64; N] {
        self.bounds
    }

    /// Records `n` values of `ns` nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64, n: C) {
        self.add_at(bucket_index(self.bounds, ns), n);
    }

    /// Adds `n` to bucket `i` (`0..=N`), for callers that keep bucket indexes rather than values.
    #[inline]
    pub fn add_at(&mut self, i: usize, n: C) {
        *self.slot(i) += n;
        self.total += n.into();
    }

    /// Takes back `n` added to bucket `i` before.
    pub fn sub_at(&mut self, i: usize, n: C) {
        *self.slot(i) -= n;
        self.total -= n.into();
    }

    fn slot(&mut self, i: usize) -> &mut C {
        if i < N {
            &mut self.counts[i]
        } else {
            &mut self.above
        }
    }

    /// Adds every count of `other` (over the same bounds).
    pub fn merge(&mut self, other: &Self) {
        debug_assert!(self.bounds == other.bounds, "merging different bounds");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.above += other.above;
        self.total += other.total;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `N + 1` per-bucket counts, the last one above every bound.
    pub fn bucket_counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts
            .iter()
            .chain(std::iter::once(&self.above))
            .map(|&c| c.into())
    }

    /// `(upper bound in ns, values <= it)` for each bound, as Prometheus exposes a histogram (its
    /// `+Inf` bucket is [`Hist::count`]).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut sum = 0u64;
        self.bounds.iter().zip(&self.counts).map(move |(&le, &c)| {
            sum += c.into();
            (le, sum)
        })
    }

    /// The bucket holding each nearest-rank quantile (`qs` in ascending order), in one pass;
    /// None when nothing was recorded.
    pub fn quantiles<const K: usize>(&self, qs: &[Quantile; K]) -> [Option<usize>; K] {
        let mut out = [None; K];
        if self.total == 0 {
            return out;
        }
        let ranks = qs.map(|q| q.rank(self.total));
        debug_assert!(ranks.is_sorted(), "quantiles in ascending order");
        let (mut cum, mut k) = (0u64, 0);
        for (i, n) in self.bucket_counts().enumerate() {
            if n == 0 {
                continue;
            }
            cum += n;
            while k < K && cum >= ranks[k] {
                out[k] = Some(i);
                k += 1;
            }
            if k == K {
                break;
            }
        }
        out
    }
}

const fn strictly_increasing(b: &[u64]) -> bool {
    let mut i = 1;
    while i < b.len() {
        if b[i - 1] >= b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    static B: [u64; 3] = [10, 20, 40];

    #[test]
    fn bounds_are_inclusive_upper_bounds() {
        assert_eq!(bucket_index(&B, 0), 0);
        assert_eq!(bucket_index(&B, 10), 0);
        assert_eq!(bucket_index(&B, 11), 1);
        assert_eq!(bucket_index(&B, 40), 2);
        assert_eq!(bucket_index(&B, 41), 3);
        assert_eq!(bucket_index(&B, u64::MAX), 3);
        assert!(strictly_increasing(&B));
        assert!(!strictly_increasing(&[1, 1]));
    }

    #[test]
    fn record_merge_counts_and_cumulative() {
        let mut h: Hist<3> = Hist::new(&B);
        h.record(10, 2);
        h.record(15, 1);
        h.record(1000, 4);
        assert_eq!(h.count(), 7);
        assert_eq!(h.bucket_counts().collect::<Vec<_>>(), [2, 1, 0, 4]);
        let mut other: Hist<3> = Hist::new(&B);
        other.record(35, 3);
        h.merge(&other);
        assert_eq!(h.count(), 10);
        assert_eq!(h.bucket_counts().collect::<Vec<_>>(), [2, 1, 3, 4]);
        assert_eq!(
            h.cumulative().collect::<Vec<_>>(),
            [(10, 2), (20, 3), (40, 6)]
        );
        assert_eq!(h.bounds(), &B);
    }

    #[test]
    fn add_and_sub_by_index() {
        let mut h: Hist<3, u32> = Hist::new(&B);
        h.add_at(1, 5);
        h.add_at(3, 2);
        h.sub_at(1, 4);
        assert_eq!(h.count(), 3);
        assert_eq!(h.bucket_counts().collect::<Vec<_>>(), [0, 1, 0, 2]);
        h.sub_at(1, 1);
        h.sub_at(3, 2);
        assert_eq!(h, Hist::new(&B));
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let qs = [
            Quantile::new(0, 1),
            Quantile::new(50, 100),
            Quantile::new(95, 100),
            Quantile::new(1, 1),
        ];
        let mut h: Hist<3> = Hist::new(&B);
        assert_eq!(h.quantiles(&qs), [None; 4]);
        // 20 values: 19 in bucket 0, 1 above every bound. The 95th percentile is the 19th.
        h.record(5, 19);
        h.record(100, 1);
        assert_eq!(h.quantiles(&qs), [Some(0), Some(0), Some(0), Some(3)]);
        h.record(15, 1);
        // 21 values: rank ceil(19.95) = 20 is in bucket 1.
        assert_eq!(h.quantiles(&qs), [Some(0), Some(0), Some(1), Some(3)]);
        assert_eq!(Quantile::new(95, 100).rank(20), 19);
        assert_eq!(Quantile::new(95, 100).rank(21), 20);
        assert_eq!(Quantile::new(0, 1).rank(0), 1);
        assert_eq!(
            Quantile::new(99, 100).rank(u64::MAX),
            u64::MAX - u64::MAX / 100
        );
    }
}
