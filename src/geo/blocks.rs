//! Merged address blocks: for one service, the address space cut into the largest CIDR blocks
//! within which every address gets the same choice. Built at compile time; a query does one
//! binary search and gets both the choice and the ECS scope prefix (gdnsd's merged supernets).

use std::net::IpAddr;

use super::runs::{Family, Runs};
use super::{Partition, Range};

/// Paint `[start, end]` with `loc` over sorted, disjoint ranges (later paints win).
pub(crate) fn paint(ranges: &mut Vec<Range>, start: u128, end: u128, loc: u32) {
    let mut out = Vec::with_capacity(ranges.len() + 2);
    let mut inserted = false;
    for r in ranges.iter() {
        if r.end < start || r.start > end {
            if !inserted && r.start > end {
                out.push(Range { start, end, loc });
                inserted = true;
            }
            out.push(*r);
            continue;
        }
        if r.start < start {
            out.push(Range {
                start: r.start,
                end: start - 1,
                loc: r.loc,
            });
        }
        if !inserted {
            out.push(Range { start, end, loc });
            inserted = true;
        }
        if r.end > end {
            out.push(Range {
                start: end + 1,
                end: r.end,
                loc: r.loc,
            });
        }
    }
    if !inserted {
        out.push(Range { start, end, loc });
    }
    *ranges = out;
}

/// The blocks of both families: runs of equal choices. The block of an address is the
/// largest aligned CIDR block around it inside its run, computed at lookup ([`scope`]), so
/// only the runs are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    pub v4: Runs<u16>,
    pub v6: Runs<u16>,
}

impl Default for Blocks {
    fn default() -> Self {
        Self {
            v4: Runs::whole(Family::V4, 0),
            v6: Runs::whole(Family::V6, 0),
        }
    }
}

impl Blocks {
    /// The choice for an address and the prefix length of its block.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (u16, u8) {
        match ip {
            IpAddr::V4(a) => {
                let x = u32::from(a) as u128;
                let (s, e, c) = self.v4.run_of(x);
                (c, scope(x, s, e, 32))
            }
            IpAddr::V6(a) => {
                // An IPv4-mapped address (::ffff:a.b.c.d) is located as its IPv4 address; the
                // scope stays in IPv6 bits.
                if let Some(v4) = a.to_ipv4_mapped() {
                    let (c, p) = self.lookup(IpAddr::V4(v4));
                    return (c, p + 96);
                }
                let x = u128::from(a);
                let (s, e, c) = self.v6.run_of(x);
                (c, scope(x, s, e, 128))
            }
        }
    }

    /// Number of runs of both families.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// The prefix length of the largest aligned block of a `bits`-bit space that holds `x` and lies
/// within `[s, e]` (`s <= x <= e`): the block of `x` in the fewest-CIDR cover of the run.
///
/// The block of `x` with prefix `p` starts at `x & mask(p)`, which only grows with `p`, and
/// ends at `x | !mask(p)`, which only shrinks, so the answer is the larger of the smallest `p`
/// meeting each bound. Up to the `c` leading bits `x` shares with `s`, the start is `s` with
/// its low bits cleared, so it stays `>= s` exactly when those bits of `s` are zero; past them
/// it is `> s`. The end bound mirrors this with `e` and ones.
#[inline]
pub fn scope(x: u128, s: u128, e: u128, bits: u32) -> u8 {
    let pad = 128 - bits;
    let common = |a: u128| ((x ^ a).leading_zeros() - pad).min(bits);
    let lo = {
        let need = bits - s.trailing_zeros().min(bits);
        let c = common(s);
        if need <= c { need } else { c + 1 }
    };
    let hi = {
        let need = bits - e.trailing_ones().min(bits);
        let c = common(e);
        if need <= c { need } else { c + 1 }
    };
    lo.max(hi) as u8
}

