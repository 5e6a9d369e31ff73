//! Run tables: one address family cut into runs of equal values, kept as flat arrays (the
//! sorted start of every run and its value). A run ends where the next one starts, so no end is
//! stored, and gaps are runs of their own. An IPv6 start takes 8 bytes, not 16: starts below
//! 2^64 (`::/64`, where an IPv6 database's IPv4 tree lies) as they are, the others as their
//! upper 64 bits, with the few that are not /64-aligned (networks longer than /64) listed
//! apart with their lower bits.

/// Address family of a run table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The last address of the family, as u128 (IPv4 in 0..2^32).
    pub fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// Sorted run starts; the first is always 0.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Starts {
    V4(Vec<u32>),
    V6(V6Starts),
}

/// IPv6 starts: those below 2^64 in `low`, then the others by their upper 64 bits in `hi`;
/// `lo_at` lists (ascending) the indices into `hi` of the starts whose lower 64 bits are not
/// zero, and `lo` those bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct V6Starts {
    low: Vec<u64>,
    hi: Vec<u64>,
    lo_at: Vec<u32>,
    lo: Vec<u64>,
}

impl V6Starts {
    #[inline]
    fn get(&self, i: usize) -> u128 {
        if let Some(&s) = self.low.get(i) {
            return s as u128;
        }
        let j = i - self.low.len();
        let lo = match self.lo_at.binary_search(&(j as u32)) {
            Ok(k) => self.lo[k],
            Err(_) => 0,
        };
        (self.hi[j] as u128) << 64 | lo as u128
    }

    /// Number of starts <= x.
    #[inline]
    fn count_le(&self, x: u128) -> usize {
        let Err(_) = u64::try_from(x) else {
            return self.low.partition_point(|&s| s as u128 <= x);
        };
        let (xh, xl) = ((x >> 64) as u64, x as u64);
        let base = self.low.len();
        // Every start of hi[..j] has upper bits <= xh; those equal to xh need their lower bits.
        let j = self.hi.partition_point(|&h| h <= xh);
        if j == 0 || self.hi[j - 1] != xh || self.lo_at.is_empty() {
            return base + j;
        }
        let k = self.hi[..j].partition_point(|&h| h < xh);
        let a = self.lo_at.partition_point(|&i| (i as usize) < k);
        let b = self.lo_at.partition_point(|&i| (i as usize) < j);
        // Within the group hi[k..j], only the first start may have lower bits 0.
        let m = self.lo[a..b].partition_point(|&l| l <= xl);
        if m > 0 {
            base + self.lo_at[a + m - 1] as usize + 1
        } else if a < b && self.lo_at[a] as usize == k {
            base + k
        } else {
            base + k + 1
        }
    }

    fn push(&mut self, s: u128) {
        match u64::try_from(s) {
            Ok(s) if self.hi.is_empty() => self.low.push(s),
            _ => {
                if s as u64 != 0 {
                    self.lo_at.push(self.hi.len() as u32);
                    self.lo.push(s as u64);
                }
                self.hi.push((s >> 64) as u64);
            }
        }
    }
}

impl Starts {
    #[inline]
    fn get(&self, i: usize) -> u128 {
        match self {
            Starts::V4(v) => v[i] as u128,
            Starts::V6(v) => v.get(i),
        }
    }

    /// Index of the last start <= x.
    #[inline]
    fn find(&self, x: u128) -> usize {
        let n = match self {
            Starts::V4(v) => v.partition_point(|&s| s as u128 <= x),
            Starts::V6(v) => v.count_le(x),
        };
        n.saturating_sub(1)
    }

    fn push(&mut self, s: u128) {
        match self {
            Starts::V4(v) => v.push(s as u32),
            Starts::V6(v) => v.push(s),
        }
    }

