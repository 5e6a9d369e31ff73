//! The policy engine's compile step: (validated config, …) → immutable [`RoutingTable`].
//!
//! Compiling is kept apart from answering: the DNS path only reads what this produces. Later
//! inputs (geo, health, cost) feed the same function.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet};

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{PolicyKind, RegionChoice, RegionKey, Service, TargetAnswer, ValidConfig};
use crate::dns::fast;
use crate::geo::{Blocks, GeoData, build_blocks, distance_km};
use crate::table::{
    Choice, CompiledService, Node, RoutingTable, Selector, ServiceAnswer, TableSettings,
    WeightedMember, ZoneEntry, suffixes, wire_key,
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

/// Compile a routing table from a validated configuration and the geo data.
pub fn compile(cfg: &ValidConfig, geo: &GeoData) -> RoutingTable {
    let mut block_cache: BlockCache = HashMap::new();
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
                    .filter(|(_, m)| m.weight > 0)
                    .map(|(i, m)| WeightedMember {
                        seed: target_seed(&cfg.targets[m.target].name),
                        weight: m.weight as f64,
                        answer: i,
                    })
                    .collect(),
            ),
            PolicyKind::Geo => geo_selector(cfg, svc, geo, &mut block_cache),
            PolicyKind::Proximity => proximity_selector(cfg, svc, geo, &mut block_cache),
        };
        // Network overrides on a failover/weighted service: the base pick everywhere else.
        let selector = match selector {
            Selector::Fixed(_) | Selector::Weighted(_) if !svc.nets.is_empty() => {
                let base = match selector {
                    Selector::Weighted(m) => Choice::Weighted(m),
                    _ => Choice::Fixed(0),
                };
                let mut choices = vec![base];
                let nets = service_nets(cfg, svc, &mut choices);
                let per_loc = vec![0u16; geo.partition.locations.len()];
                Selector::Geo {
                    blocks: blocks_for(geo, per_loc, nets, &mut block_cache),
                    choices,
                }
            }
            other => other,
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
    table.cuts = table
        .nodes
        .iter()
        .filter(|(_, n)| n.cut)
        .map(|(k, _)| k.clone())
        .collect();
    table.fast = fast::precompute(&table);
    table.fast_nx = fast::precompute_nxdomain(&table);
    table
}

/// Blocks already built in this compile, by (choice per location, service nets): services with
/// the same map share one block table.
type BlockCache = HashMap<(Vec<u16>, Vec<(ipnet::IpNet, u16)>), Arc<Blocks>>;

fn region_choice(cfg: &ValidConfig, svc: &Service, c: &RegionChoice) -> Choice {
    match &c.weights {
        Some(w) => Choice::Weighted(
            c.members
                .iter()
                .zip(w)
                .map(|(&m, &w)| WeightedMember {
                    seed: target_seed(&cfg.targets[svc.members[m].target].name),
                    weight: w as f64,
                    answer: m,
                })
                .collect(),
        ),
        None => Choice::Fixed(c.members[0]),
    }
}

fn blocks_for(
    geo: &GeoData,
    per_loc: Vec<u16>,
    nets: Vec<(ipnet::IpNet, u16)>,
    cache: &mut BlockCache,
) -> Arc<Blocks> {
    let key = (per_loc, nets);
    if let Some(b) = cache.get(&key) {
        return b.clone();
    }
    let b = Arc::new(build_blocks(
        &geo.partition,
        &|loc| key.0.get(loc as usize).copied().unwrap_or(0),
        &key.1,
    ));
    cache.insert(key, b.clone());
    b
}

/// gdnsd-style map: the most specific region that matches the client's location wins
/// (continent/country, then continent, then `default`, then the service's `targets` order).
fn geo_selector(
    cfg: &ValidConfig,
    svc: &Service,
    geo: &GeoData,
    cache: &mut BlockCache,
) -> Selector {
    let mut choices: Vec<Choice> = svc
        .regions
        .iter()
        .map(|(_, c)| region_choice(cfg, svc, c))
        .collect();
    let fallback = match svc
        .regions
        .iter()
        .position(|(k, _)| *k == RegionKey::Default)
    {
        Some(i) => i as u16,
        None => {
            choices.push(Choice::Fixed(0));
            choices.len() as u16 - 1
        }
    };
    let per_loc: Vec<u16> = geo
        .partition
        .locations
        .iter()
        .map(|loc| {
            let country = svc.regions.iter().position(
                |(k, _)| matches!(k, RegionKey::Country(_, cc) if Some(*cc) == loc.country),
            );
            let continent = || {
                svc.regions.iter().position(
                    |(k, _)| matches!(k, RegionKey::Continent(c) if Some(*c) == loc.continent),
                )
            };
            country.or_else(continent).map_or(fallback, |i| i as u16)
        })
        .collect();
    let nets = service_nets(cfg, svc, &mut choices);
    Selector::Geo {
        blocks: blocks_for(geo, per_loc, nets, cache),
        choices,
    }
}

/// Nearest target by great-circle distance (gdnsd's auto_dc_coords); clients without
/// coordinates get the configured order.
fn proximity_selector(
    cfg: &ValidConfig,
    svc: &Service,
    geo: &GeoData,
    cache: &mut BlockCache,
) -> Selector {
    let mut choices: Vec<Choice> = (0..svc.members.len()).map(Choice::Fixed).collect();
    let per_loc: Vec<u16> = geo
        .partition
        .locations
        .iter()
        .map(|loc| {
            let Some(here) = loc.coords else { return 0 };
            svc.members
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    cfg.targets[m.target]
                        .coords
                        .map(|c| (i, distance_km(here, c)))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |(i, _)| i as u16)
        })
        .collect();
    let nets = service_nets(cfg, svc, &mut choices);
    Selector::Geo {
        blocks: blocks_for(geo, per_loc, nets, cache),
        choices,
    }
}

fn service_nets(
    cfg: &ValidConfig,
    svc: &Service,
    choices: &mut Vec<Choice>,
) -> Vec<(ipnet::IpNet, u16)> {
    svc.nets
        .iter()
        .map(|(net, c)| {
            choices.push(region_choice(cfg, svc, c));
            (*net, choices.len() as u16 - 1)
        })
        .collect()
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
    use crate::table::ClientAddr;
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
            .filter(|i| svc.select(ClientAddr::resolver(client(*i)), 24, 56).0 == 0)
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
            let before = three.select(ClientAddr::resolver(client(i)), 24, 56).0;
            let after = two.select(ClientAddr::resolver(client(i)), 24, 56).0;
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
            let first = svc.select(ClientAddr::resolver(c), 24, 56).0;
            for _ in 0..3 {
                assert_eq!(svc.select(ClientAddr::resolver(c), 24, 56).0, first);
            }
            // Another host in the same /24 gets the same answer.
            let IpAddr::V4(v4) = c else { unreachable!() };
            let sibling = IpAddr::V4(Ipv4Addr::from(u32::from(v4) | 0x7f));
            assert_eq!(svc.select(ClientAddr::resolver(sibling), 24, 56).0, first);
        }
    }
}
