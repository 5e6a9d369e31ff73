//! `[targets.check]`: a target's health check, resolved against the `[probe]` defaults: its
//! timing, the HTTP request, the body check, the levels and where the tcp level connects.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::Name;

use super::probe::{ca_file, default_timeout, resolvers, timing};
use crate::config::issues::{Context, Issues, parse_name};
use crate::config::schema::{CheckConfig, ContentCheckConfig, StatusSpec, TargetConfig};
use crate::config::valid::{
    CheckSpec, Connect, ContentMatch, ContentSpec, HttpSpec, Pattern, ProbeSettings, StatusMatch,
    Timing,
};
use crate::health::Level;

const DEFAULT_MAX_BYTES: u64 = 1 << 20;

/// `targets[i].check` (field prefix `f`). `addrs` are the target's own a/aaaa addresses.
pub(super) fn validate(
    t: &TargetConfig,
    c: &CheckConfig,
    f: &str,
    probe: &ProbeSettings,
    addrs: &[IpAddr],
    ctx: &Context,
    issues: &mut Issues,
) -> Option<CheckSpec> {
    let before = issues.len();
    let timing = check_timing(c, f, probe, issues);
    let http = c.url.as_ref().and_then(|u| http_request(c, u, f, issues));
    let content = c
        .content
        .as_ref()
        .and_then(|cc| content(cc, &format!("{f}.content"), issues));
    if content.is_some() && http.as_ref().is_some_and(|(h, _)| h.head) {
        issues.push(
            format!("{f}.method"),
            "HEAD responses have no body for the content check: use GET",
        );
    }
    if c.url.is_none() {
        let url_only = [
            (c.method.is_some(), "method"),
            (c.expect_status.is_some(), "expect_status"),
            (c.headers.is_some(), "headers"),
            (c.sni.is_some(), "sni"),
            (c.content.is_some(), "content"),
            (c.cache.is_some(), "cache"),
        ];
        for (_, key) in url_only.iter().filter(|(set, _)| *set) {
            issues.push(
                format!("{f}.{key}"),
                "needs a `url`: it belongs to the http request",
            );
        }
    }

    // DNS.
    let dns_host = match (&c.host, &t.cname) {
        (Some(h), _) => match parse_name(h) {
            Ok(n) => Some(n),
            Err(e) => {
                issues.push(format!("{f}.host"), e);
                None
            }
        },
        (None, Some(cn)) => parse_name(cn).ok(),
        (None, None) => None,
    };

    let levels = match &c.levels {
        Some(list) => listed_levels(list, f, issues),
        None => implied_levels(c, &dns_host, http.as_ref(), content.is_some()),
    };
    if levels.is_empty() && issues.len() == before {
        issues.push(
            f,
            "nothing to check: set `url` (http/https checks), `port` or `address` (tcp), or `host` (dns)",
        );
    }
    level_needs(
        c,
        f,
        &levels,
        &dns_host,
        http.as_ref(),
        content.is_some(),
        issues,
    );
    let connect = if levels.contains(&Level::Tcp) {
        connect(c, f, &levels, http.as_ref(), addrs, issues)
    } else {
        None
    };

    let resolvers = match &c.resolvers {
        Some(r) => resolvers(r, &format!("{f}.resolvers"), issues),
        None => probe.resolvers.clone(),
    };
    let ca_file = match &c.ca_file {
        Some(p) => ca_file(p, &format!("{f}.ca_file"), ctx, issues),
        None => probe.ca_file.clone(),
    };
    if issues.len() != before {
        return None;
    }
    Some(CheckSpec {
        levels,
        dns_host,
        connect,
        http: http.map(|(h, _)| h),
        content,
        timing,
        resolvers,
        cert_warning_days: c.cert_warning_days.unwrap_or(probe.cert_warning_days),
        ca_file,
    })
}

