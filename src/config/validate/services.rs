//! `[[services]]`: the steered names, their zone, targets and weights, geo maps, client
//! networks and the settings of the policy chain.

use std::collections::HashMap;

use hickory_proto::rr::Name;
use ipnet::IpNet;

use super::geo::region_key;
use super::targets::Targets;
use super::zones::Zones;
use crate::config::ChainSettings;
use crate::config::issues::{Issues, cidr, excerpt, name_at, parse_name, ttl};
use crate::config::schema::{AllDownMode, PolicyKind, RegionTarget, ServiceConfig, TargetConfig};
use crate::config::valid::{Member, RegionChoice, RegionKey, Service, TargetAnswer};
use crate::geo::CountryTable;

const MAX_WEIGHT: i64 = 1_000_000;

/// What a service is checked against.
pub(super) struct Known<'a> {
    pub(super) zones: &'a Zones,
    pub(super) targets: &'a Targets<'a>,
    /// As written, for their names.
    pub(super) target_configs: &'a [TargetConfig],
    pub(super) countries: Option<&'a CountryTable>,
}

/// `[[services]]`.
pub(super) fn validate(
    services: &[ServiceConfig],
    known: &Known<'_>,
    issues: &mut Issues,
) -> Vec<Service> {
    let mut out = Vec::new();
    let mut seen: HashMap<Name, usize> = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        let f = format!("services[{i}]");
        let name = match parse_name(&s.name) {
            Ok(n) => n,
            Err(e) => {
                issues.push(format!("{f}.name"), e);
                continue;
            }
        };
        if let Some(j) = seen.insert(name.clone(), i) {
            issues.push(
                format!("{f}.name"),
                format!("duplicate service \"{name}\" (also services[{j}])"),
            );
        }
        if let Some(service) = service(s, &f, name, known, issues) {
            out.push(service);
        }
    }
    out
}

/// One service (field prefix `f`), named `name`; None when it is in no zone.
fn service(
    s: &ServiceConfig,
    f: &str,
    name: Name,
    known: &Known<'_>,
    issues: &mut Issues,
) -> Option<Service> {
    let zone = known.zones.zone_for(&name);
    match zone {
        None => issues.push(
            format!("{f}.name"),
            format!("\"{name}\" is not inside any configured zone"),
        ),
        Some(zi) => in_zone(&name, zi, known.zones, f, issues),
    }
    let ttl = ttl(s.ttl, format!("{f}.ttl"), issues);
    let has_map = s.policy == PolicyKind::Geo && !s.geo.is_empty();
    if s.targets.is_empty() && !has_map {
        issues.push(
            format!("{f}.targets"),
            "a service needs at least one target",
        );
    }
    if s.policy != PolicyKind::Geo && !s.geo.is_empty() {
        issues.push(
            format!("{f}.geo"),
            "a region map only applies to policy = \"geo\"",
        );
    }
    let mut members = Members {
        list: listed_members(s, f, known, issues),
        targets: known.targets,
    };
    let regions = regions(s, f, &mut members, known.countries, issues);
    let nets = nets(s, f, &mut members, issues);
    let members = members.list;
    let (chain, fallback) = chain(s, f, &members, known, issues);
    let unstable_ttl = s.unstable_ttl.unwrap_or(5).min(ttl);
    Some(Service {
        name,
        zone: zone?,
        ttl,
        policy: s.policy,
        members,
        regions,
        nets,
        chain,
        fallback,
        unstable_ttl,
    })
}

/// A steered name holds no other data of its zone `zi`: no static records, not the apex, not
/// inside a delegation.
fn in_zone(name: &Name, zi: usize, zones: &Zones, f: &str, issues: &mut Issues) {
    let Some(z) = zones.get(zi) else {
        return;
    };
    if let Some(types) = z.rrsets.get(name) {
        let t: Vec<String> = types.keys().map(ToString::to_string).collect();
        issues.push(
            format!("{f}.name"),
            format!(
                "duplicate name: \"{name}\" already has static {} record(s) in zones[{zi}]; a steered name cannot hold other data",
                t.join("/")
            ),
        );
    }
    if *name == z.apex {
        issues.push(
            format!("{f}.name"),
            "a steered name cannot be a zone apex (it would be a CNAME beside SOA/NS)",
        );
    }
    if let Some(cut) = z.cuts.iter().find(|c| c.zone_of(name)) {
        issues.push(
            format!("{f}.name"),
            format!("\"{name}\" is inside the delegation \"{cut}\""),
        );
    }
}

/// A weight of a weighted split: 1 to [`MAX_WEIGHT`].
fn weight(w: i64) -> Result<u32, String> {
    if w <= 0 {
        Err(format!("weight must be greater than 0 (got {w})"))
    } else if w > MAX_WEIGHT {
        Err(format!("weight must be at most {MAX_WEIGHT} (got {w})"))
    } else {
        Ok(w as u32)
    }
}

