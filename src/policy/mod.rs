//! The policy engine's compile step: (validated config, geo data, health/cost/latency/cache
//! inputs, previous latency incumbents) → immutable [`RoutingTable`], pure and synchronous.
//!
//! Each service's clients are split into *cells* (every client; the regions of a geo map; the
//! locations of a proximity, latency or cache-aware map; network overrides); the policy chain
//! ([`chain`]) runs once per cell and its result becomes the cell's precomputed choice. The
//! DNS path then only maps a client to its cell (one binary search over merged CIDR blocks)
//! and, for a weighted cell, hashes the client's subnet.

pub mod chain;
pub mod cost;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use crate::config::{PolicyKind, RegionChoice, RegionKey, Service, TargetAnswer, ValidConfig};
use crate::dns::precompute;
use crate::geo::{Blocks, GeoData, Location, build_blocks, distance_km};
use crate::table::{
    Choice, CompiledService, Node, RoutingTable, Selector, ServiceAnswer, TableSettings,
    WeightedMember, ZoneEntry, suffixes, wire_key,
};
use chain::{Cell, Memory, Order, Outcome, Pick, TargetInput};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Settings of the table taken from the server section.
pub fn settings(cfg: &ValidConfig) -> TableSettings {
    TableSettings {
        max_udp_payload: cfg.server.max_udp_payload,
        hash_prefix_v4: cfg.server.hash_prefix_v4,
        hash_prefix_v6: cfg.server.hash_prefix_v6,
    }
}

/// What the chain knows of every target at compile time (indexed like `cfg.targets`).
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    pub now_ms: u64,
    pub targets: Vec<TargetInput>,
    /// Operator overrides limited to a region's clients.
    pub region_overrides: Vec<RegionOverride>,
}

/// A target forced up, down or drained for the clients of one region only.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOverride {
    pub target: usize,
    pub region: RegionKey,
    pub state: crate::health::machine::EffectiveStatus,
    pub reason: String,
}

impl RegionOverride {
    /// How specifically the override matches clients at `loc` (None: it does not).
    fn matches(&self, loc: &Location) -> Option<u8> {
        match self.region {
            RegionKey::Country(_, cc) if loc.country == Some(cc) => Some(3),
            RegionKey::Continent(c) if loc.continent == Some(c) => Some(2),
            RegionKey::Default if loc.continent.is_none() => Some(1),
            _ => None,
        }
    }
}

/// Apply the region overrides matching `loc` to `cell` (the most specific per target).
fn with_region_overrides(mut cell: Cell, loc: &Location, inputs: &PolicyInputs) -> Cell {
    for &t in &cell.candidates {
        let best = inputs
            .region_overrides
            .iter()
            .filter(|o| o.target == t)
            .filter_map(|o| o.matches(loc).map(|m| (m, o)))
            .max_by_key(|(m, _)| *m);
        if let Some((_, o)) = best {
            cell.overrides.push((t, o.state, o.reason.clone()));
        }
    }
    let mut regions: Vec<String> = Vec::new();
    for (t, _, _) in &cell.overrides {
        if let Some(o) = inputs
            .region_overrides
            .iter()
            .filter(|o| o.target == *t)
            .filter_map(|o| o.matches(loc).map(|m| (m, o)))
            .max_by_key(|(m, _)| *m)
        {
            let r = region_label(&o.1.region);
            if !regions.contains(&r) {
                regions.push(r);
            }
        }
    }
    if !regions.is_empty() {
        cell.label = format!(
            "{} (operator override for {})",
            cell.label,
            regions.join(", ")
        );
    }
    cell
}

