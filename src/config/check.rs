//! Validation of the prober's settings (`[probe]`) and of each target's `[targets.check]`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::schema::{CheckConfig, ContentCheckConfig, ProbeConfig, StatusSpec, TargetConfig};
use super::validate::{Context, Issues, check_name, parse_name};
use crate::health::Level;

const DEFAULT_INTERVAL: f64 = 10.0;
const DEFAULT_TIMEOUT: f64 = 2.0;
const DEFAULT_JITTER: f64 = 0.1;
const DEFAULT_CONFIRM: u32 = 3;
const DEFAULT_CONFIRM_GAP: f64 = 0.1;
const DEFAULT_HEARTBEAT: f64 = 1.0;
const MIN_HEARTBEAT: f64 = 0.1;
const DEFAULT_CERT_WARNING_DAYS: u32 = 14;
const DEFAULT_CONCURRENCY: u64 = 64;
const DEFAULT_MAX_BYTES: u64 = 1 << 20;
const MAX_CONFIRM: u32 = 10;

/// `[probe]`, parsed: global settings and the defaults of every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    pub vantage: String,
    pub concurrency: usize,
    pub defaults: Timing,
    pub resolvers: Vec<SocketAddr>,
    pub cert_warning_days: u32,
    pub ca_file: Option<PathBuf>,
    /// `probe.timeout` was set (else the default timeout shrinks to half a short interval).
    pub explicit_timeout: bool,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            vantage: "local".into(),
            concurrency: DEFAULT_CONCURRENCY as usize,
            defaults: Timing::default(),
            resolvers: Vec::new(),
            cert_warning_days: DEFAULT_CERT_WARNING_DAYS,
            ca_file: None,
            explicit_timeout: false,
        }
    }
}

/// When and how hard a check runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
    /// Fraction of the interval: each wait is interval × (1 ± jitter).
    pub jitter: f64,
    /// Re-checks straight after a first failure.
    pub confirm: u32,
    pub confirm_gap: Duration,
    /// Keep the connection open between checks; its closing triggers a check at once.
    pub watch: bool,
    /// Between checks, ask on the kept connection this often whether the edge still answers
    /// (zero: never).
    pub heartbeat: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs_f64(DEFAULT_INTERVAL),
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT),
            jitter: DEFAULT_JITTER,
            confirm: DEFAULT_CONFIRM,
            confirm_gap: Duration::from_secs_f64(DEFAULT_CONFIRM_GAP),
            watch: true,
            heartbeat: Duration::from_secs_f64(DEFAULT_HEARTBEAT),
        }
    }
}

/// An accepted HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    /// 2 for "2xx".
    Class(u8),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == u16::from(c),
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(c) => write!(f, "{c}"),
            StatusMatch::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// How the content level judges the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentMatch {
    Sha256([u8; 32]),
    Contains(String),
    Regex(Pattern),
}

/// A compiled regular expression, compared by its source.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::bytes::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for Pattern {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentSpec {
    pub matcher: ContentMatch,
    pub max_bytes: u64,
}

/// The HTTP request of the http level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub https: bool,
    /// Host header (host, plus the port when it is not the scheme's default).
    pub host_header: String,
    /// TLS server name.
    pub sni: String,
    pub path: String,
    pub head: bool,
    pub expect: Vec<StatusMatch>,
    pub headers: Vec<(String, String)>,
    /// Canary path for the cache level (None: the http level's own response).
    pub cache_path: Option<String>,
}

/// Where the tcp level connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// A fixed address (`address`).
    Fixed(SocketAddr),
    /// The first address the dns level found, on this port.
    Resolved(u16),
    /// The target's own a/aaaa addresses, on this port.
    Addrs(Vec<IpAddr>, u16),
}

/// A target's health check, fully resolved against the `[probe]` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Levels to run, in dependency order.
    pub levels: Vec<Level>,
    /// Name the dns level resolves.
    pub dns_host: Option<Name>,
    pub connect: Option<Connect>,
    pub http: Option<HttpSpec>,
    pub content: Option<ContentSpec>,
    pub timing: Timing,
    pub resolvers: Vec<SocketAddr>,
    pub cert_warning_days: u32,
    pub ca_file: Option<PathBuf>,
}

