//! The routing table from the configuration and the chain's results: zone nodes, each
//! service's answers and selector (cells mapped to clients by shared CIDR blocks), and the
//! fingerprint that tells two tables' answers apart.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use super::cells::{CellMap, Gathered, run_cell, service_cells};
use super::chain::{Ctx, Memory, Pick};
use super::inputs::PolicyInputs;
use crate::config::{Service, TargetAnswer, ValidConfig};
use crate::dns::precompute;
use crate::geo::{Blocks, GeoData, build_blocks};
use crate::table::{
    Choice, CompiledService, Node, RoutingTable, Selector, ServiceAnswer, TableSettings,
    WeightedMember, ZoneEntry, suffixes, wire_key,
};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Settings of the table taken from the server section.
fn settings(cfg: &ValidConfig) -> TableSettings {
    TableSettings {
        max_udp_payload: cfg.server.max_udp_payload,
        hash_prefix_v4: cfg.server.hash_prefix_v4,
        hash_prefix_v6: cfg.server.hash_prefix_v6,
    }
}

/// Compile with every target healthy (no health data yet).
pub fn compile(cfg: &ValidConfig, geo: &GeoData) -> RoutingTable {
    compile_with(cfg, geo, &PolicyInputs::unknown(cfg), &Memory::default()).0
}

/// Compile a routing table; also returns the latency incumbents for the next compile.
pub fn compile_with(
    cfg: &ValidConfig,
    geo: &GeoData,
    inputs: &PolicyInputs,
    prev: &Memory,
) -> (RoutingTable, Memory) {
    let mut block_cache: BlockCache = HashMap::new();
    let mut table = RoutingTable::empty(settings(cfg));
    table.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let mut fp = FxHasher::default();

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

    let gathered = Gathered::new(cfg, inputs);
    let ctx = gathered.ctx(inputs, prev);
    let mut memory = Memory::default();
    for svc in &cfg.services {
        let (compiled, all_down) = compile_service(
            cfg,
            svc,
            geo,
            &ctx,
            inputs,
            &mut memory,
            &mut block_cache,
            &mut fp,
        );
        if all_down {
            table.all_down.push(svc.name.to_string());
        }
        let idx = table.services.len() as u32;
        table.services.push(compiled);
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
    table.fast = precompute::precompute(&table);
    table.fast_nx = precompute::precompute_nxdomain(&table);
    table.fingerprint = fp.finish();
    (table, memory)
}

/// An answer of a service, before it becomes records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AnswerKey {
    Targets(Vec<usize>, u32),
    Fallback(u32),
    ServFail,
}

#[allow(clippy::too_many_arguments)]
fn compile_service(
    cfg: &ValidConfig,
    svc: &Service,
    geo: &GeoData,
    ctx: &Ctx<'_>,
    inputs: &PolicyInputs,
    memory: &mut Memory,
    block_cache: &mut BlockCache,
    fp: &mut FxHasher,
) -> (CompiledService, bool) {
    let (cells, map) = service_cells(cfg, svc, geo, inputs);
    let mut keys: Vec<AnswerKey> = Vec::new();
    let mut intern = |k: AnswerKey| -> usize {
        match keys.iter().position(|x| *x == k) {
            Some(i) => i,
            None => {
                keys.push(k);
                keys.len() - 1
            }
        }
    };
    let names = ctx.names;
    let mut any_down = false;
    let mut choices: Vec<Choice> = Vec::with_capacity(cells.len());
    for cell in &cells {
        let (outcome, ttl) = run_cell(svc, cell, ctx, memory);
        any_down |= outcome.all_down;
        let choice = match outcome.pick {
            Pick::Fixed(t) => Choice::Fixed(intern(AnswerKey::Targets(t, ttl))),
            Pick::Weighted(ws) => Choice::Weighted(
                ws.into_iter()
                    .map(|(t, w)| WeightedMember {
                        seed: target_seed(&names[t]),
                        weight: w as f64,
                        answer: intern(AnswerKey::Targets(vec![t], ttl)),
                    })
                    .collect(),
            ),
            Pick::Fallback => Choice::Fixed(intern(AnswerKey::Fallback(ttl))),
            Pick::ServFail => Choice::Fixed(intern(AnswerKey::ServFail)),
        };
        choices.push(choice);
    }
    let selector = match map {
        CellMap::Single => match choices.pop() {
            Some(Choice::Fixed(i)) => Selector::Fixed(i),
            Some(Choice::Weighted(m)) => Selector::Weighted(m),
            None => Selector::Fixed(0),
        },
        CellMap::Located { per_loc, nets } => {
            per_loc.hash(fp);
            nets.hash(fp);
            let blocks = blocks_for(geo, per_loc, nets, block_cache);
            Selector::Geo { blocks, choices }
        }
    };
    keys.hash(fp);
    selector_shape(&selector).hash(fp);
    let answers = keys
        .iter()
        .map(|k| service_answer(cfg, svc, k, names))
        .collect();
    (
        CompiledService {
            name: svc.name.clone(),
            ttl: svc.ttl,
            selector,
            answers,
        },
        any_down,
    )
}

