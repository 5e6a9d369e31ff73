//! `[purge]`'s canary keys (`verify`, `stale_grace`, `check_every`, `demote_stale`,
//! `canary_timeout`) and `[[purge.canaries]]`: each canary's URL, its origin, where its version
//! is read and the targets it is fetched through.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::issues::{Issues, excerpt};
use crate::config::purge::{Canary, CanaryUrl, Freshness, VersionSource};
use crate::config::schema::{CanaryConfig, PurgeSectionConfig};

/// The canary settings of `[purge]`; wrong keys are reported and keep their defaults.
pub(super) fn freshness(p: &PurgeSectionConfig, issues: &mut Issues) -> Freshness {
    let d = Freshness::default();
    let secs = |v: Option<f64>, key: &str, default: Duration, issues: &mut Issues| match v {
        Some(v) => super::seconds(v, &format!("purge.{key}"), issues).unwrap_or(default),
        None => default,
    };
    let stale_grace = secs(p.stale_grace, "stale_grace", d.stale_grace, issues);
    let check_every = secs(p.check_every, "check_every", d.check_every, issues);
    let timeout = secs(p.canary_timeout, "canary_timeout", d.timeout, issues);
    let verify = p.verify.unwrap_or(d.verify);
    let demote_stale = p.demote_stale.unwrap_or(d.demote_stale);
    if (verify || demote_stale) && p.canaries.is_empty() {
        let key = if verify { "verify" } else { "demote_stale" };
        issues.push(
            format!("purge.{key}"),
            "needs at least one [[purge.canaries]] object to fetch",
        );
    }
    let mut canaries = Vec::new();
    for (i, c) in p.canaries.iter().enumerate() {
        let f = format!("purge.canaries[{i}]");
        if let Some(c) = canary(c, &f, issues) {
            if canaries.iter().any(|o: &Canary| o.url == c.url) {
                issues.push(
                    format!("{f}.url"),
                    format!("\"{}\" is listed twice", excerpt(&c.url)),
                );
                continue;
            }
            canaries.push(c);
        }
    }
    Freshness {
        verify,
        stale_grace,
        check_every,
        demote_stale,
        timeout,
        canaries,
    }
}

fn canary(c: &CanaryConfig, f: &str, issues: &mut Issues) -> Option<Canary> {
    let before = issues.len();
    let at = url(&c.url, &format!("{f}.url"), true, issues);
    let origin = match &c.origin {
        None => {
            issues.push(
                format!("{f}.origin"),
                "required: the origin's base URL (https://origin.example.com), where the \
                 canary's current version is read",
            );
            None
        }
        Some(o) => url(o, &format!("{f}.origin"), false, issues),
    };
    let origin_address = c
        .origin_address
        .as_deref()
        .and_then(|a| address(a, &format!("{f}.origin_address"), issues));
    let version = match c.version.as_deref().map(str::trim) {
        None | Some("etag") => Some(VersionSource::ETag),
        Some("last-modified") => Some(VersionSource::LastModified),
        Some(h) if h.starts_with("header:") => {
            let name = h["header:".len()..].trim();
            if http::HeaderName::from_bytes(name.as_bytes()).is_ok() {
                Some(VersionSource::Header(name.to_ascii_lowercase()))
            } else {
                issues.push(
                    format!("{f}.version"),
                    format!("\"{}\" is not a valid header name", excerpt(name)),
                );
                None
            }
        }
        Some(other) => {
            issues.push(
                format!("{f}.version"),
                format!(
                    "must be \"etag\", \"last-modified\" or \"header:<name>\" (got \"{}\")",
                    excerpt(other)
                ),
            );
            None
        }
    };
    let targets = c.targets.clone().unwrap_or_default();
    if c.targets.as_ref().is_some_and(Vec::is_empty) {
        issues.push(
            format!("{f}.targets"),
            "must name at least one target (leave it out for every target with [targets.purge])",
        );
    }
    let mut via = Vec::new();
    for (t, a) in c.via.iter().flatten() {
        if let Some(addr) = address(a, &format!("{f}.via.{t}"), issues) {
            via.push((t.clone(), addr));
        }
    }
    if issues.len() > before {
        return None;
    }
    Some(Canary {
        url: c.url.trim().to_string(),
        at: at?,
        origin: origin?,
        origin_address,
        version: version?,
        targets,
        via,
    })
}

/// An `http(s)://` URL; the canary's own needs a path, an origin's is a base (its path, if
/// any, is not used).
fn url(s: &str, field: &str, object: bool, issues: &mut Issues) -> Option<CanaryUrl> {
    let t = s.trim();
    let reason = match reqwest::Url::parse(t) {
        Err(e) => format!("not a valid URL ({e}): it must start with http:// or https://"),
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => format!(
            "must be an http:// or https:// URL (got scheme \"{}\")",
            excerpt(u.scheme())
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => "URL has no host".to_string(),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            "must not carry credentials".to_string()
        }
        Ok(u) if object && u.path() == "/" && u.query().is_none() => {
            "must name an object (a path such as /app.css), not a whole site".to_string()
        }
        Ok(u) if !object && (u.path() != "/" || u.query().is_some()) => {
            "must be a base URL (scheme, host and port): the canary's path is added to it"
                .to_string()
        }
        Ok(u) => {
            let https = u.scheme() == "https";
            let host = u
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string();
            let port = u
                .port_or_known_default()
                .unwrap_or(if https { 443 } else { 80 });
            let host_header = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_string(),
            };
            let mut path = u.path().to_string();
            if let Some(q) = u.query() {
                path = format!("{path}?{q}");
            }
            return Some(CanaryUrl {
                https,
                host,
                port,
                host_header,
                path,
            });
        }
    };
    issues.push(field, reason);
    None
}

fn address(s: &str, field: &str, issues: &mut Issues) -> Option<SocketAddr> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            issues.push(
                field,
                format!(
                    "must be an IP address and port (\"203.0.113.7:443\", \"[2001:db8::1]:443\"; got \"{}\")",
                    excerpt(s)
                ),
            );
            None
        }
    }
}

/// The targets canaries name (in `targets` and `via`) are targets of the configuration.
pub(in crate::config::validate) fn check_targets(
    p: &PurgeSectionConfig,
    names: &[&str],
    issues: &mut Issues,
) {
    for (i, c) in p.canaries.iter().enumerate() {
        let listed = c.targets.iter().flatten().map(|t| (t, "targets"));
        let via = c.via.iter().flatten().map(|(t, _)| (t, "via"));
        for (t, key) in listed.chain(via) {
            if !names.contains(&t.as_str()) {
                issues.push(
                    format!("purge.canaries[{i}].{key}"),
                    format!("\"{}\" is not a target of this configuration", excerpt(t)),
                );
            }
        }
    }
}