impl CheckSpec {
    pub fn has(&self, level: Level) -> bool {
        self.levels.contains(&level)
    }
}

/// The timeout when none is set: 2 s, or half the interval when that is shorter.
fn default_timeout(interval: Duration) -> Duration {
    Duration::from_secs_f64(DEFAULT_TIMEOUT).min(interval / 2)
}

fn seconds(v: f64, field: &str, min: f64, issues: &mut Issues) -> Option<Duration> {
    if !v.is_finite() || v < min || v > 86_400.0 {
        issues.push(
            field,
            format!("must be a number of seconds between {min} and 86400 (got {v})"),
        );
        return None;
    }
    Some(Duration::from_secs_f64(v))
}

fn resolvers(list: &[String], field: &str, issues: &mut Issues) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let r = r.trim();
        let parsed = r
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| r.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => out.push(a),
            None => issues.push(
                format!("{field}[{i}]"),
                format!("\"{r}\" is not an address (\"ip\" or \"ip:port\")"),
            ),
        }
    }
    out
}

/// Apply `overrides` (a target's) over `base` (the `[probe]` defaults); checks every value.
#[allow(clippy::too_many_arguments)]
fn timing(
    base: Timing,
    interval: Option<f64>,
    timeout: Option<f64>,
    jitter: Option<f64>,
    confirm: Option<u32>,
    confirm_gap: Option<f64>,
    watch: Option<bool>,
    heartbeat: Option<f64>,
    f: &str,
    issues: &mut Issues,
) -> Timing {
    let mut t = base;
    if let Some(v) = interval
        && let Some(d) = seconds(v, &format!("{f}.interval"), 1.0, issues)
    {
        t.interval = d;
    }
    if let Some(v) = timeout
        && let Some(d) = seconds(v, &format!("{f}.timeout"), 0.001, issues)
    {
        t.timeout = d;
    }
    if let Some(j) = jitter {
        if (0.0..=0.5).contains(&j) {
            t.jitter = j;
        } else {
            issues.push(
                format!("{f}.jitter"),
                format!("must be a fraction of the interval between 0 and 0.5 (got {j})"),
            );
        }
    }
    if let Some(c) = confirm {
        if c <= MAX_CONFIRM {
            t.confirm = c;
        } else {
            issues.push(
                format!("{f}.confirm"),
                format!("at most {MAX_CONFIRM} confirmation re-checks (got {c})"),
            );
        }
    }
    if let Some(v) = confirm_gap
        && let Some(d) = seconds(v, &format!("{f}.confirm_gap"), 0.0, issues)
    {
        t.confirm_gap = d;
    }
    if let Some(w) = watch {
        t.watch = w;
    }
    if let Some(h) = heartbeat {
        if h == 0.0 {
            t.heartbeat = Duration::ZERO;
        } else if let Some(d) = seconds(h, &format!("{f}.heartbeat"), MIN_HEARTBEAT, issues) {
            t.heartbeat = d;
        }
    }
    t
}

