//! The policy chain, NS1-style: for one group of clients (a *cell*: a region of a geo map, a
//! network override, a location of a proximity map, or every client), the service's candidate
//! targets go through small pure steps — health → geo → cost → one ordering step → select N —
//! each recording its input, output and reasons for `explain`.

use rustc_hash::FxHashMap;

use super::cost::{Commit, CostMode, CostPlace, CostStatus, apply_cost, cost_place};
pub use super::inputs::{CacheInputs, TargetInput};
use crate::config::schema::{AllDownMode, CostModeConfig};
use crate::health::machine::EffectiveStatus;

/// Proximity score in 0..=1: 1 at the client, 0 at the antipode (20,015 km).
pub fn proximity_score(distance_km: Option<f64>) -> f64 {
    match distance_km {
        Some(d) => (1.0 - d / 20_015.0).clamp(0.0, 1.0),
        None => 0.5,
    }
}

/// The ordering step of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The cell's order (configured, or by distance for proximity).
    Failover,
    /// The cell's weights, picked per client subnet by rendezvous hashing.
    Weighted,
    /// Lowest p95 first, with a stabilize band.
    Latency,
    /// Highest `proximity_weight × proximity + cache_weight × cache_score` first.
    CacheAware,
}

pub use crate::config::ChainSettings;

/// One group of clients and its candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// "all clients", "region EU", "region default", "net 10.0.0.0/8", "location DE".
    pub label: String,
    /// Candidates as target indices, in the cell's order.
    pub candidates: Vec<usize>,
    /// Weights of a weighted cell (same length as `candidates`).
    pub weights: Option<Vec<u32>>,
    /// Continent of the clients, for per-region latency.
    pub region: Option<String>,
    /// Distance from the clients to each candidate (km), for cache-aware scoring and traces.
    pub distances: Option<Vec<Option<f64>>>,
    /// Operator overrides for these clients only (target, state, reason): they replace the
    /// target's global state in this cell.
    pub overrides: Vec<(usize, EffectiveStatus, String)>,
}

/// The chain's result for a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// These targets (the first N of the order).
    Fixed(Vec<usize>),
    /// A weighted split among these (target, weight).
    Weighted(Vec<(usize, u32)>),
    /// Every candidate is down and the service fails closed: SERVFAIL.
    ServFail,
    /// … or its last-resort CNAME.
    Fallback,
}

/// One step of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: &'static str,
    pub input: Vec<String>,
    pub output: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub pick: Pick,
    /// An answer depends on a target that is recovering or changed recently.
    pub unstable: bool,
    /// Every candidate was down.
    pub all_down: bool,
    pub trace: Vec<Step>,
}

/// A cell of a service, as the latency incumbents know it: the service's name and the cell's
/// label ("www.example.com.", "region EU").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellId {
    pub service: String,
    pub cell: String,
}

impl CellId {
    pub fn new(service: impl Into<String>, cell: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            cell: cell.into(),
        }
    }
}

/// Incumbents of latency-ordered cells, carried from one compile to the next: cell → target
/// name.
pub type Memory = FxHashMap<CellId, String>;

/// The inputs the chain reads, shared by every cell of a compile.
pub struct Ctx<'a> {
    /// Target names (for traces and memory), indexed like the configuration's targets.
    pub names: &'a [String],
    pub targets: &'a [TargetInput],
    /// `targets[i].cost`, gathered once.
    pub costs: &'a [CostStatus],
    /// Latency incumbents of the previous compile.
    pub prev: &'a Memory,
    /// Record each step's input, output and reasons (explain); compiles skip it.
    pub trace: bool,
}

