//! A service's cells — how its clients split by policy kind (geo regions; proximity, latency
//! and cache-aware locations; network overrides; region overrides) — and the chain run for one.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::chain::{self, Cell, Ctx, Memory, Order, Outcome};
use super::cost::CostStatus;
use super::inputs::PolicyInputs;
use crate::config::{PolicyKind, RegionChoice, RegionKey, Service, ValidConfig};
use crate::geo::{GeoData, Location, distance_km};

/// Apply the region overrides matching `loc` to `cell` (the most specific per target).
fn with_region_overrides(mut cell: Cell, loc: &Location, inputs: &PolicyInputs) -> Cell {
    let mut regions: Vec<String> = Vec::new();
    for &t in &cell.candidates {
        let best = inputs
            .region_overrides
            .iter()
            .filter(|o| o.target == t)
            .filter_map(|o| o.matches(loc).map(|m| (m, o)))
            .max_by_key(|(m, _)| *m);
        if let Some((_, o)) = best {
            cell.overrides.push((t, o.state, o.reason.clone()));
            let r = region_label(&o.region);
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

/// How a service's clients map to cells.
pub(super) enum CellMap {
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
fn net_for(svc: &Service, ip: IpAddr) -> Option<usize> {
    svc.nets
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.contains(&ip))
        .max_by_key(|(_, (n, _))| n.prefix_len())
        .map(|(i, _)| i)
}

/// What makes two cells run the same chain: candidates, weights, region or distances.
type SameChain = (Vec<usize>, Option<Vec<u32>>, Option<String>, String);

/// Every cell of a service and how clients map to them.
pub(super) fn service_cells(
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
    let mut index: FxHashMap<SameChain, u16> = FxHashMap::default();
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

/// The cell `client` falls in: its network override's, else its location's.
pub(super) fn client_cell(
    cfg: &ValidConfig,
    svc: &Service,
    geo: &GeoData,
    inputs: &PolicyInputs,
    client: IpAddr,
) -> Cell {
    match net_for(svc, client) {
        Some(i) => region_cell(svc, &svc.nets[i].1, format!("net {}", svc.nets[i].0)),
        None => {
            let (loc, _) = geo.locate(client);
            with_region_overrides(location_cell(cfg, svc, &loc), &loc, inputs)
        }
    }
}

/// What the chain reads of every target, gathered once for all cells: names (for traces and
/// incumbents) and cost figures.
pub(super) struct Gathered {
    pub names: Vec<String>,
    costs: Vec<CostStatus>,
}

impl Gathered {
    pub fn new(cfg: &ValidConfig, inputs: &PolicyInputs) -> Self {
        Self {
            names: cfg.targets.iter().map(|t| t.name.clone()).collect(),
            costs: inputs.targets.iter().map(|t| t.cost.clone()).collect(),
        }
    }

    /// The chain's context, without a trace; `prev`: the incumbents of the last compile.
    pub fn ctx<'a>(&'a self, inputs: &'a PolicyInputs, prev: &'a Memory) -> Ctx<'a> {
        Ctx {
            names: &self.names,
            targets: &inputs.targets,
            costs: &self.costs,
            prev,
            trace: false,
        }
    }
}

/// Run the service's chain for one cell; the outcome and the TTL it gives (short while a
/// candidate is unstable). The latency incumbent chosen goes to `memory`.
pub(super) fn run_cell(
    svc: &Service,
    cell: &Cell,
    ctx: &Ctx<'_>,
    memory: &mut Memory,
) -> (Outcome, u32) {
    let order = order_of(svc, cell);
    let outcome = chain::run(cell, order, &svc.chain, ctx, &svc.name, memory);
    let ttl = if outcome.unstable {
        svc.ttl.min(svc.unstable_ttl)
    } else {
        svc.ttl
    };
    (outcome, ttl)
}