/// `[probe]`.
pub(super) fn validate_probe(p: &ProbeConfig, ctx: &Context, issues: &mut Issues) -> ProbeSettings {
    let mut s = ProbeSettings::default();
    if let Some(v) = &p.vantage {
        let v = v.trim();
        match check_name(v) {
            Ok(()) => s.vantage = v.to_string(),
            Err(_) if v.is_empty() => issues.push(
                "probe.vantage",
                "must be a non-empty name: letters, digits, '-', '_' and '.', at most 64",
            ),
            Err(e) => issues.push("probe.vantage", e),
        }
    }
    if let Some(c) = p.concurrency {
        if (1..=100_000).contains(&c) {
            s.concurrency = c as usize;
        } else {
            issues.push(
                "probe.concurrency",
                format!("must be between 1 and 100000 (got {c})"),
            );
        }
    }
    s.defaults = timing(
        s.defaults,
        p.interval,
        p.timeout,
        p.jitter,
        p.confirm,
        p.confirm_gap,
        p.watch,
        p.heartbeat,
        "probe",
        issues,
    );
    s.explicit_timeout = p.timeout.is_some();
    if !s.explicit_timeout {
        // The default timeout (2 s) gives way to a short interval.
        s.defaults.timeout = default_timeout(s.defaults.interval);
    } else if s.defaults.timeout >= s.defaults.interval {
        issues.push(
            "probe.timeout",
            format!(
                "must be shorter than the interval ({} s >= {} s)",
                s.defaults.timeout.as_secs_f64(),
                s.defaults.interval.as_secs_f64()
            ),
        );
    }
    if let Some(r) = &p.resolvers {
        s.resolvers = resolvers(r, "probe.resolvers", issues);
    }
    if let Some(d) = p.cert_warning_days {
        s.cert_warning_days = d;
    }
    if let Some(f) = &p.ca_file {
        s.ca_file = ca_file(f, "probe.ca_file", ctx, issues);
    }
    s
}