    fn shrink(&mut self) {
        match self {
            Starts::V4(v) => v.shrink_to_fit(),
            Starts::V6(v) => {
                v.low.shrink_to_fit();
                v.hi.shrink_to_fit();
                v.lo_at.shrink_to_fit();
                v.lo.shrink_to_fit();
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Starts::V4(v) => v.capacity() * 4,
            Starts::V6(v) => {
                (v.low.capacity() + v.hi.capacity() + v.lo.capacity()) * 8 + v.lo_at.capacity() * 4
            }
        }
    }
}

/// A whole address family as runs of equal values (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runs<V> {
    family: Family,
    starts: Starts,
    vals: Vec<V>,
}

impl<V: Copy + PartialEq> Runs<V> {
    /// The whole family as one run of `v`.
    pub fn whole(family: Family, v: V) -> Self {
        let mut b = RunsBuilder::new(family);
        b.push(0, v);
        b.finish()
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    /// Heap bytes held (for the memory figures in the docs).
    pub fn heap_bytes(&self) -> usize {
        self.starts.heap_bytes() + self.vals.capacity() * std::mem::size_of::<V>()
    }

    /// The run holding `x`: its first and last address and its value.
    #[inline]
    pub fn run_of(&self, x: u128) -> (u128, u128, V) {
        let i = self.starts.find(x);
        (self.starts.get(i), self.end(i), self.vals[i])
    }

    /// The value at `x`.
    #[inline]
    pub fn get(&self, x: u128) -> V {
        self.vals[self.starts.find(x)]
    }

    fn end(&self, i: usize) -> u128 {
        if i + 1 < self.vals.len() {
            self.starts.get(i + 1) - 1
        } else {
            self.family.max()
        }
    }

    /// Every run as (first, last, value), in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, u128, V)> + '_ {
        (0..self.vals.len()).map(|i| (self.starts.get(i), self.end(i), self.vals[i]))
    }

    /// The same runs with each value mapped through `f`, equal neighbours merged.
    pub fn map<W: Copy + PartialEq>(&self, f: impl Fn(V) -> W) -> Runs<W> {
        let mut b = RunsBuilder::new(self.family);
        for i in 0..self.vals.len() {
            b.push(self.starts.get(i), f(self.vals[i]));
        }
        b.finish()
    }

    /// These runs with `top` painted over them: sorted, disjoint (first, last, value) ranges.
    pub fn overlay(&self, top: &[(u128, u128, V)]) -> Runs<V> {
        let mut b = RunsBuilder::new(self.family);
        let max = self.family.max();
        // Copy this table's runs over [from, to].
        let copy = |b: &mut RunsBuilder<V>, from: u128, to: u128| {
            let mut i = self.starts.find(from);
            b.push(from, self.vals[i]);
            i += 1;
            while i < self.vals.len() && self.starts.get(i) <= to {
                b.push(self.starts.get(i), self.vals[i]);
                i += 1;
            }
        };
        let mut next = 0u128;
        for &(s, e, v) in top {
            if s > next {
                copy(&mut b, next, s - 1);
            }
            b.push(s, v);
            if e >= max {
                return b.finish();
            }
            next = e + 1;
        }
        copy(&mut b, next, max);
        b.finish()
    }
}

/// Builds a [`Runs`] from runs pushed in address order, the first at address 0.
#[derive(Debug)]
pub struct RunsBuilder<V> {
    family: Family,
    starts: Starts,
    vals: Vec<V>,
}

impl<V: Copy + PartialEq> RunsBuilder<V> {
    pub fn new(family: Family) -> Self {
        Self {
            family,
            starts: match family {
                Family::V4 => Starts::V4(Vec::new()),
                Family::V6 => Starts::V6(V6Starts::default()),
            },
            vals: Vec::new(),
        }
    }

    /// Start a run of `v` at `start` (after every earlier start; a run equal to the one before
    /// extends it).
    pub fn push(&mut self, start: u128, v: V) {
        debug_assert!(
            self.vals.is_empty() && start == 0
                || !self.vals.is_empty() && self.starts.get(self.vals.len() - 1) < start
        );
        if self.vals.last() == Some(&v) {
            return;
        }
        self.starts.push(start);
        self.vals.push(v);
    }

