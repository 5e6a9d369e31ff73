//! Merged address blocks: for one service, the address space cut into the largest CIDR blocks
//! within which every address gets the same choice. Built at compile time; a query does one
//! binary search and gets both the choice and the ECS scope prefix (gdnsd's merged supernets).

use std::net::IpAddr;

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

/// One block: `prefix` bits starting at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<T> {
    pub start: T,
    pub prefix: u8,
    pub choice: u16,
}

/// The blocks of both families, each covering its whole address space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks {
    pub v4: Vec<Block<u32>>,
    pub v6: Vec<Block<u128>>,
}

impl Blocks {
    /// The choice for an address and the prefix length of its block.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (u16, u8) {
        match ip {
            IpAddr::V4(a) => {
                let x = u32::from(a);
                let i = self.v4.partition_point(|b| b.start <= x);
                self.v4
                    .get(i.wrapping_sub(1))
                    .map_or((0, 0), |b| (b.choice, b.prefix))
            }
            IpAddr::V6(a) => {
                // An IPv4-mapped address (::ffff:a.b.c.d) is located as its IPv4 address; the
                // scope stays in IPv6 bits.
                if let Some(v4) = a.to_ipv4_mapped() {
                    let (c, p) = self.lookup(IpAddr::V4(v4));
                    return (c, p + 96);
                }
                let x = u128::from(a);
                let i = self.v6.partition_point(|b| b.start <= x);
                self.v6
                    .get(i.wrapping_sub(1))
                    .map_or((0, 0), |b| (b.choice, b.prefix))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs of equal choices over the whole space `[0, max]`, gaps as location 0.
fn runs(ranges: &[Range], max: u128, choice_of: &dyn Fn(u32) -> u16) -> Vec<(u128, u128, u16)> {
    let mut out: Vec<(u128, u128, u16)> = Vec::new();
    let mut push = |s: u128, e: u128, c: u16| match out.last_mut() {
        Some(last) if last.2 == c && last.1.checked_add(1) == Some(s) => last.1 = e,
        _ => out.push((s, e, c)),
    };
    let mut next = 0u128;
    let mut done = false;
    for r in ranges {
        if r.start > next {
            push(next, r.start - 1, choice_of(0));
        }
        push(r.start, r.end, choice_of(r.loc));
        match r.end.checked_add(1) {
            Some(n) if r.end < max => next = n,
            _ => {
                done = true;
                break;
            }
        }
    }
    if !done {
        push(next, max, choice_of(0));
    }
    out
}

/// Split `[s, e]` into the fewest aligned CIDR blocks of a `bits`-bit space.
fn decompose(mut s: u128, e: u128, bits: u32, choice: u16, out: &mut Vec<(u128, u8, u16)>) {
    loop {
        // Largest block aligned at s that does not pass e.
        let mut size_log = if s == 0 {
            bits
        } else {
            s.trailing_zeros().min(bits)
        };
        while size_log > 0 {
            let last = if size_log >= 128 {
                u128::MAX
            } else {
                s + ((1u128 << size_log) - 1)
            };
            if last <= e {
                break;
            }
            size_log -= 1;
        }
        out.push((s, (bits - size_log) as u8, choice));
        let last = if size_log >= 128 {
            u128::MAX
        } else {
            s + ((1u128 << size_log) - 1)
        };
        if last >= e {
            return;
        }
        s = last + 1;
    }
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
    let family = |ranges: &[Range], max: u128, bits: u32, v4: bool| {
        let mut r = runs(ranges, max, choice_of);
        // Service nets: paint them as pseudo-locations carrying the choice directly.
        for (net, choice) in nets
            .iter()
            .filter(|(n, _)| matches!(n, ipnet::IpNet::V4(_)) == v4)
        {
            let (s, e) = super::net_bounds(net);
            let mut as_ranges: Vec<Range> = r
                .iter()
                .map(|&(s, e, c)| Range {
                    start: s,
                    end: e,
                    loc: c as u32,
                })
                .collect();
            paint(&mut as_ranges, s, e, *choice as u32);
            r = runs(&as_ranges, max, &|c| c as u16);
        }
        let mut out = Vec::new();
        for (s, e, c) in r {
            decompose(s, e, bits, c, &mut out);
        }
        out
    };
    let v4 = family(&partition.v4, u32::MAX as u128, 32, true)
        .into_iter()
        .map(|(s, p, c)| Block {
            start: s as u32,
            prefix: p,
            choice: c,
        })
        .collect();
    let v6 = family(&partition.v6, u128::MAX, 128, false)
        .into_iter()
        .map(|(s, p, c)| Block {
            start: s,
            prefix: p,
            choice: c,
        })
        .collect();
    Blocks { v4, v6 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Location;

    fn v4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    fn partition(ranges: &[(&str, &str, u32)]) -> Partition {
        Partition {
            locations: vec![Location::default(); 4],
            first_override: 4,
            v4: ranges
                .iter()
                .map(|(s, e, l)| Range {
                    start: v4(s),
                    end: v4(e),
                    loc: *l,
                })
                .collect(),
            v6: Vec::new(),
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
        // Every address of the space is covered exactly once.
        let mut next = 0u64;
        for blk in &b.v4 {
            assert_eq!(blk.start as u64, next);
            next += 1u64 << (32 - blk.prefix);
        }
        assert_eq!(next, 1u64 << 32);
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
}