impl PolicyInputs {
    /// Every target healthy, unmeasured and unmetered.
    pub fn unknown(cfg: &ValidConfig) -> Self {
        Self {
            now_ms: 0,
            targets: cfg.targets.iter().map(|_| TargetInput::unknown()).collect(),
            region_overrides: Vec::new(),
        }
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

    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let costs: Vec<cost::CostStatus> = inputs.targets.iter().map(|t| t.cost.clone()).collect();
    let ctx = chain::Ctx {
        names: &names,
        targets: &inputs.targets,
        costs: &costs,
        prev,
        trace: false,
    };
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

/// How a service's clients map to cells.
enum CellMap {
    /// One cell for everyone.
    Single,
    /// A cell per location of the geo partition, plus network overrides.
    Located {
        per_loc: Vec<u16>,
        nets: Vec<(ipnet::IpNet, u16)>,
    },
}

fn order_of(svc: &Service, cell: &Cell) -> Order {
    match svc.policy {
        PolicyKind::Latency => Order::Latency,
        PolicyKind::CacheAware => Order::CacheAware,
        PolicyKind::Weighted if cell.weights.is_some() => Order::Weighted,
        _ if cell.weights.is_some() => Order::Weighted,
        _ => Order::Failover,
    }
}

fn region_cell(svc: &Service, c: &RegionChoice, label: String) -> Cell {
    Cell {
        label,
        candidates: c.members.iter().map(|&m| svc.members[m].target).collect(),
        weights: c.weights.clone(),
        region: None,
        distances: None,
        overrides: Vec::new(),
    }
}

fn all_cell(svc: &Service) -> Cell {
    let weighted = svc.policy == PolicyKind::Weighted;
    let members: Vec<_> = svc
        .members
        .iter()
        .filter(|m| !weighted || m.weight > 0)
        .collect();
    Cell {
        label: "all clients".into(),
        candidates: members.iter().map(|m| m.target).collect(),
        weights: weighted.then(|| members.iter().map(|m| m.weight).collect()),
        region: None,
        distances: None,
        overrides: Vec::new(),
    }
}

fn continent_str(c: Option<[u8; 2]>) -> Option<String> {
    c.and_then(|c| std::str::from_utf8(&c).ok().map(str::to_string))
}

/// The cell of clients at `loc`, for policies whose cells depend on the location.
fn location_cell(cfg: &ValidConfig, svc: &Service, loc: &Location) -> Cell {
    match svc.policy {
        PolicyKind::Geo => {
            let i = geo_region(svc, loc);
            match i {
                Some(i) => {
                    let (k, c) = &svc.regions[i];
                    region_cell(svc, c, format!("region {}", region_label(k)))
                }
                None => Cell {
                    label: "clients in no region (the service's targets)".into(),
                    candidates: svc.members.iter().map(|m| m.target).collect(),
                    weights: None,
                    region: None,
                    distances: None,
                    overrides: Vec::new(),
                },
            }
        }
        PolicyKind::Proximity | PolicyKind::CacheAware => {
            let mut c: Vec<(usize, Option<f64>)> = svc
                .members
                .iter()
                .map(|m| {
                    let d = match (loc.coords, cfg.targets[m.target].coords) {
                        (Some(a), Some(b)) => Some(distance_km(a, b)),
                        _ => None,
                    };
                    (m.target, d)
                })
                .collect();
            if svc.policy == PolicyKind::Proximity {
                c.sort_by(|a, b| match (a.1, b.1) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                });
            }
            Cell {
                label: match loc.country {
                    Some(_) => format!("clients located in {}", loc.country_str()),
                    None => "clients without a location".into(),
                },
                candidates: c.iter().map(|x| x.0).collect(),
                weights: None,
                region: continent_str(loc.continent),
                distances: Some(c.iter().map(|x| x.1).collect()),
                overrides: Vec::new(),
            }
        }
        PolicyKind::Latency => Cell {
            label: match continent_str(loc.continent) {
                Some(c) => format!("region {c}"),
                None => "clients without a region".into(),
            },
            candidates: svc.members.iter().map(|m| m.target).collect(),
            weights: None,
            region: continent_str(loc.continent),
            distances: None,
            overrides: Vec::new(),
        },
        PolicyKind::Failover | PolicyKind::Weighted => all_cell(svc),
    }
}

fn region_label(k: &RegionKey) -> String {
    let s = |c: &[u8; 2]| String::from_utf8_lossy(c).into_owned();
    match k {
        RegionKey::Country(ct, cc) => format!("{}/{}", s(ct), s(cc)),
        RegionKey::Continent(c) => s(c),
        RegionKey::Default => "default".into(),
    }
}

/// The geo map's most specific region for `loc`: country, continent, default.
fn geo_region(svc: &Service, loc: &Location) -> Option<usize> {
    let country = svc
        .regions
        .iter()
        .position(|(k, _)| matches!(k, RegionKey::Country(_, cc) if Some(*cc) == loc.country));
    let continent = || {
        svc.regions
            .iter()
            .position(|(k, _)| matches!(k, RegionKey::Continent(c) if Some(*c) == loc.continent))
    };
    let default = || {
        svc.regions
            .iter()
            .position(|(k, _)| *k == RegionKey::Default)
    };
    country.or_else(continent).or_else(default)
}

/// The service's network overrides that contain `ip`, longest prefix first.
fn net_for(svc: &Service, ip: std::net::IpAddr) -> Option<usize> {
    svc.nets
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.contains(&ip))
        .max_by_key(|(_, (n, _))| n.prefix_len())
        .map(|(i, _)| i)
}

