//! The policy engine's compile step: (validated config, …) → immutable [`RoutingTable`].
//!
//! Compiling is kept apart from answering: the DNS path only reads what this produces. Later
//! inputs (geo, health, cost) feed the same function.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::{PolicyKind, TargetAnswer, ValidConfig};
use crate::dns::fast;
use crate::table::{
    CompiledService, Node, RoutingTable, Selector, ServiceAnswer, TableSettings, WeightedMember,
    ZoneEntry, suffixes, wire_key,
};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Settings of the table taken from the server section.
pub fn settings(cfg: &ValidConfig) -> TableSettings {
    TableSettings {
        max_udp_payload: cfg.server.max_udp_payload,
        hash_prefix_v4: cfg.server.hash_prefix_v4,
        hash_prefix_v6: cfg.server.hash_prefix_v6,
    }
}

/// Compile a routing table from a validated configuration.
pub fn compile(cfg: &ValidConfig) -> RoutingTable {
    let mut table = RoutingTable::empty(settings(cfg));
    table.generation = GENERATION.fetch_add(1, Ordering::Relaxed);

    for (zi, z) in cfg.zones.iter().enumerate() {
        let zi = zi as u32;
        let mut negative_soa = z.soa.clone();
        if let RData::SOA(soa) = &z.soa.data {
            negative_soa.ttl = z.soa.ttl.min(soa.minimum);
        }
        table.zones.push(ZoneEntry {
            apex: z.apex.clone(),
            soa: z.soa.clone(),
            negative_soa,
        });
        let apex_key = wire_key(&z.apex);
        table.zone_index.insert(apex_key.clone(), zi);
        let apex = table.nodes.entry(apex_key).or_default();
        apex.zone = zi;
        apex.rrsets.push((RecordType::SOA, vec![z.soa.clone()]));
        apex.rrsets.push((RecordType::NS, z.ns.clone()));
        for (owner, types) in &z.rrsets {
            let node = table.nodes.entry(wire_key(owner)).or_default();
            node.zone = zi;
            for (t, recs) in types {
                node.rrsets.push((*t, recs.clone()));
            }
            node.cut = *owner != z.apex && types.contains_key(&RecordType::NS);
        }
    }

    for svc in &cfg.services {
        let answers: Vec<ServiceAnswer> = svc
            .members
            .iter()
            .map(|m| {
                let t = &cfg.targets[m.target];
                let rec = |rd: RData| Record::from_rdata(svc.name.clone(), svc.ttl, rd);
                match &t.answer {
                    TargetAnswer::Cname(c) => ServiceAnswer {
                        target: t.name.clone(),
                        cname: Some(rec(RData::CNAME(CNAME(c.clone())))),
                        a: Vec::new(),
                        aaaa: Vec::new(),
                    },
                    TargetAnswer::Addrs { a, aaaa } => ServiceAnswer {
                        target: t.name.clone(),
                        cname: None,
                        a: a.iter().map(|ip| rec(RData::A(A(*ip)))).collect(),
                        aaaa: aaaa.iter().map(|ip| rec(RData::AAAA(AAAA(*ip)))).collect(),
                    },
                }
            })
            .collect();
        let selector = match svc.policy {
            PolicyKind::Failover => Selector::Fixed(0),
            PolicyKind::Weighted => Selector::Weighted(
                svc.members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| WeightedMember {
                        seed: target_seed(&cfg.targets[m.target].name),
                        weight: m.weight as f64,
                        answer: i,
                    })
                    .collect(),
            ),
        };
        let idx = table.services.len() as u32;
        table.services.push(CompiledService {
            name: svc.name.clone(),
            ttl: svc.ttl,
            selector,
            answers,
        });
        let node = table.nodes.entry(wire_key(&svc.name)).or_default();
        node.zone = svc.zone as u32;
        node.service = Some(idx);
    }

    table.empty_non_terminals = empty_non_terminals(&table.nodes, &table.zone_index);
    table.fast = fast::precompute(&table);
    table
}

/// Hash seed of a target: derived from its name only, so every steerd node and every restart
/// gives a client the same pick, and removing one target moves only the clients it had.
pub fn target_seed(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

fn empty_non_terminals(
    nodes: &FxHashMap<Box<[u8]>, Node>,
    zones: &FxHashMap<Box<[u8]>, u32>,
) -> FxHashSet<Box<[u8]>> {
    let mut out = FxHashSet::default();
    for key in nodes.keys() {
        for s in suffixes(key).skip(1) {
            if zones.contains_key(s) {
                break;
            }
            if !nodes.contains_key(s) {
                out.insert(Box::from(s));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn weighted(weights: &[(&str, f64)]) -> CompiledService {
        CompiledService {
            name: "www.example.com.".parse().unwrap(),
            ttl: 30,
            selector: Selector::Weighted(
                weights
                    .iter()
                    .enumerate()
                    .map(|(i, (n, w))| WeightedMember {
                        seed: target_seed(n),
                        weight: *w,
                        answer: i,
                    })
                    .collect(),
            ),
            answers: Vec::new(),
        }
    }

    fn client(i: u32) -> IpAddr {
        // Distinct /24s spread over the address space.
        IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761) & 0xffff_ff00))
    }

    #[test]
    fn weighted_split_is_within_3_percent_of_60_40() {
        let svc = weighted(&[("cdn-a", 60.0), ("cdn-b", 40.0)]);
        let n = 10_000;
        let a = (0..n)
            .filter(|i| svc.select(client(*i), 24, 56) == 0)
            .count();
        let share = a as f64 / n as f64;
        assert!((share - 0.60).abs() <= 0.03, "cdn-a share {share}");
    }

    #[test]
    fn removing_a_target_moves_only_its_own_clients() {
        let three = weighted(&[("cdn-a", 50.0), ("cdn-b", 30.0), ("cdn-c", 20.0)]);
        let two = weighted(&[("cdn-a", 50.0), ("cdn-b", 30.0)]);
        let mut moved_from_c = 0;
        for i in 0..10_000 {
            let before = three.select(client(i), 24, 56);
            let after = two.select(client(i), 24, 56);
            if before == 2 {
                moved_from_c += 1;
            } else {
                assert_eq!(before, after, "client {i} moved although its target stayed");
            }
        }
        assert!(moved_from_c > 1500, "cdn-c had {moved_from_c} clients");
    }

    #[test]
    fn pick_is_stable_per_client_and_per_subnet() {
        let svc = weighted(&[("cdn-a", 60.0), ("cdn-b", 40.0)]);
        for i in 0..1000 {
            let c = client(i);
            let first = svc.select(c, 24, 56);
            for _ in 0..3 {
                assert_eq!(svc.select(c, 24, 56), first);
            }
            // Another host in the same /24 gets the same answer.
            let IpAddr::V4(v4) = c else { unreachable!() };
            let sibling = IpAddr::V4(Ipv4Addr::from(u32::from(v4) | 0x7f));
            assert_eq!(svc.select(sibling, 24, 56), first);
        }
    }
}