    /// Runs from sorted, disjoint (first, last, value) ranges, the space between them `gap`.
    pub fn from_ranges(
        family: Family,
        ranges: impl IntoIterator<Item = (u128, u128, V)>,
        gap: V,
    ) -> Runs<V> {
        let mut b = RangesBuilder::new(family, gap);
        for (s, e, v) in ranges {
            b.push(s, e, v);
        }
        b.finish()
    }

    pub fn finish(mut self) -> Runs<V> {
        self.starts.shrink();
        self.vals.shrink_to_fit();
        Runs {
            family: self.family,
            starts: self.starts,
            vals: self.vals,
        }
    }
}

/// Builds a [`Runs`] from sorted, disjoint ranges; the space between them gets a gap value.
#[derive(Debug)]
pub struct RangesBuilder<V> {
    runs: RunsBuilder<V>,
    gap: V,
    /// Where the next range may start (None: the space is covered).
    next: Option<u128>,
}

impl<V: Copy + PartialEq> RangesBuilder<V> {
    pub fn new(family: Family, gap: V) -> Self {
        Self {
            runs: RunsBuilder::new(family),
            gap,
            next: Some(0),
        }
    }

    /// Add `[s, e]` with value `v`, after every range added before.
    pub fn push(&mut self, s: u128, e: u128, v: V) {
        let Some(n) = self.next else { return };
        if s > n {
            self.runs.push(n, self.gap);
        }
        self.runs.push(s, v);
        self.next = e.checked_add(1).filter(|&x| x <= self.runs.family.max());
    }

    pub fn finish(mut self) -> Runs<V> {
        if let Some(n) = self.next {
            self.runs.push(n, self.gap);
        }
        self.runs.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_with_gaps_become_runs_and_back() {
        let r = RunsBuilder::from_ranges(Family::V4, [(10, 19, 1u32), (20, 29, 1), (40, 49, 2)], 0);
        let got: Vec<_> = r.iter().collect();
        assert_eq!(
            got,
            vec![
                (0, 9, 0),
                (10, 29, 1),
                (30, 39, 0),
                (40, 49, 2),
                (50, u32::MAX as u128, 0)
            ]
        );
        assert_eq!(r.get(0), 0);
        assert_eq!(r.get(25), 1);
        assert_eq!(r.run_of(45), (40, 49, 2));
        assert_eq!(r.get(u32::MAX as u128), 0);
        // A range up to the end of the space leaves no gap after it.
        let r = RunsBuilder::from_ranges(Family::V4, [(0, u32::MAX as u128, 7u32)], 0);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(12345), 7);
    }

    #[test]
    fn ipv6_starts_below_2_64_aligned_and_not() {
        let a = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
        let b = a + (1 << 64);
        let ranges = [
            (0x0100_0000, 0x0100_00ff, 3u16),
            (a, a + (1 << 64) - 1, 1),
            (b + 0x100, b + 0x1ff, 2),
            (b + 0x300, b + 0x3ff, 4),
        ];
        let r = RunsBuilder::from_ranges(Family::V6, ranges, 0);
        let Starts::V6(v) = &r.starts else { panic!() };
        assert_eq!((v.low.len(), v.hi.len(), v.lo_at.len()), (3, 6, 4));
        assert_eq!(r.run_of(0x0100_0010), (0x0100_0000, 0x0100_00ff, 3));
        assert_eq!(r.run_of(0x0100_0100), (0x0100_0100, a - 1, 0));
        assert_eq!(r.run_of(a - 1), (0x0100_0100, a - 1, 0));
        assert_eq!(r.run_of(a + 77), (a, a + (1 << 64) - 1, 1));
        // b starts a gap (aligned), then two runs inside b's /64 (not aligned).
        assert_eq!(r.run_of(b), (b, b + 0xff, 0));
        assert_eq!(r.run_of(b + 0x100), (b + 0x100, b + 0x1ff, 2));
        assert_eq!(r.run_of(b + 0x2ff), (b + 0x200, b + 0x2ff, 0));
        assert_eq!(r.run_of(b + 0x350), (b + 0x300, b + 0x3ff, 4));
        assert_eq!(r.run_of(b + (1 << 64)), (b + 0x400, u128::MAX, 0));
        assert_eq!(r.run_of(u128::MAX), (b + 0x400, u128::MAX, 0));
        // A /64 group whose first start is not aligned: below it, the run before the group.
        let c = b + (5u128 << 64);
        let r = RunsBuilder::from_ranges(Family::V6, [(a, a, 1u16), (c + 0x10, c + 0x1f, 2)], 0);
        assert_eq!(r.run_of(c), (a + 1, c + 0xf, 0));
        assert_eq!(r.run_of(c + 0x10), (c + 0x10, c + 0x1f, 2));
        assert_eq!(r.run_of(c + 0x20), (c + 0x20, u128::MAX, 0));
        assert_eq!(r.run_of(3), (0, a - 1, 0));
    }