/// The service's `targets`, with their weights.
fn listed_members(
    s: &ServiceConfig,
    f: &str,
    known: &Known<'_>,
    issues: &mut Issues,
) -> Vec<Member> {
    let mut members = Vec::new();
    for (k, m) in s.targets.iter().enumerate() {
        let mf = format!("{f}.targets[{k}]");
        let Some(&ti) = known.targets.index.get(m.target.as_str()) else {
            issues.push(
                format!("{mf}.target"),
                format!(
                    "unknown target \"{}\" (not defined in [[targets]])",
                    excerpt(&m.target)
                ),
            );
            continue;
        };
        if members.iter().any(|x: &Member| x.target == ti) {
            issues.push(
                format!("{mf}.target"),
                format!("target \"{}\" is listed twice", m.target),
            );
            continue;
        }
        let weight = match (s.policy, m.weight) {
            (PolicyKind::Weighted, None) => {
                issues.push(
                    format!("{mf}.weight"),
                    "missing weight: every target of a weighted service needs `weight` > 0",
                );
                1
            }
            (PolicyKind::Weighted, Some(w)) => weight(w).unwrap_or_else(|why| {
                issues.push(format!("{mf}.weight"), why);
                1
            }),
            (_, Some(_)) => {
                issues.push(
                    format!("{mf}.weight"),
                    "weight only applies to policy = \"weighted\"",
                );
                1
            }
            (_, None) => 1,
        };
        members.push(Member { target: ti, weight });
    }
    if matches!(s.policy, PolicyKind::Proximity | PolicyKind::CacheAware) {
        for (k, m) in members.iter().enumerate() {
            if known.targets.list[m.target]
                .as_ref()
                .is_some_and(|t| t.coords.is_none())
            {
                issues.push(
                    format!("{f}.targets[{k}].target"),
                    format!(
                        "target \"{}\" has no latitude/longitude, which proximity (and cache-aware) steering needs",
                        known.target_configs[m.target].name
                    ),
                );
            }
        }
    }
    members
}

/// A service's members while its map and nets are read: they may name other targets.
struct Members<'a> {
    list: Vec<Member>,
    targets: &'a Targets<'a>,
}

impl Members<'_> {
    /// The member index of target `name`, adding the target to the service if new.
    fn member_of(&mut self, name: &str, field: String, issues: &mut Issues) -> Option<usize> {
        let Some(&ti) = self.targets.index.get(name) else {
            issues.push(
                field,
                format!(
                    "unknown target \"{}\" (not defined in [[targets]])",
                    excerpt(name)
                ),
            );
            return None;
        };
        Some(match self.list.iter().position(|m| m.target == ti) {
            Some(p) => p,
            None => {
                // Weight 0: reachable through the map or nets, not part of a weighted split.
                self.list.push(Member {
                    target: ti,
                    weight: 0,
                });
                self.list.len() - 1
            }
        })
    }
}

/// The geo map: region → targets (weighted when any entry has a weight).
fn regions(
    s: &ServiceConfig,
    f: &str,
    members: &mut Members<'_>,
    countries: Option<&CountryTable>,
    issues: &mut Issues,
) -> Vec<(RegionKey, RegionChoice)> {
    let mut regions = Vec::new();
    for (key, list) in &s.geo {
        let kf = format!("{f}.geo.{key}");
        let Some(rk) = region_key(key, countries, &kf, issues) else {
            continue;
        };
        if list.is_empty() {
            issues.push(kf.clone(), "a region needs at least one target");
            continue;
        }
        let weighted = list
            .iter()
            .any(|e| matches!(e, RegionTarget::Weighted(w) if w.weight.is_some()));
        let mut choice = RegionChoice {
            members: Vec::new(),
            weights: weighted.then(Vec::new),
        };
        for (k, e) in list.iter().enumerate() {
            let ef = format!("{kf}[{k}]");
            let (name, w) = match e {
                RegionTarget::Name(n) => (n.as_str(), None),
                RegionTarget::Weighted(w) => (w.target.as_str(), w.weight),
            };
            let Some(mi) = members.member_of(name, ef.clone(), issues) else {
                continue;
            };
            if choice.members.contains(&mi) {
                issues.push(ef, format!("target \"{name}\" is listed twice"));
                continue;
            }
            if let Some(ws) = &mut choice.weights {
                let w = match w {
                    Some(w) => weight(w),
                    None => Err(
                        "missing weight: in a weighted region every target needs `weight` > 0"
                            .to_string(),
                    ),
                };
                ws.push(w.unwrap_or_else(|why| {
                    issues.push(format!("{ef}.weight"), why);
                    1
                }));
            }
            choice.members.push(mi);
        }
        regions.push((rk, choice));
    }
    regions.sort_by_key(|(k, _)| *k);
    if s.policy == PolicyKind::Geo
        && s.targets.is_empty()
        && !regions.iter().any(|(k, _)| *k == RegionKey::Default)
    {
        issues.push(
            format!("{f}.geo"),
            "add a \"default\" region (or a `targets` list) for clients that match no region",
        );
    }
    regions
}