/// A CA file (relative to the configuration's directory), read and checked now.
fn ca_file(value: &str, field: &str, ctx: &Context, issues: &mut Issues) -> Option<PathBuf> {
    let p = ctx.path(value, None);
    let path = p.display().to_string();
    match std::fs::read(&p) {
        Ok(bytes) => {
            let n = rustls_pki_certs(&bytes);
            match n {
                Ok(0) => {
                    issues.push(field, format!("{path}: no PEM certificate found"));
                    None
                }
                Ok(_) => Some(p),
                Err(e) => {
                    issues.push(field, format!("{path}: {e}"));
                    None
                }
            }
        }
        Err(e) => {
            issues.push(field, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// Number of certificates in a PEM file.
fn rustls_pki_certs(pem: &[u8]) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| format!("bad PEM: {e}"))?;
        n += 1;
    }
    Ok(n)
}

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

/// `targets[i].check`. `addrs` are the target's own a/aaaa addresses; `cname` its CNAME.
pub(super) fn validate_check(
    t: &TargetConfig,
    c: &CheckConfig,
    f: &str,
    probe: &ProbeSettings,
    addrs: &[IpAddr],
    ctx: &Context,
    issues: &mut Issues,
) -> Option<CheckSpec> {
    let before = issues.0.len();
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

    // URL → HTTP request.
    let mut http = None;
    if let Some(u) = &c.url {
        match u.trim().parse::<http::Uri>() {
            Ok(uri) => {
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
                if let (Some(https), Some(host)) = (https, host.filter(|h| !h.is_empty())) {
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
                    http = Some((
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
                    ));
                } else if https.is_some() {
                    issues.push(format!("{f}.url"), format!("\"{u}\" has no host"));
                }
            }
            Err(e) => issues.push(
                format!("{f}.url"),
                format!("\"{u}\" is not a URL ({e}): it must start with http:// or https://"),
            ),
        }
    }
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

    // Levels.
    let levels: Vec<Level> = match &c.levels {
        Some(list) => {
            let mut out = Vec::new();
            for (i, l) in list.iter().enumerate() {
                match Level::parse(&l.trim().to_ascii_lowercase()) {
                    Some(Level::Check) | None => issues.push(
                        format!("{f}.levels[{i}]"),
                        format!(
                            "unknown level \"{l}\" (expected dns, tcp, tls, http, content or cache)"
                        ),
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
        None => {
            let mut out = Vec::new();
            if dns_host.is_some() {
                out.push(Level::Dns);
            }
            if c.address.is_some() || c.port.is_some() || http.is_some() {
                out.push(Level::Tcp);
            }
            if let Some((h, _)) = &http {
                if h.https {
                    out.push(Level::Tls);
                }
                out.push(Level::Http);
                if content.is_some() {
                    out.push(Level::Content);
                }
                if c.cache.is_some() {
                    out.push(Level::Cache);
                }
            }
            out
        }
    };
    if levels.is_empty() && issues.0.len() == before {
        issues.push(
            f,
            "nothing to check: set `url` (http/https checks), `port` or `address` (tcp), or `host` (dns)",
        );
    }
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
    let https = http.as_ref().map(|(h, _)| h.https);
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
    if has(Level::Content) && content.is_none() && c.content.is_none() {
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

    // Where to connect.
    let port = c.port.or(http.as_ref().map(|(_, p)| *p));
    let connect = if has(Level::Tcp) {
        match &c.address {
            Some(a) => match a.trim().parse::<SocketAddr>() {
                Ok(sa) => Some(Connect::Fixed(sa)),
                Err(_) => {
                    issues.push(
                        format!("{f}.address"),
                        format!("\"{a}\" is not an \"ip:port\" address"),
                    );
                    None
                }
            },
            None => match port {
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
                Some(p) if has(Level::Dns) => Some(Connect::Resolved(p)),
                Some(p) if !addrs.is_empty() => Some(Connect::Addrs(addrs.to_vec(), p)),
                Some(_) => {
                    issues.push(
                        format!("{f}.levels"),
                        "the tcp level needs an address: set `address`, keep the \"dns\" level, or give the target a/aaaa addresses",
                    );
                    None
                }
            },
        }
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
    if issues.0.len() != before {
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

/// `[health]` → the state machine's thresholds.
pub(super) fn validate_health(
    h: &super::schema::HealthConfig,
    issues: &mut Issues,
) -> crate::health::machine::Thresholds {
    let mut t = crate::health::machine::Thresholds::default();
    let mut frac = |v: Option<f64>, key: &str, slot: &mut f64| {
        if let Some(x) = v {
            if (0.0..=1.0).contains(&x) {
                *slot = x;
            } else {
                issues.push(
                    format!("health.{key}"),
                    format!("must be between 0 and 1 (got {x})"),
                );
            }
        }
    };
    frac(h.error_rate, "error_rate", &mut t.error_rate.fail_above);
    frac(
        h.error_rate_recover,
        "error_rate_recover",
        &mut t.error_rate.recover_below,
    );
    frac(
        h.availability,
        "availability",
        &mut t.availability.fail_below,
    );
    frac(
        h.availability_recover,
        "availability_recover",
        &mut t.availability.recover_above,
    );
    let secs = |v: Option<f64>, key: &str, min: f64, issues: &mut Issues| {
        v.and_then(|x| seconds(x, &format!("health.{key}"), min, issues))
    };
    if let Some(d) = secs(h.p95, "p95", 0.001, issues) {
        t.latency.fail_above = d;
    }
    if let Some(d) = secs(h.p95_recover, "p95_recover", 0.001, issues) {
        t.latency.recover_below = d;
    }
    if let Some(d) = secs(h.recover_for, "recover_for", 0.0, issues) {
        t.error_rate.recover_for = d;
        t.latency.recover_for = d;
    }
    if let Some(d) = secs(
        h.availability_recover_for,
        "availability_recover_for",
        0.0,
        issues,
    ) {
        t.availability.recover_for = d;
    }
    if let Some(d) = secs(h.min_dwell, "min_dwell", 0.0, issues) {
        t.min_dwell = d;
    }
    if let Some(d) = secs(h.unstable_for, "unstable_for", 0.0, issues) {
        t.unstable_for = d;
    }
    if let Some(n) = h.min_samples {
        t.error_rate.min_samples = n;
    }
    if let Some(z) = h.confidence_z {
        if (0.0..=10.0).contains(&z) {
            t.error_rate.z = z;
        } else {
            issues.push(
                "health.confidence_z",
                format!("must be between 0 and 10 (got {z})"),
            );
        }
    }
    if t.error_rate.recover_below > t.error_rate.fail_above {
        issues.push(
            "health.error_rate_recover",
            "must not be above health.error_rate (recovery needs a lower error rate than failure)",
        );
    }
    if t.availability.recover_above < t.availability.fail_below {
        issues.push(
            "health.availability_recover",
            "must not be below health.availability",
        );
    }
    if t.latency.recover_below > t.latency.fail_above {
        issues.push("health.p95_recover", "must not be above health.p95");
    }
    t
}