/// Run the chain for `cell` of `service` (the name its latency incumbent is kept under, with
/// the cell's label); the incumbent chosen now goes to `next`.
pub fn run(
    cell: &Cell,
    order: Order,
    settings: &ChainSettings,
    ctx: &Ctx<'_>,
    service: &(impl std::fmt::Display + ?Sized),
    next: &mut Memory,
) -> Outcome {
    let (names, targets, prev) = (ctx.names, ctx.targets, ctx.prev);
    let tracing = ctx.trace;
    let name = |t: usize| names.get(t).map(String::as_str).unwrap_or("?");
    let list = |v: &[usize]| {
        if tracing {
            v.iter().map(|&t| name(t).to_string()).collect::<Vec<_>>()
        } else {
            Vec::new()
        }
    };
    let unknown = TargetInput::unknown();
    let overridden: Vec<(usize, TargetInput)> = cell
        .overrides
        .iter()
        .map(|(t, state, reason)| {
            let mut i = targets.get(*t).unwrap_or(&unknown).clone();
            i.state = *state;
            i.reason = reason.clone();
            (*t, i)
        })
        .collect();
    let input = |t: usize| {
        overridden
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, i)| i)
            .unwrap_or_else(|| targets.get(t).unwrap_or(&unknown))
    };
    let mut trace = Vec::new();
    macro_rules! note {
        ($v:expr, $($arg:tt)*) => {
            if tracing {
                $v.push(format!($($arg)*));
            }
        };
    }
    let unstable = cell.candidates.iter().any(|&t| input(t).unstable);

    // health
    let mut notes = Vec::new();
    let mut healthy = Vec::new();
    let mut degraded = Vec::new();
    for &t in &cell.candidates {
        let i = input(t);
        if i.state.usable() {
            if i.state.is_degraded() {
                note!(notes, "{} demoted: degraded ({})", name(t), i.reason);
                degraded.push(t);
            } else if let Some(why) = &i.stale {
                note!(notes, "{} behind: {why}", name(t));
                degraded.push(t);
            } else {
                healthy.push(t);
            }
        } else {
            note!(
                notes,
                "{} dropped: {} ({})",
                name(t),
                i.state.as_str(),
                i.reason
            );
        }
    }
    let mut all_down = false;
    let mut cands: Vec<usize> = if order == Order::Weighted {
        // A weighted split keeps degraded members (their share only moves when they are down).
        cell.candidates
            .iter()
            .copied()
            .filter(|t| healthy.contains(t) || degraded.contains(t))
            .collect()
    } else {
        healthy.iter().chain(degraded.iter()).copied().collect()
    };
    if cands.is_empty() {
        all_down = true;
        match settings.all_down {
            AllDownMode::Closed => {
                let (pick, what) = if settings.has_fallback {
                    (Pick::Fallback, "the fallback answer")
                } else {
                    (Pick::ServFail, "SERVFAIL")
                };
                note!(notes, "every candidate is down: fail-closed, {what}");
                trace.push(Step {
                    step: "health",
                    input: list(&cell.candidates),
                    output: Vec::new(),
                    notes,
                });
                return Outcome {
                    pick,
                    unstable,
                    all_down,
                    trace,
                };
            }
            AllDownMode::Open => {
                // Least bad first: down by measurement before forced down/drained by an operator.
                let measured: Vec<usize> = cell
                    .candidates
                    .iter()
                    .copied()
                    .filter(|&t| input(t).state == EffectiveStatus::Down)
                    .collect();
                cands = if measured.is_empty() {
                    cell.candidates.clone()
                } else {
                    measured
                };
                note!(
                    notes,
                    "every candidate is down: fail-open, answering the least bad"
                );
            }
        }
    }
    trace.push(Step {
        step: "health",
        input: list(&cell.candidates),
        output: list(&cands),
        notes,
    });

    // geo
    trace.push(Step {
        step: "geo",
        input: list(&cands),
        output: list(&cands),
        notes: if tracing {
            vec![if cell.label == "all clients" {
                "no region restriction: every client has these candidates".to_string()
            } else {
                format!("candidates of {}", cell.label)
            }]
        } else {
            Vec::new()
        },
    });

    // cost
    // Where the steps before the ordering put each candidate: by the cost step (ahead for an
    // unmet commit, behind when over its cap), then by health (degraded behind healthy). An
    // ordering step sorts within these ranks only, so it never undoes a demotion.
    let mut cost_rank: Vec<(usize, CostPlace)> = Vec::new();
    if settings.cost != CostModeConfig::Off {
        let mode = match (settings.cost, order) {
            (CostModeConfig::Drop, _) | (_, Order::Weighted) => CostMode::Drop,
            _ => CostMode::Demote,
        };
        let commit = if settings.prefer_commit {
            Commit::Prefer
        } else {
            Commit::Ignore
        };
        let before = cands.clone();
        let unmetered = CostStatus::unmetered();
        let status = |t: usize| ctx.costs.get(t).unwrap_or(&unmetered);
        if !before.iter().all(|&t| status(t).over_cap) {
            cost_rank = before
                .iter()
                .map(|&t| (t, cost_place(status(t), mode, commit)))
                .collect();
        }
        let (after, reasons) = if ctx.costs.iter().any(|c| c.over_cap || c.under_commit) {
            apply_cost(&cands, ctx.costs, mode, commit)
        } else {
            (cands.clone(), Vec::new())
        };
        let notes = if tracing {
            reasons
                .into_iter()
                .map(|r| rename_targets(&r, names))
                .collect()
        } else {
            Vec::new()
        };
        cands = after;
        trace.push(Step {
            step: "cost",
            input: list(&before),
            output: list(&cands),
            notes,
        });
    }

    // order
    let before = cands.clone();
    let mut notes = Vec::new();
    let rank = |t: usize| {
        let place = cost_rank
            .iter()
            .find(|(x, _)| *x == t)
            .map_or(CostPlace::InPlace, |(_, p)| *p);
        (place, !all_down && input(t).demoted())
    };
    // Why a candidate ranks behind the others, for the trace.
    let behind_because = |t: usize| -> Option<&'static str> {
        match rank(t) {
            (CostPlace::Behind, _) => Some("over its cost cap"),
            (_, true) if input(t).state.is_degraded() => Some("degraded"),
            (_, true) => Some("stale content"),
            _ => None,
        }
    };
    let pick = match order {
        Order::Failover => {
            note!(notes, "configured order");
            None
        }
        Order::Weighted => {
            let weights: Vec<(usize, u32)> = cands
                .iter()
                .map(|&t| {
                    let w = cell
                        .weights
                        .as_ref()
                        .and_then(|w| cell.candidates.iter().position(|&c| c == t).map(|p| w[p]))
                        .unwrap_or(1);
                    (t, w)
                })
                .collect();
            let total: u32 = weights.iter().map(|(_, w)| w).sum();
            for (t, w) in &weights {
                note!(
                    notes,
                    "{} {:.1} % (weight {w})",
                    name(*t),
                    *w as f64 * 100.0 / total.max(1) as f64
                );
            }
            Some(Pick::Weighted(weights))
        }
        Order::Latency => {
            let region = cell.region.as_deref();
            let lat = |t: usize| input(t).latency_in(region);
            cands.sort_by(|a, b| {
                rank(*a)
                    .cmp(&rank(*b))
                    .then_with(|| match (lat(*a), lat(*b)) {
                        (Some((x, _)), Some((y, _))) => x.cmp(&y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    })
            });
            for &t in &cands {
                match lat(t) {
                    Some((d, src)) => note!(
                        notes,
                        "{} p95 {:.0} ms ({})",
                        name(t),
                        d.as_secs_f64() * 1000.0,
                        if src == "region" {
                            format!("from {}", region.unwrap_or("?"))
                        } else {
                            "all vantage points".to_string()
                        }
                    ),
                    None => note!(notes, "{} not measured", name(t)),
                }
            }
            // Stabilize: the incumbent keeps the lead unless beaten by the band.
            let id = CellId::new(service.to_string(), &cell.label);
            if let Some(inc_name) = prev.get(&id)
                && let Some(pos) = cands.iter().position(|&t| name(t) == inc_name)
                && pos > 0
                && rank(cands[pos]) == rank(cands[0])
                && let (Some((inc, _)), Some((best, _))) = (lat(cands[pos]), lat(cands[0]))
            {
                let gain = inc.saturating_sub(best);
                let gain_ms = gain.as_secs_f64() * 1000.0;
                let gain_pct = if inc.is_zero() {
                    0.0
                } else {
                    gain.as_secs_f64() * 100.0 / inc.as_secs_f64()
                };
                if gain_ms < settings.stabilize_ms as f64 && gain_pct < settings.stabilize_pct {
                    note!(
                        notes,
                        "{} stays: {} is faster by {gain_ms:.0} ms ({gain_pct:.1} %), inside the stabilize band ({} ms or {} %)",
                        name(cands[pos]),
                        name(cands[0]),
                        settings.stabilize_ms,
                        settings.stabilize_pct
                    );
                    let t = cands.remove(pos);
                    cands.insert(0, t);
                } else {
                    note!(
                        notes,
                        "{} takes over from {}: faster by {gain_ms:.0} ms ({gain_pct:.1} %)",
                        name(cands[0]),
                        name(cands[pos])
                    );
                }
            }
            if let Some(&first) = cands.first() {
                next.insert(id, name(first).to_string());
            }
            None
        }
        Order::CacheAware => {
            let score = |t: usize| {
                let d = cell.distances.as_ref().and_then(|d| {
                    cell.candidates
                        .iter()
                        .position(|&c| c == t)
                        .and_then(|p| d[p])
                });
                let p = proximity_score(d);
                let c = input(t).cache_in(cell.region.as_deref()).0.score();
                (
                    settings.proximity_weight * p + settings.cache_weight * c,
                    p,
                    c,
                )
            };
            cands.sort_by(|a, b| {
                rank(*a)
                    .cmp(&rank(*b))
                    .then_with(|| score(*b).0.total_cmp(&score(*a).0))
            });
            for &t in &cands {
                let (s, p, c) = score(t);
                let (ci, regional) = input(t).cache_in(cell.region.as_deref());
                note!(
                    notes,
                    "{} {s:.3} = {} × proximity {p:.3} + {} × cache {c:.3} (popularity {:.2}, ttl {:.2}, purge {:.2}){}{}{}",
                    name(t),
                    settings.proximity_weight,
                    settings.cache_weight,
                    ci.popularity,
                    ci.ttl_factor,
                    ci.purge_ratio,
                    match ci.popularity_from {
                        "reported" | "default" => String::new(),
                        from => format!("; popularity from the {from}"),
                    },
                    if ci.purge_ratio_from == "purges" {
                        "; purge ratio from steerd's purges of the last 5 minutes"
                    } else {
                        ""
                    },
                    if regional {
                        format!("; {}'s figures", cell.region.as_deref().unwrap_or("?"))
                    } else {
                        String::new()
                    }
                );
            }
            None
        }
    };
    if matches!(order, Order::Latency | Order::CacheAware) {
        for &t in &cands {
            if let Some(why) = behind_because(t) {
                note!(notes, "{} stays behind: {why} (an earlier step)", name(t));
            }
        }
    }
    trace.push(Step {
        step: match order {
            Order::Failover => "order: failover",
            Order::Weighted => "order: weighted",
            Order::Latency => "order: latency",
            Order::CacheAware => "order: cache_aware",
        },
        input: list(&before),
        output: list(&cands),
        notes,
    });

    // select
    let pick = pick.unwrap_or_else(|| {
        let n = settings.select.max(1).min(cands.len());
        Pick::Fixed(cands[..n].to_vec())
    });
    let out = match &pick {
        Pick::Fixed(v) => list(v),
        Pick::Weighted(v) => v.iter().map(|(t, _)| name(*t).to_string()).collect(),
        _ => Vec::new(),
    };
    let mut notes = Vec::new();
    match &pick {
        Pick::Weighted(_) => note!(notes, "one per client subnet (rendezvous hashing)"),
        _ => note!(notes, "first {}", settings.select.max(1)),
    }
    if unstable {
        note!(
            notes,
            "a candidate is recovering or changed state recently: short TTL"
        );
    }
    trace.push(Step {
        step: "select",
        input: list(&cands),
        output: out,
        notes,
    });
    Outcome {
        pick,
        unstable,
        all_down,
        trace,
    }
}

/// `cost::apply_cost` names targets by index ("target 3 demoted: …"): use their names.
fn rename_targets(reason: &str, names: &[String]) -> String {
    if let Some(rest) = reason.strip_prefix("target ")
        && let Some((idx, tail)) = rest.split_once(' ')
        && let Ok(i) = idx.parse::<usize>()
        && let Some(n) = names.get(i)
    {
        return format!("{n} {tail}");
    }
    reason.to_string()
}