/// Client networks sent to fixed targets.
fn nets(
    s: &ServiceConfig,
    f: &str,
    members: &mut Members<'_>,
    issues: &mut Issues,
) -> Vec<(IpNet, RegionChoice)> {
    let mut nets = Vec::new();
    for (k, n) in s.nets.iter().enumerate() {
        let nf = format!("{f}.nets[{k}]");
        let Some(net) = cidr(&n.cidr, &format!("{nf}.cidr"), issues) else {
            continue;
        };
        if nets.iter().any(|(x, _): &(IpNet, RegionChoice)| *x == net) {
            issues.push(format!("{nf}.cidr"), format!("duplicate network {net}"));
            continue;
        }
        if n.targets.is_empty() {
            issues.push(format!("{nf}.targets"), "at least one target is needed");
            continue;
        }
        let mut choice = RegionChoice {
            members: Vec::new(),
            weights: None,
        };
        for (j, t) in n.targets.iter().enumerate() {
            if let Some(mi) = members.member_of(t, format!("{nf}.targets[{j}]"), issues)
                && !choice.members.contains(&mi)
            {
                choice.members.push(mi);
            }
        }
        nets.push((net, choice));
    }
    nets
}

/// The policy chain's settings and the fallback answer.
fn chain(
    s: &ServiceConfig,
    f: &str,
    members: &[Member],
    known: &Known<'_>,
    issues: &mut Issues,
) -> (ChainSettings, Option<Name>) {
    let mut chain = ChainSettings::default();
    if let Some(n) = s.select {
        if n == 0 || n > 64 {
            issues.push(
                format!("{f}.select"),
                format!("must be between 1 and 64 (got {n})"),
            );
        } else {
            chain.select = n as usize;
            if n > 1 {
                if matches!(s.policy, PolicyKind::Weighted) {
                    issues.push(
                        format!("{f}.select"),
                        "a weighted service answers one target per client: select must be 1",
                    );
                }
                if let Some(m) = members.iter().find(|m| {
                    known.targets.list[m.target]
                        .as_ref()
                        .is_some_and(|t| matches!(t.answer, TargetAnswer::Cname(_)))
                }) {
                    issues.push(
                        format!("{f}.select"),
                        format!(
                            "select > 1 merges A/AAAA addresses, but target \"{}\" answers with a CNAME (a name holds one CNAME)",
                            known.target_configs[m.target].name
                        ),
                    );
                }
            }
        }
    }
    chain.all_down = s.all_down.unwrap_or_default();
    let fallback = s
        .fallback
        .as_ref()
        .and_then(|fb| name_at(fb, format!("{f}.fallback"), issues));
    if fallback.is_some() && chain.all_down != AllDownMode::Closed {
        issues.push(
            format!("{f}.fallback"),
            "the fallback answer is used only with all_down = \"closed\"",
        );
    }
    chain.has_fallback = fallback.is_some();
    if let Some(p) = s.stabilize_pct {
        if !(0.0..=1000.0).contains(&p) {
            issues.push(
                format!("{f}.stabilize_pct"),
                format!("must be between 0 and 1000 (got {p})"),
            );
        } else {
            chain.stabilize_pct = p;
        }
    }
    if let Some(ms) = s.stabilize_ms {
        chain.stabilize_ms = ms;
    }
    for (v, key, slot) in [
        (
            s.proximity_weight,
            "proximity_weight",
            &mut chain.proximity_weight,
        ),
        (s.cache_weight, "cache_weight", &mut chain.cache_weight),
    ] {
        if let Some(w) = v {
            if !(0.0..=1.0).contains(&w) {
                issues.push(
                    format!("{f}.{key}"),
                    format!("must be between 0 and 1 (got {w})"),
                );
            } else {
                *slot = w;
            }
        }
    }
    if (s.stabilize_pct.is_some() || s.stabilize_ms.is_some()) && s.policy != PolicyKind::Latency {
        issues.push(
            format!("{f}.stabilize_pct"),
            "the stabilize band only applies to policy = \"latency\"",
        );
    }
    if (s.proximity_weight.is_some() || s.cache_weight.is_some())
        && s.policy != PolicyKind::CacheAware
    {
        issues.push(
            format!("{f}.cache_weight"),
            "score weights only apply to policy = \"cache_aware\"",
        );
    }
    chain.cost = s.cost.unwrap_or_default();
    chain.prefer_commit = s.prefer_commit.unwrap_or(false);
    (chain, fallback)
}
