//! The latency histogram's log-linear bins (16 linear sub-bins per power of two of
//! microseconds), laid over [`crate::hist`], and the value a bin reports.

use std::time::Duration;

use crate::hist::{self, Hist, Quantile};

/// log2 of the sub-bins per power of two.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// The last power of two with its own bins: [2^29, 2^30) µs.
const MAX_EXP: u32 = 29;
/// Bins 0..16 are exact microseconds 0..15; then 16 sub-bins for each octave [2^e, 2^(e+1)) µs,
/// e = 4..=29.
pub(super) const NUM_BINS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// Upper bounds (inclusive, ns) of every bin but the last, which takes everything above.
static BOUNDS: [u64; NUM_BINS - 1] = upper_bounds();

const fn upper_bounds() -> [u64; NUM_BINS - 1] {
    let mut out = [0; NUM_BINS - 1];
    let mut bin = 0;
    while bin < NUM_BINS - 1 {
        let (lo, width) = bin_bounds(bin);
        out[bin] = (lo + width) * 1000 - 1;
        bin += 1;
    }
    out
}

/// Latency samples by bin.
pub(super) type LatencyHist = Hist<{ NUM_BINS - 1 }, u32>;

pub(super) fn new_hist() -> LatencyHist {
    Hist::new(&BOUNDS)
}

/// The histogram bin of a latency.
pub(super) fn latency_bin(d: Duration) -> usize {
    hist::bucket_index(&BOUNDS, u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `(lowest value, width)` of a bin, in microseconds.
pub(super) const fn bin_bounds(bin: usize) -> (u64, u64) {
    if bin < SUB {
        return (bin as u64, 1);
    }
    let e = ((bin - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((bin - SUB) % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    ((1u64 << e) + sub * width, width)
}

/// The value reported for a bin: its midpoint.
pub(super) fn bin_value(bin: usize) -> Duration {
    let (lo, width) = bin_bounds(bin);
    Duration::from_nanos(lo * 1000 + width * 500)
}

/// p50, p95, p99.
const QUANTILES: [Quantile; 3] = [
    Quantile::new(50, 100),
    Quantile::new(95, 100),
    Quantile::new(99, 100),
];

/// p50, p95, p99 of `h` (see [`super::WindowStats`]).
pub(super) fn percentiles(h: &LatencyHist) -> [Option<Duration>; 3] {
    h.quantiles(&QUANTILES).map(|b| b.map(bin_value))
}