/// What makes two cells run the same chain: candidates, weights, region or distances.
type CellKey = (Vec<usize>, Option<Vec<u32>>, Option<String>, String);

/// Every cell of a service and how clients map to them.
fn service_cells(
    cfg: &ValidConfig,
    svc: &Service,
    geo: &GeoData,
    inputs: &PolicyInputs,
) -> (Vec<Cell>, CellMap) {
    let overridden = inputs
        .region_overrides
        .iter()
        .any(|o| svc.members.iter().any(|m| m.target == o.target));
    let located = overridden || !matches!(svc.policy, PolicyKind::Failover | PolicyKind::Weighted);
    if !located && svc.nets.is_empty() {
        return (vec![all_cell(svc)], CellMap::Single);
    }
    let mut cells: Vec<Cell> = Vec::new();
    let mut index: FxHashMap<CellKey, u16> = FxHashMap::default();
    let mut per_loc = Vec::with_capacity(geo.partition.locations.len());
    for loc in &geo.partition.locations {
        let cell = location_cell(cfg, svc, loc);
        let cell = if overridden {
            with_region_overrides(cell, loc, inputs)
        } else {
            cell
        };
        // Cells that run the same chain are one cell (cache-aware cells differ by distances,
        // so they are keyed by their order of proximity scores).
        let key = (
            cell.candidates.clone(),
            cell.weights.clone(),
            if svc.policy == PolicyKind::CacheAware {
                cell.distances.as_ref().map(|d| {
                    d.iter()
                        .map(|x| format!("{:.0}", x.unwrap_or(-1.0)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
            } else {
                cell.region.clone()
            },
            cell.overrides
                .iter()
                .map(|(t, s, _)| format!("{t}:{s}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        let i = *index.entry(key).or_insert_with(|| {
            cells.push(cell);
            cells.len() as u16 - 1
        });
        per_loc.push(i);
    }
    let nets = svc
        .nets
        .iter()
        .map(|(net, c)| {
            cells.push(region_cell(svc, c, format!("net {net}")));
            (*net, cells.len() as u16 - 1)
        })
        .collect();
    (cells, CellMap::Located { per_loc, nets })
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
    ctx: &chain::Ctx<'_>,
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

/// Run the service's chain for one cell; the outcome and the TTL it gives (short while a
/// candidate is unstable). The latency incumbent chosen goes to `memory`.
fn run_cell(
    svc: &Service,
    cell: &Cell,
    ctx: &chain::Ctx<'_>,
    memory: &mut Memory,
) -> (Outcome, u32) {
    let key = || format!("{}|{}", svc.name, cell.label);
    let outcome = chain::run(cell, order_of(svc, cell), &svc.chain, ctx, &key, memory);
    let ttl = if outcome.unstable {
        svc.ttl.min(svc.unstable_ttl)
    } else {
        svc.ttl
    };
    (outcome, ttl)
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

/// The chain's trace for one client of one service.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub service: String,
    pub policy: PolicyKind,
    pub cell: String,
    pub outcome: Outcome,
    pub ttl: u32,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "policy chain of {} (policy {}), {}:",
            self.service,
            policy_name(self.policy),
            self.cell
        )?;
        write!(f, "{}", chain::format_trace(&self.outcome.trace))?;
        let answer = match &self.outcome.pick {
            Pick::Fixed(_) => self
                .outcome
                .trace
                .last()
                .map(|s| s.output.join(" + "))
                .unwrap_or_default(),
            Pick::Weighted(_) => "a weighted pick per client subnet (see the answer)".into(),
            Pick::ServFail => "SERVFAIL".into(),
            Pick::Fallback => "the fallback CNAME".into(),
        };
        writeln!(
            f,
            "  result: {answer}, TTL {}{}",
            self.ttl,
            if self.outcome.all_down {
                " (every candidate down)"
            } else {
                ""
            }
        )
    }
}

/// The configuration's name of a policy.
pub fn policy_name(p: PolicyKind) -> &'static str {
    match p {
        PolicyKind::Failover => "failover",
        PolicyKind::Weighted => "weighted",
        PolicyKind::Geo => "geo",
        PolicyKind::Proximity => "proximity",
        PolicyKind::Latency => "latency",
        PolicyKind::CacheAware => "cache_aware",
    }
}

/// Run the chain for the cell `client` falls in, with tracing, without compiling a table.
pub fn explain(
    cfg: &ValidConfig,
    geo: &GeoData,
    inputs: &PolicyInputs,
    prev: &Memory,
    service: &hickory_proto::rr::Name,
    client: std::net::IpAddr,
) -> Option<Explanation> {
    let svc = cfg.services.iter().find(|s| s.name == *service)?;
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let cell = match net_for(svc, client) {
        Some(i) => region_cell(svc, &svc.nets[i].1, format!("net {}", svc.nets[i].0)),
        None => {
            let (loc, _) = geo.locate(client);
            with_region_overrides(location_cell(cfg, svc, &loc), &loc, inputs)
        }
    };
    let mut scratch = Memory::default();
    let costs: Vec<cost::CostStatus> = inputs.targets.iter().map(|t| t.cost.clone()).collect();
    let ctx = chain::Ctx {
        names: &names,
        targets: &inputs.targets,
        costs: &costs,
        prev,
        trace: true,
    };
    let (outcome, ttl) = run_cell(svc, &cell, &ctx, &mut scratch);
    Some(Explanation {
        service: svc.name.to_string(),
        policy: svc.policy,
        cell: cell.label,
        outcome,
        ttl,
    })
}

/// The answer one cell of clients gets now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CellAnswer {
    /// "all clients", "region EU", "clients located in DE", "net 10.0.0.0/8".
    pub cell: String,
    /// Regions whose clients fall in this cell: continents, or CONTINENT/COUNTRY when only
    /// some countries of a continent do ("default" for clients without a location).
    pub regions: Vec<String>,
    /// "targets", "weighted", "servfail" or "fallback".
    pub kind: &'static str,
    /// The targets answered, with weights for a weighted split.
    pub targets: Vec<(String, Option<u32>)>,
    pub ttl: u32,
    pub all_down: bool,
}

/// The current answer of every cell of service `name` (None: no such service).
pub fn cell_answers(
    cfg: &ValidConfig,
    geo: &GeoData,
    inputs: &PolicyInputs,
    prev: &Memory,
    name: &hickory_proto::rr::Name,
) -> Option<Vec<CellAnswer>> {
    let svc = cfg.services.iter().find(|s| s.name == *name)?;
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let costs: Vec<cost::CostStatus> = inputs.targets.iter().map(|t| t.cost.clone()).collect();
    let ctx = chain::Ctx {
        names: &names,
        targets: &inputs.targets,
        costs: &costs,
        prev,
        trace: false,
    };
    let (cells, map) = service_cells(cfg, svc, geo, inputs);
    // Which locations each cell has.
    let mut regions: Vec<std::collections::BTreeSet<String>> =
        vec![Default::default(); cells.len()];
    match &map {
        CellMap::Single => {
            regions[0].insert("all".into());
        }
        CellMap::Located { per_loc, nets } => {
            let mut by_continent: std::collections::BTreeMap<
                String,
                std::collections::BTreeSet<u16>,
            > = Default::default();
            for (loc, &c) in geo.partition.locations.iter().zip(per_loc) {
                let key = match loc.continent {
                    Some(_) => loc.continent_str().to_string(),
                    None => "default".into(),
                };
                by_continent.entry(key).or_default().insert(c);
            }
            for (loc, &c) in geo.partition.locations.iter().zip(per_loc) {
                let cont = match loc.continent {
                    Some(_) => loc.continent_str().to_string(),
                    None => "default".into(),
                };
                if by_continent[&cont].len() == 1 || loc.country.is_none() {
                    regions[c as usize].insert(cont);
                } else {
                    regions[c as usize].insert(format!("{cont}/{}", loc.country_str()));
                }
            }
            for (net, c) in nets {
                regions[*c as usize].insert(format!("net {net}"));
            }
        }
    }
    let mut scratch = Memory::default();
    let mut out = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let (o, ttl) = run_cell(svc, cell, &ctx, &mut scratch);
        let (kind, targets) = match &o.pick {
            Pick::Fixed(t) => (
                "targets",
                t.iter().map(|&t| (names[t].clone(), None)).collect(),
            ),
            Pick::Weighted(ws) => (
                "weighted",
                ws.iter()
                    .map(|&(t, w)| (names[t].clone(), Some(w)))
                    .collect(),
            ),
            Pick::ServFail => ("servfail", Vec::new()),
            Pick::Fallback => ("fallback", Vec::new()),
        };
        if regions[i].is_empty() {
            continue;
        }
        out.push(CellAnswer {
            cell: cell.label.clone(),
            regions: regions[i].iter().cloned().collect(),
            kind,
            targets,
            ttl,
            all_down: o.all_down,
        });
    }
    Some(out)
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
