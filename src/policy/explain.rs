//! What the chain did and does, for operators: the trace of one client's cell (`explain`),
//! the current answer of every cell of a service, and the names they print.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::cells::{CellMap, Gathered, client_cell, run_cell, service_cells};
use super::chain::{Ctx, Memory, Outcome, Pick, Step};
use super::inputs::PolicyInputs;
use crate::config::{PolicyKind, ValidConfig};
use crate::geo::GeoData;

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
        write!(f, "{}", format_trace(&self.outcome.trace))?;
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
    service: &Name,
    client: IpAddr,
) -> Option<Explanation> {
    let svc = cfg.services.iter().find(|s| s.name == *service)?;
    let cell = client_cell(cfg, svc, geo, inputs, client);
    let gathered = Gathered::new(cfg, inputs);
    let ctx = Ctx {
        trace: true,
        ..gathered.ctx(inputs, prev)
    };
    let (outcome, ttl) = run_cell(svc, &cell, &ctx, &mut Memory::default());
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
    name: &Name,
) -> Option<Vec<CellAnswer>> {
    let svc = cfg.services.iter().find(|s| s.name == *name)?;
    let gathered = Gathered::new(cfg, inputs);
    let ctx = gathered.ctx(inputs, prev);
    let names = &gathered.names;
    let (cells, map) = service_cells(cfg, svc, geo, inputs);
    let regions = cell_regions(geo, cells.len(), &map);
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

/// The regions whose clients fall in each of `n` cells.
fn cell_regions(geo: &GeoData, n: usize, map: &CellMap) -> Vec<BTreeSet<String>> {
    let mut regions: Vec<BTreeSet<String>> = vec![Default::default(); n];
    match map {
        CellMap::Single => {
            regions[0].insert("all".into());
        }
        CellMap::Located { per_loc, nets } => {
            let continent = |loc: &crate::geo::Location| match loc.continent {
                Some(_) => loc.continent_str().to_string(),
                None => "default".to_string(),
            };
            let mut by_continent: BTreeMap<String, BTreeSet<u16>> = Default::default();
            for (loc, &c) in geo.partition.locations.iter().zip(per_loc) {
                by_continent.entry(continent(loc)).or_default().insert(c);
            }
            for (loc, &c) in geo.partition.locations.iter().zip(per_loc) {
                let cont = continent(loc);
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
    regions
}

/// A trace as text, one step per block.
fn format_trace(trace: &[Step]) -> String {
    let mut s = String::new();
    for st in trace {
        let _ = writeln!(
            s,
            "  {:<20} [{}] → [{}]",
            st.step,
            st.input.join(", "),
            st.output.join(", ")
        );
        for n in &st.notes {
            let _ = writeln!(s, "  {:<20}   {n}", "");
        }
    }
    s
}