/// The parts of a selector that decide answers (for the table fingerprint).
type ChoiceShape = (usize, Vec<(u64, u64, usize)>);

fn selector_shape(s: &Selector) -> Vec<ChoiceShape> {
    let choice = |c: &Choice| match c {
        Choice::Fixed(i) => (*i, Vec::new()),
        Choice::Weighted(m) => (
            usize::MAX,
            m.iter()
                .map(|w| (w.seed, w.weight.to_bits(), w.answer))
                .collect(),
        ),
    };
    match s {
        Selector::Fixed(i) => vec![(*i, Vec::new())],
        Selector::Weighted(m) => vec![choice(&Choice::Weighted(m.clone()))],
        Selector::Geo { choices, .. } => choices.iter().map(choice).collect(),
    }
}

fn service_answer(
    cfg: &ValidConfig,
    svc: &Service,
    k: &AnswerKey,
    names: &[String],
) -> ServiceAnswer {
    let rec = |rd: RData, ttl: u32| Record::from_rdata(svc.name.clone(), ttl, rd);
    match k {
        AnswerKey::ServFail => ServiceAnswer {
            target: "SERVFAIL (every target down, fail-closed)".into(),
            cname: None,
            a: Vec::new(),
            aaaa: Vec::new(),
            servfail: true,
            targets: Vec::new(),
        },
        AnswerKey::Fallback(ttl) => ServiceAnswer {
            target: "fallback (every target down, fail-closed)".into(),
            cname: svc
                .fallback
                .clone()
                .map(|n| rec(RData::CNAME(CNAME(n)), *ttl)),
            a: Vec::new(),
            aaaa: Vec::new(),
            servfail: false,
            targets: Vec::new(),
        },
        AnswerKey::Targets(ts, ttl) => {
            let mut out = ServiceAnswer {
                target: ts
                    .iter()
                    .map(|&t| names[t].as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
                cname: None,
                a: Vec::new(),
                aaaa: Vec::new(),
                servfail: false,
                targets: ts.clone(),
            };
            for &t in ts {
                match &cfg.targets[t].answer {
                    TargetAnswer::Cname(c) => {
                        out.cname = Some(rec(RData::CNAME(CNAME(c.clone())), *ttl));
                        break;
                    }
                    TargetAnswer::Addrs { a, aaaa } => {
                        out.a.extend(a.iter().map(|ip| rec(RData::A(A(*ip)), *ttl)));
                        out.aaaa
                            .extend(aaaa.iter().map(|ip| rec(RData::AAAA(AAAA(*ip)), *ttl)));
                    }
                }
            }
            out
        }
    }
}

/// Blocks already built in this compile, by (cell per location, service nets): services with
/// the same map share one block table.
type BlockCache = HashMap<(Vec<u16>, Vec<(ipnet::IpNet, u16)>), Arc<Blocks>>;

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
    // Blocks built by an earlier compile on the same geo data, still used by a table.
    let shared = geo
        .block_cache
        .lock()
        .get(&key)
        .and_then(std::sync::Weak::upgrade);
    if let Some(b) = shared {
        cache.insert(key, b.clone());
        return b;
    }
    let b = Arc::new(build_blocks(
        &geo.partition,
        &|loc| key.0.get(loc as usize).copied().unwrap_or(0),
        &key.1,
    ));
    {
        let mut shared = geo.block_cache.lock();
        shared.retain(|_, w| w.strong_count() > 0);
        shared.insert(key.clone(), Arc::downgrade(&b));
    }
    cache.insert(key, b.clone());
    b
}

/// Hash seed of a target: derived from its name only, so every steerd node and every restart
/// gives a client the same pick, and removing one target moves only the clients it had.
fn target_seed(name: &str) -> u64 {
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