    #[test]
    fn map_merges_and_overlay_paints() {
        let r = RunsBuilder::from_ranges(Family::V4, [(10, 19, 1u32), (20, 29, 2)], 0);
        let m = r.map(|v| u16::from(v != 0));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![(0, 9, 0), (10, 29, 1), (30, u32::MAX as u128, 0)]
        );
        let o = r.overlay(&[(0, 4, 9), (15, 24, 3), (100, u32::MAX as u128, 2)]);
        assert_eq!(
            o.iter().collect::<Vec<_>>(),
            vec![
                (0, 4, 9),
                (5, 9, 0),
                (10, 14, 1),
                (15, 24, 3),
                (25, 29, 2),
                (30, 99, 0),
                (100, u32::MAX as u128, 2)
            ]
        );
        assert_eq!(r.overlay(&[]), r);
    }

    #[test]
    fn lookups_match_a_linear_scan() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for family in [Family::V4, Family::V6] {
            for round in 0..200 {
                // Sorted, disjoint ranges; in IPv6 some below 2^64, most /64-aligned above it,
                // and in some rounds an unaligned one.
                let mut points: Vec<u128> = (0..2 * (rnd() % 40 + 1))
                    .map(|_| match family {
                        Family::V4 => rnd() as u32 as u128,
                        Family::V6 if rnd() % 4 == 0 => rnd() as u128,
                        // Unaligned starts, some in a few shared /64s.
                        Family::V6 if round % 3 == 0 => (rnd() as u128 % 4) << 64 | rnd() as u128,
                        Family::V6 if round % 3 == 1 => (rnd() as u128) << 64 | rnd() as u128,
                        Family::V6 => (rnd() as u128) << 64,
                    })
                    .collect();
                points.sort();
                points.dedup();
                let ranges: Vec<(u128, u128, u16)> = points
                    .chunks_exact(2)
                    .map(|p| (p[0], p[1] - 1, (rnd() % 3) as u16))
                    .filter(|r| r.0 <= r.1)
                    .collect();
                let r = RunsBuilder::from_ranges(family, ranges.iter().copied(), 9);
                let naive = |x: u128| {
                    ranges
                        .iter()
                        .find(|(s, e, _)| *s <= x && x <= *e)
                        .map_or(9, |r| r.2)
                };
                let mut probes = vec![0, family.max()];
                for &(s, e, _) in &ranges {
                    probes.extend([
                        s,
                        e,
                        s.saturating_sub(1),
                        e.saturating_add(1).min(family.max()),
                    ]);
                }
                for x in probes {
                    assert_eq!(r.get(x), naive(x), "{family:?} round {round} x {x:#x}");
                    let (s, e, v) = r.run_of(x);
                    assert!(s <= x && x <= e);
                    assert_eq!((naive(s), naive(e)), (v, v));
                }
                let runs: Vec<_> = r.iter().collect();
                for w in runs.windows(2) {
                    assert_eq!(w[0].1 + 1, w[1].0);
                    assert_ne!(w[0].2, w[1].2, "equal neighbours are merged");
                }
            }
        }
    }
}
