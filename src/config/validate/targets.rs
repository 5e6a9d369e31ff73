//! `[[targets]]`: names, answers (CNAME or addresses), location, health check, cost and role.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use crate::config::issues::{Context, Issues, between, check_name, parse_name};
use crate::config::schema::{CostConfig, TargetConfig};
use crate::config::valid::{ProbeSettings, Target, TargetAnswer};
use crate::config::{CostModel, DEFAULT_BYTES_PER_ANSWER};

/// The targets, by position in the file (None: this one has issues), and the position of the
/// first target of each name.
pub(super) struct Targets<'a> {
    pub(super) list: Vec<Option<Target>>,
    pub(super) index: HashMap<&'a str, usize>,
}

/// `[[targets]]`; checks resolve against the `[probe]` defaults.
pub(super) fn validate<'a>(
    targets: &'a [TargetConfig],
    probe: &ProbeSettings,
    ctx: &Context,
    issues: &mut Issues,
) -> Targets<'a> {
    let mut list = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let f = format!("targets[{i}]");
        if t.name.trim().is_empty() {
            issues.push(format!("{f}.name"), "target name must not be empty");
        } else if let Err(e) = check_name(&t.name) {
            issues.push(format!("{f}.name"), e);
        } else if let Some(j) = index.get(t.name.as_str()) {
            issues.push(
                format!("{f}.name"),
                format!("duplicate target \"{}\" (also targets[{j}])", t.name),
            );
        }
        let answer = answer(t, &f, issues);
        let coords = coords(t, &f, issues);
        let check = t.check.as_ref().and_then(|c| {
            let addrs: Vec<IpAddr> = match &answer {
                Some(TargetAnswer::Addrs { a, aaaa }) => a
                    .iter()
                    .map(|x| IpAddr::V4(*x))
                    .chain(aaaa.iter().map(|x| IpAddr::V6(*x)))
                    .collect(),
                _ => Vec::new(),
            };
            super::checks::validate(t, c, &format!("{f}.check"), probe, &addrs, ctx, issues)
                .map(Arc::new)
        });
        let cost = t
            .cost
            .as_ref()
            .and_then(|c| cost(c, &format!("{f}.cost"), issues));
        index.entry(t.name.as_str()).or_insert(i);
        let role = match t.role.as_deref() {
            None | Some("edge") => "edge",
            Some("origin") => "origin",
            Some(other) => {
                issues.push(
                    format!("{f}.role"),
                    format!("must be \"edge\" or \"origin\" (got \"{other}\")"),
                );
                "edge"
            }
        };
        let purge = t
            .purge
            .as_ref()
            .and_then(|p| super::purge::target(p, &format!("{f}.purge"), issues));
        list.push(answer.map(|answer| Target {
            name: t.name.clone(),
            answer,
            coords,
            check,
            cost,
            role,
            purge,
        }));
    }
    Targets { list, index }
}

/// A CNAME or addresses, not both.
fn answer(t: &TargetConfig, f: &str, issues: &mut Issues) -> Option<TargetAnswer> {
    match (&t.cname, t.a.is_empty() && t.aaaa.is_empty()) {
        (Some(_), false) => {
            issues.push(
                f,
                "a target answers either with `cname` or with `a`/`aaaa` addresses, not both",
            );
            None
        }
        (None, true) => {
            issues.push(
                f,
                "a target needs `cname` or at least one `a`/`aaaa` address",
            );
            None
        }
        (Some(c), true) => match parse_name(c) {
            Ok(n) => Some(TargetAnswer::Cname(n)),
            Err(e) => {
                issues.push(format!("{f}.cname"), e);
                None
            }
        },
        (None, false) => Some(TargetAnswer::Addrs {
            a: addrs::<Ipv4Addr>(&t.a, &format!("{f}.a"), "IPv4", issues),
            aaaa: addrs::<Ipv6Addr>(&t.aaaa, &format!("{f}.aaaa"), "IPv6", issues),
        }),
    }
}

/// The addresses of `a` or `aaaa` (field `f`), each once.
fn addrs<T: FromStr + PartialEq + Display>(
    list: &[String],
    f: &str,
    family: &str,
    issues: &mut Issues,
) -> Vec<T> {
    let mut out = Vec::new();
    for (k, s) in list.iter().enumerate() {
        match s.trim().parse::<T>() {
            Ok(ip) if out.contains(&ip) => {
                issues.push(format!("{f}[{k}]"), format!("duplicate address {ip}"))
            }
            Ok(ip) => out.push(ip),
            Err(_) => issues.push(
                format!("{f}[{k}]"),
                format!("\"{s}\" is not a valid {family} address"),
            ),
        }
    }
    out
}

/// `latitude` and `longitude`: both or neither.
fn coords(t: &TargetConfig, f: &str, issues: &mut Issues) -> Option<(f64, f64)> {
    match (t.latitude, t.longitude) {
        (None, None) => None,
        (Some(lat), Some(lon)) => {
            between(lat, -90.0, 90.0, format!("{f}.latitude"), issues);
            between(lon, -180.0, 180.0, format!("{f}.longitude"), issues);
            Some((lat, lon))
        }
        _ => {
            issues.push(f, "set both `latitude` and `longitude`, or neither");
            None
        }
    }
}

/// `[targets.cost]` (field `cf`): amounts not negative.
fn cost(c: &CostConfig, cf: &str, issues: &mut Issues) -> Option<CostModel> {
    let mut ok = true;
    let mut money = |v: f64, key: &str, issues: &mut Issues| {
        if !v.is_finite() || v < 0.0 {
            issues.push(
                format!("{cf}.{key}"),
                format!("must be a non-negative amount (got {v})"),
            );
            ok = false;
        }
    };
    money(c.price_per_gb, "price_per_gb", issues);
    for (k, v) in &c.region_prices {
        money(*v, &format!("region_prices.{k}"), issues);
    }
    if let Some(v) = c.monthly_cap {
        money(v, "monthly_cap", issues);
    }
    if let Some(v) = c.commit {
        money(v, "commit", issues);
    }
    if let Some(b) = c.bytes_per_answer
        && (!b.is_finite() || b <= 0.0)
    {
        issues.push(
            format!("{cf}.bytes_per_answer"),
            format!("must be positive (got {b})"),
        );
        ok = false;
    }
    ok.then(|| CostModel {
        price_per_gb: c.price_per_gb,
        region_prices: c.region_prices.clone(),
        monthly_cap: c.monthly_cap,
        commit: c.commit,
        bytes_per_answer: c.bytes_per_answer.unwrap_or(DEFAULT_BYTES_PER_ANSWER),
    })
}