/// The check's timing: its keys over the `[probe]` defaults; the timeout shorter than the
/// interval.
fn check_timing(c: &CheckConfig, f: &str, probe: &ProbeSettings, issues: &mut Issues) -> Timing {
    let mut timing = timing(
        probe.defaults,
        c.interval,
        c.timeout,
        c.jitter,
        c.confirm,
        c.confirm_gap,
        c.watch,
        c.heartbeat,
        f,
        issues,
    );
    if c.timeout.is_none() && !probe.explicit_timeout {
        timing.timeout = default_timeout(timing.interval);
    } else if timing.timeout >= timing.interval {
        // Both values inherited from [probe]: already reported there.
        if c.timeout.is_some() || c.interval.is_some() {
            let field = if c.timeout.is_some() {
                format!("{f}.timeout")
            } else {
                format!("{f}.interval")
            };
            issues.push(
                field,
                format!(
                    "the timeout must be shorter than the interval ({} s >= {} s)",
                    timing.timeout.as_secs_f64(),
                    timing.interval.as_secs_f64()
                ),
            );
        }
        timing.timeout = timing.interval / 2;
    }
    timing
}

/// `url` → the HTTP request and the port it goes to.
fn http_request(c: &CheckConfig, u: &str, f: &str, issues: &mut Issues) -> Option<(HttpSpec, u16)> {
    let uri = match u.trim().parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            issues.push(
                format!("{f}.url"),
                format!("\"{u}\" is not a URL ({e}): it must start with http:// or https://"),
            );
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("https") => Some(true),
        Some("http") => Some(false),
        _ => {
            issues.push(
                format!("{f}.url"),
                format!("\"{u}\" must start with http:// or https://"),
            );
            None
        }
    };
    let host = uri.host().map(|h| h.trim_matches(['[', ']']).to_string());
    let (Some(https), Some(host)) = (https, host.filter(|h| !h.is_empty())) else {
        if https.is_some() {
            issues.push(format!("{f}.url"), format!("\"{u}\" has no host"));
        }
        return None;
    };
    let default_port = if https { 443 } else { 80 };
    let host_header = match uri.port_u16() {
        Some(p) if p != default_port => {
            format!("{}:{p}", uri.authority().map(|a| a.host()).unwrap_or(""))
        }
        _ => uri.authority().map(|a| a.host()).unwrap_or("").to_string(),
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let head = match c.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => false,
        Some("HEAD") => true,
        Some(m) => {
            issues.push(
                format!("{f}.method"),
                format!("\"{m}\" is not supported: use GET or HEAD"),
            );
            false
        }
    };
    let expect = match &c.expect_status {
        Some(l) => status_list(l, &format!("{f}.expect_status"), issues),
        None => vec![StatusMatch::Class(2)],
    };
    let mut headers = Vec::new();
    for (k, v) in c.headers.iter().flatten() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            issues.push(format!("{f}.headers.{k}"), "not a valid HTTP header name");
        } else if http::HeaderValue::from_str(v).is_err() {
            issues.push(format!("{f}.headers.{k}"), "not a valid header value");
        } else if k.eq_ignore_ascii_case("host") {
            issues.push(
                format!("{f}.headers.{k}"),
                "the Host header comes from `url`",
            );
        } else {
            headers.push((k.clone(), v.clone()));
        }
    }
    let sni = c.sni.clone().unwrap_or_else(|| host.clone());
    if rustls::pki_types::ServerName::try_from(sni.clone()).is_err() {
        issues.push(
            format!("{f}.sni"),
            format!("\"{sni}\" is not a valid TLS server name"),
        );
    }
    let cache_path = c
        .cache
        .as_ref()
        .and_then(|cc| cc.path.as_deref())
        .and_then(|p| http_path(p, &format!("{f}.cache.path"), issues));
    Some((
        HttpSpec {
            https,
            host_header,
            sni,
            path,
            head,
            expect,
            headers,
            cache_path,
        },
        uri.port_u16().unwrap_or(default_port),
    ))
}

