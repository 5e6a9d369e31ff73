//! Run tables: one address family cut into runs of equal values, kept as two flat arrays (the
//! sorted start of every run and its value). A run ends where the next one starts, so no end is
//! stored, and gaps are runs of their own. IPv6 starts are kept as their upper 64 bits while
//! every start is /64-aligned (all of a country database's are), which halves the table.

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
    /// IPv6 starts that are all /64-aligned, as their upper 64 bits.
    V6Hi(Vec<u64>),
    V6(Vec<u128>),
}

impl Starts {
    #[inline]
    fn get(&self, i: usize) -> u128 {
        match self {
            Starts::V4(v) => v[i] as u128,
            Starts::V6Hi(v) => (v[i] as u128) << 64,
            Starts::V6(v) => v[i],
        }
    }

    /// Index of the last start <= x.
    #[inline]
    fn find(&self, x: u128) -> usize {
        let n = match self {
            Starts::V4(v) => v.partition_point(|&s| s as u128 <= x),
            // s << 64 <= x exactly when s <= x >> 64.
            Starts::V6Hi(v) => v.partition_point(|&s| s <= (x >> 64) as u64),
            Starts::V6(v) => v.partition_point(|&s| s <= x),
        };
        n.saturating_sub(1)
    }

    fn push(&mut self, s: u128) {
        match self {
            Starts::V4(v) => v.push(s as u32),
            Starts::V6Hi(v) if s as u64 == 0 => v.push((s >> 64) as u64),
            Starts::V6Hi(v) => {
                let mut full: Vec<u128> = v.iter().map(|&h| (h as u128) << 64).collect();
                full.push(s);
                *self = Starts::V6(full);
            }
            Starts::V6(v) => v.push(s),
        }
    }

    fn shrink(&mut self) {
        match self {
            Starts::V4(v) => v.shrink_to_fit(),
            Starts::V6Hi(v) => v.shrink_to_fit(),
            Starts::V6(v) => v.shrink_to_fit(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Starts::V4(v) => v.capacity() * 4,
            Starts::V6Hi(v) => v.capacity() * 8,
            Starts::V6(v) => v.capacity() * 16,
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
                Family::V6 => Starts::V6Hi(Vec::new()),
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
    fn ipv6_starts_are_halved_until_one_is_not_64_aligned() {
        let a = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
        let r = RunsBuilder::from_ranges(Family::V6, [(a, a + (1 << 64) - 1, 1u16)], 0);
        assert!(matches!(r.starts, Starts::V6Hi(_)));
        assert_eq!(r.get(a + 5), 1);
        assert_eq!(r.get(a - 1), 0);
        assert_eq!(r.get(a + (1 << 64)), 0);
        assert_eq!(r.run_of(a + 77), (a, a + (1 << 64) - 1, 1));
        let r = RunsBuilder::from_ranges(
            Family::V6,
            [
                (a, a + (1 << 64) - 1, 1u16),
                (a + (1 << 64), a + (1 << 64) + 255, 2),
            ],
            0,
        );
        assert!(matches!(r.starts, Starts::V6(_)));
        assert_eq!(r.get(a + 5), 1);
        assert_eq!(r.get(a + (1 << 64) + 255), 2);
        assert_eq!(r.get(a + (1 << 64) + 256), 0);
        assert_eq!(r.run_of(u128::MAX), (a + (1 << 64) + 256, u128::MAX, 0));
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
}