/// Build the blocks of a service: `choice_of(location id)` gives the choice for each location;
/// `nets` (painted longest prefix last, so it wins) send networks to fixed choices.
pub fn build_blocks(
    partition: &Partition,
    choice_of: &dyn Fn(u32) -> u16,
    nets: &[(ipnet::IpNet, u16)],
) -> Blocks {
    let mut nets: Vec<&(ipnet::IpNet, u16)> = nets.iter().collect();
    nets.sort_by_key(|(n, _)| n.prefix_len());
    let family = |runs: &Runs<u32>, v4: bool| {
        let base = runs.map(choice_of);
        // Service nets: painted among themselves first (a few), then over the whole table.
        let mut top: Vec<Range> = Vec::new();
        for (net, choice) in nets
            .iter()
            .filter(|(n, _)| matches!(n, ipnet::IpNet::V4(_)) == v4)
        {
            let (s, e) = super::net_bounds(net);
            paint(&mut top, s, e, *choice as u32);
        }
        if top.is_empty() {
            return base;
        }
        let top: Vec<(u128, u128, u16)> =
            top.iter().map(|r| (r.start, r.end, r.loc as u16)).collect();
        base.overlay(&top)
    };
    Blocks {
        v4: family(&partition.v4, true),
        v6: family(&partition.v6, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Location;
    use crate::geo::runs::RunsBuilder;

    fn v4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    fn partition(ranges: &[(&str, &str, u32)]) -> Partition {
        Partition {
            locations: vec![Location::default(); 4],
            first_override: 4,
            v4: RunsBuilder::from_ranges(
                Family::V4,
                ranges.iter().map(|(s, e, l)| (v4(s), v4(e), *l)),
                0,
            ),
            v6: Runs::whole(Family::V6, 0),
        }
    }

    fn at(b: &Blocks, ip: &str) -> (u16, u8) {
        b.lookup(ip.parse().unwrap())
    }

    #[test]
    fn adjacent_24s_with_the_same_answer_merge_to_a_23() {
        // 10.0.0.0/24 and 10.0.1.0/24 are both location 1, around them unknown.
        let p = partition(&[("10.0.0.0", "10.0.0.255", 1), ("10.0.1.0", "10.0.1.255", 1)]);
        let b = build_blocks(&p, &|l| if l == 1 { 1 } else { 0 }, &[]);
        assert_eq!(at(&b, "10.0.0.7"), (1, 23));
        assert_eq!(at(&b, "10.0.1.200"), (1, 23));
        // Different answers keep them apart.
        let p = partition(&[("10.0.0.0", "10.0.0.255", 1), ("10.0.1.0", "10.0.1.255", 2)]);
        let b = build_blocks(&p, &|l| l as u16, &[]);
        assert_eq!(at(&b, "10.0.0.7"), (1, 24));
        assert_eq!(at(&b, "10.0.1.7"), (2, 24));
        // Two locations with the same answer merge too.
        let b = build_blocks(&p, &|l| u16::from(l != 0), &[]);
        assert_eq!(at(&b, "10.0.1.7"), (1, 23));
    }

    #[test]
    fn unaligned_runs_split_into_the_largest_aligned_blocks() {
        // 10.0.1.0 – 10.0.3.255 = /24 (10.0.1.0) + /23 (10.0.2.0).
        let p = partition(&[("10.0.1.0", "10.0.3.255", 1)]);
        let b = build_blocks(&p, &|l| l as u16, &[]);
        assert_eq!(at(&b, "10.0.1.1"), (1, 24));
        assert_eq!(at(&b, "10.0.2.1"), (1, 23));
        assert_eq!(at(&b, "10.0.3.1"), (1, 23));
        // The unknown space around it is covered by large blocks.
        assert_eq!(at(&b, "10.0.0.1"), (0, 24));
        assert_eq!(at(&b, "200.0.0.1"), (0, 1));
        assert_eq!(at(&b, "0.0.0.1"), (0, 5));
        assert_eq!(at(&b, "::1"), (0, 0));
        assert_eq!(at(&b, "::ffff:10.0.2.1"), (1, 23 + 96));
    }

    #[test]
    fn service_nets_win_and_split_blocks() {
        let p = partition(&[("10.0.0.0", "10.0.255.255", 1)]);
        let b = build_blocks(&p, &|l| l as u16, &[("10.0.5.0/24".parse().unwrap(), 3)]);
        assert_eq!(at(&b, "10.0.5.9"), (3, 24));
        // 10.0.0.0-10.0.4.255 = 10.0.0.0/22 + 10.0.4.0/24.
        assert_eq!(at(&b, "10.0.2.9"), (1, 22));
        assert_eq!(at(&b, "10.0.4.9"), (1, 24));
        assert_eq!(at(&b, "10.0.6.9"), (1, 23));
        assert_eq!(at(&b, "10.0.128.9"), (1, 17));
    }

    #[test]
    fn paint_splits_and_replaces() {
        let mut r = vec![Range {
            start: 0,
            end: 99,
            loc: 1,
        }];
        paint(&mut r, 10, 19, 2);
        paint(&mut r, 200, 210, 3);
        paint(&mut r, 15, 16, 4);
        let got: Vec<(u128, u128, u32)> = r.iter().map(|x| (x.start, x.end, x.loc)).collect();
        assert_eq!(
            got,
            vec![
                (0, 9, 1),
                (10, 14, 2),
                (15, 16, 4),
                (17, 19, 2),
                (20, 99, 1),
                (200, 210, 3)
            ]
        );
    }

    /// The fewest aligned CIDR blocks covering `[s, e]` of a `bits`-bit space, greedily from
    /// the left: the reference [`scope`] must agree with.
    fn decompose(mut s: u128, e: u128, bits: u32) -> Vec<(u128, u8)> {
        let mut out = Vec::new();
        loop {
            let mut size_log = if s == 0 {
                bits
            } else {
                s.trailing_zeros().min(bits)
            };
            let last = |size_log: u32| {
                if size_log >= 128 {
                    u128::MAX
                } else {
                    s + ((1u128 << size_log) - 1)
                }
            };
            while size_log > 0 && last(size_log) > e {
                size_log -= 1;
            }
            out.push((s, (bits - size_log) as u8));
            if last(size_log) >= e {
                return out;
            }
            s = last(size_log) + 1;
        }
    }

    #[test]
    fn scope_is_the_block_of_the_fewest_cidr_cover() {
        // xorshift: the same pseudo-random runs on every run of the test.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for bits in [32u32, 128] {
            let max = if bits == 32 {
                u32::MAX as u128
            } else {
                u128::MAX
            };
            for _ in 0..3000 {
                // Runs of every shape: aligned and not, tiny and huge, at the ends of the space.
                let a = ((rnd() as u128) << 64 | rnd() as u128) & max;
                let len = match rnd() % 4 {
                    0 => rnd() as u128 % 300,
                    1 => (1u128 << (rnd() % bits as u64)) - 1,
                    2 => ((rnd() as u128) << 64 | rnd() as u128) & max,
                    _ => max,
                };
                let s = match rnd() % 3 {
                    0 => 0,
                    1 => a & !((1u128 << (rnd() % bits as u64)) - 1),
                    _ => a,
                };
                let e = s.saturating_add(len).min(max);
                for (start, prefix) in decompose(s, e, bits) {
                    let size_m1 = max.checked_shr(prefix as u32).unwrap_or(0);
                    let end = start + size_m1;
                    for x in [
                        start,
                        end,
                        start + (((rnd() as u128) << 64 | rnd() as u128) & size_m1),
                    ] {
                        assert_eq!(
                            scope(x, s, e, bits),
                            prefix,
                            "bits {bits} run [{s:#x}, {e:#x}] x {x:#x}"
                        );
                    }
                }
            }
        }
    }
}