/// `levels`, as listed: known, once each; in dependency order.
fn listed_levels(list: &[String], f: &str, issues: &mut Issues) -> Vec<Level> {
    let mut out = Vec::new();
    for (i, l) in list.iter().enumerate() {
        match Level::parse(&l.trim().to_ascii_lowercase()) {
            Some(Level::Check) | None => issues.push(
                format!("{f}.levels[{i}]"),
                format!("unknown level \"{l}\" (expected dns, tcp, tls, http, content or cache)"),
            ),
            Some(level) if out.contains(&level) => issues.push(
                format!("{f}.levels[{i}]"),
                format!("level \"{l}\" is listed twice"),
            ),
            Some(level) => out.push(level),
        }
    }
    out.sort();
    out
}

/// Without `levels`: every level the other keys make possible.
fn implied_levels(
    c: &CheckConfig,
    dns_host: &Option<Name>,
    http: Option<&(HttpSpec, u16)>,
    content: bool,
) -> Vec<Level> {
    let mut out = Vec::new();
    if dns_host.is_some() {
        out.push(Level::Dns);
    }
    if c.address.is_some() || c.port.is_some() || http.is_some() {
        out.push(Level::Tcp);
    }
    if let Some((h, _)) = http {
        if h.https {
            out.push(Level::Tls);
        }
        out.push(Level::Http);
        if content {
            out.push(Level::Content);
        }
        if c.cache.is_some() {
            out.push(Level::Cache);
        }
    }
    out
}

/// What each level needs: a host for dns, an https url for tls, a url for http and the levels
/// below it.
fn level_needs(
    c: &CheckConfig,
    f: &str,
    levels: &[Level],
    dns_host: &Option<Name>,
    http: Option<&(HttpSpec, u16)>,
    content: bool,
    issues: &mut Issues,
) {
    let has = |l: Level| levels.contains(&l);
    let need = |l: Level, what: &str, issues: &mut Issues| {
        issues.push(format!("{f}.levels"), format!("level \"{l}\" needs {what}"));
    };
    if has(Level::Dns) && dns_host.is_none() && c.host.is_none() {
        need(
            Level::Dns,
            "a host name: set `host` (or give the target a `cname`)",
            issues,
        );
    }
    let https = http.map(|(h, _)| h.https);
    if has(Level::Tls) && https != Some(true) {
        need(Level::Tls, "an https:// `url`", issues);
    }
    if https == Some(true) && has(Level::Http) && !has(Level::Tls) {
        issues.push(
            format!("{f}.levels"),
            "an https:// url needs the \"tls\" level before \"http\"",
        );
    }
    if (has(Level::Http) || has(Level::Content) || has(Level::Cache)) && http.is_none() {
        need(Level::Http, "a `url`", issues);
    }
    for l in [Level::Content, Level::Cache] {
        if has(l) && !has(Level::Http) {
            need(
                l,
                "the \"http\" level (it reads the http level's response)",
                issues,
            );
        }
    }
    if has(Level::Content) && !content && c.content.is_none() {
        need(
            Level::Content,
            "a [content] table (sha256, contains or regex)",
            issues,
        );
    }
    if has(Level::Http) && !has(Level::Tcp) {
        need(Level::Http, "the \"tcp\" level", issues);
    }
    if has(Level::Tls) && !has(Level::Tcp) {
        need(Level::Tls, "the \"tcp\" level", issues);
    }
}

/// Where the tcp level connects.
fn connect(
    c: &CheckConfig,
    f: &str,
    levels: &[Level],
    http: Option<&(HttpSpec, u16)>,
    addrs: &[IpAddr],
    issues: &mut Issues,
) -> Option<Connect> {
    if let Some(a) = &c.address {
        return match a.trim().parse::<SocketAddr>() {
            Ok(sa) => Some(Connect::Fixed(sa)),
            Err(_) => {
                issues.push(
                    format!("{f}.address"),
                    format!("\"{a}\" is not an \"ip:port\" address"),
                );
                None
            }
        };
    }
    match c.port.or(http.map(|(_, p)| *p)) {
        None => {
            issues.push(
                format!("{f}.port"),
                "the tcp level needs a port (or a `url`, or an `address`)",
            );
            None
        }
        Some(0) => {
            let field = if c.port.is_some() { "port" } else { "url" };
            issues.push(format!("{f}.{field}"), "port 0 cannot be connected to");
            None
        }
        Some(p) if levels.contains(&Level::Dns) => Some(Connect::Resolved(p)),
        Some(p) if !addrs.is_empty() => Some(Connect::Addrs(addrs.to_vec(), p)),
        Some(_) => {
            issues.push(
                format!("{f}.levels"),
                "the tcp level needs an address: set `address`, keep the \"dns\" level, or give the target a/aaaa addresses",
            );
            None
        }
    }
}
/// `expect_status`: codes and classes.
fn status_list(list: &[StatusSpec], f: &str, issues: &mut Issues) -> Vec<StatusMatch> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let field = format!("{f}[{i}]");
        let parsed = match s {
            StatusSpec::Code(c) if (100..=599).contains(c) => Some(StatusMatch::Code(*c as u16)),
            StatusSpec::Text(t) => {
                let t = t.trim().to_ascii_lowercase();
                if let Ok(c) = t.parse::<u16>()
                    && (100..=599).contains(&c)
                {
                    Some(StatusMatch::Code(c))
                } else if t.len() == 3
                    && t.ends_with("xx")
                    && matches!(t.as_bytes()[0], b'1'..=b'5')
                {
                    Some(StatusMatch::Class(t.as_bytes()[0] - b'0'))
                } else {
                    None
                }
            }
            StatusSpec::Code(_) => None,
        };
        match parsed {
            Some(m) => out.push(m),
            None => issues.push(
                field,
                "expected a status code 100-599 or a class \"1xx\"-\"5xx\"",
            ),
        }
    }
    if list.is_empty() {
        issues.push(f, "at least one accepted status is needed");
    }
    out
}

/// `[content]`: exactly one body check.
fn content(c: &ContentCheckConfig, f: &str, issues: &mut Issues) -> Option<ContentSpec> {
    let set = [c.sha256.is_some(), c.contains.is_some(), c.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        issues.push(
            f,
            "set exactly one of `sha256`, `contains`, `regex` (the body check)",
        );
        return None;
    }
    let max_bytes = c.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > 64 << 20 {
        issues.push(
            format!("{f}.max_bytes"),
            format!("must be between 1 and 67108864 (got {max_bytes})"),
        );
        return None;
    }
    let matcher = if let Some(h) = &c.sha256 {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(h.trim(), &mut out) {
            Ok(()) => ContentMatch::Sha256(out),
            Err(_) => {
                issues.push(
                    format!("{f}.sha256"),
                    "expected 64 hexadecimal digits (a SHA-256 digest)",
                );
                return None;
            }
        }
    } else if let Some(s) = &c.contains {
        if s.is_empty() {
            issues.push(format!("{f}.contains"), "must not be empty");
            return None;
        }
        ContentMatch::Contains(s.clone())
    } else {
        let r = c.regex.clone().unwrap_or_default();
        match regex::bytes::Regex::new(&r) {
            Ok(re) => ContentMatch::Regex(Pattern(re)),
            Err(e) => {
                issues.push(
                    format!("{f}.regex"),
                    format!("invalid regular expression: {e}"),
                );
                return None;
            }
        }
    };
    Some(ContentSpec { matcher, max_bytes })
}

/// A path to request: absolute, no spaces.
fn http_path(p: &str, field: &str, issues: &mut Issues) -> Option<String> {
    if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        issues.push(
            field,
            format!("\"{p}\" must be an absolute path starting with / and without spaces"),
        );
        return None;
    }
    Some(p.to_string())
}
