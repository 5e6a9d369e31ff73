//! Validation: from the raw schema to a [`ValidConfig`] whose names are parsed, records built and
//! references resolved. Every rule reports the exact field path.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use ipnet::IpNet;

use super::ConfigIssue;
use super::check::{CheckSpec, ProbeSettings, validate_check, validate_probe};
use super::schema::{
    AllDownMode, Config, NetConfig, PolicyKind, RecordConfig, RegionTarget, UdpEngine,
};
use crate::geo::{CONTINENTS, CountryTable};

/// Largest TTL RFC 2181 allows.
const MAX_TTL: u32 = 0x7fff_ffff;
const MAX_WEIGHT: i64 = 1_000_000;

/// Listener and engine settings, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub dns_listen: Vec<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub udp_sockets: usize,
    /// A test and benchmark switch, not a configuration key: validation sets `Fast`.
    pub udp_engine: UdpEngine,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
    pub hash_prefix_v4: u8,
    pub hash_prefix_v6: u8,
    /// `server.state_file`, a relative path resolved against the configuration's directory
    /// (see [`crate::persist::path_for`]).
    pub state_file: Option<String>,
    /// Connection caps and timeouts of each DNS TCP listener.
    pub tcp: crate::conns::ConnLimits,
    /// Descriptors the listeners never take.
    pub fd_reserve: usize,
    /// Response rate limiting (None: off).
    pub rrl: Option<crate::dns::rrl::RrlSettings>,
    pub cookies: crate::dns::cookie::CookieSettings,
}

/// A zone's static data: SOA, apex NS, and every static RRset keyed by lower-case owner name.
#[derive(Debug, Clone)]
pub struct StaticZone {
    pub apex: Name,
    pub soa: Record,
    pub ns: Vec<Record>,
    /// owner (lower case, FQDN) → type → records
    pub rrsets: BTreeMap<Name, BTreeMap<RecordType, Vec<Record>>>,
    /// Delegation points (owners of NS records below the apex).
    pub cuts: Vec<Name>,
}

/// What a target answers when chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAnswer {
    Cname(Name),
    Addrs {
        a: Vec<Ipv4Addr>,
        aaaa: Vec<Ipv6Addr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub answer: TargetAnswer,
    /// (latitude, longitude) in degrees, for proximity steering.
    pub coords: Option<(f64, f64)>,
    /// Health check; None = not probed.
    pub check: Option<std::sync::Arc<CheckSpec>>,
    /// Price, cap and commit; None = unmetered.
    pub cost: Option<crate::policy::cost::CostModel>,
    /// "edge" or "origin".
    pub role: &'static str,
}

/// Scope of an admin API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Admin,
}

/// One admin API bearer token.
#[derive(Clone, PartialEq)]
pub struct Token {
    pub name: String,
    pub secret: String,
    pub scope: Scope,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, {:?}, <secret>)", self.name, self.scope)
    }
}

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub tokens: Vec<Token>,
    pub max_body: usize,
    /// Connection caps and timeouts of the admin listener.
    pub conns: crate::conns::ConnLimits,
}

/// An operator override in force (or expired: see `until_ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideSpec {
    pub target: String,
    pub kind: crate::health::machine::OverrideKind,
    /// Only clients of this region (None = everyone).
    pub region: Option<(RegionKey, String)>,
    pub until_ms: Option<u64>,
    pub reason: String,
    pub set_at_ms: u64,
}

/// A region key of a geo map, most specific first when matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegionKey {
    Country([u8; 2], [u8; 2]),
    Continent([u8; 2]),
    Default,
}

/// The targets a region (or a network override) answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionChoice {
    /// Indices into the service's `members`, in failover order.
    pub members: Vec<usize>,
    /// Weighted split among `members` (weights from the region entry) instead of failover order.
    pub weights: Option<Vec<u32>>,
}

/// Network override: a CIDR placed in a country or continent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOverride {
    pub net: IpNet,
    pub country: Option<[u8; 2]>,
    pub continent: [u8; 2],
}

/// Geography settings, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSettings {
    pub database: Option<std::path::PathBuf>,
    pub countries: std::path::PathBuf,
    pub nets_file: Option<std::path::PathBuf>,
    pub reload_interval: Duration,
    pub nets: Vec<NetOverride>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Index into [`ValidConfig::targets`].
    pub target: usize,
    /// Weight for `weighted` (1 for other policies; 0 for targets that a geo map or nets adds).
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: Name,
    /// Index into [`ValidConfig::zones`].
    pub zone: usize,
    pub ttl: u32,
    pub policy: PolicyKind,
    /// Every target the service can answer with (its `targets`, then any other target named
    /// by its geo map or nets).
    pub members: Vec<Member>,
    /// `policy = "geo"`: region → choice.
    pub regions: Vec<(RegionKey, RegionChoice)>,
    /// Client networks sent to a fixed choice, whatever their location.
    pub nets: Vec<(IpNet, RegionChoice)>,
    /// How the policy chain runs for this service.
    pub chain: crate::policy::chain::ChainSettings,
    /// Last-resort CNAME for `all_down = "closed"`.
    pub fallback: Option<Name>,
    /// TTL while the answer depends on an unstable target.
    pub unstable_ttl: u32,
}

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub server: ServerSettings,
    pub geo: GeoSettings,
    /// The country table named by `geo.countries`.
    pub countries: std::sync::Arc<CountryTable>,
    pub zones: Vec<StaticZone>,
    pub targets: Vec<Target>,
    pub services: Vec<Service>,
    pub probe: ProbeSettings,
    pub health: crate::health::machine::Thresholds,
    /// Bumped by every admin API write.
    pub version: u64,
    pub admin: AdminSettings,
    pub alerts: crate::alert::AlertSettings,
    pub overrides: Vec<OverrideSpec>,
}

impl ValidConfig {
    /// One-line summary for `check-config` and logs.
    pub fn summary(&self) -> String {
        let records: usize = self
            .zones
            .iter()
            .map(|z| {
                z.rrsets
                    .values()
                    .flat_map(|m| m.values())
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum();
        format!(
            "{} zone(s), {} static record(s), {} target(s), {} service(s), listening on {}",
            self.zones.len(),
            records,
            self.targets.len(),
            self.services.len(),
            self.server
                .dns_listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Where a configuration comes from, for the rules that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Directory relative paths start from (the configuration file's); None: the working
    /// directory.
    pub dir: Option<PathBuf>,
    /// The configuration is to be served: without zones it is refused unless it sets
    /// `allow_no_zones = true`.
    pub serve: bool,
}

impl Context {
    /// The path a path key names: as written when absolute (or when there is no directory),
    /// else relative to the configuration's directory. `shipped` is the key's default, which
    /// names a file shipped with steerd: written as is, it is looked up beside the
    /// configuration first, then from the working directory (where the repository root and
    /// the packaged installs keep `geodb/`).
    pub(crate) fn path(&self, value: &str, shipped: Option<&str>) -> PathBuf {
        let p = Path::new(value);
        let Some(dir) = self.dir.as_deref().filter(|d| !d.as_os_str().is_empty()) else {
            return p.to_path_buf();
        };
        if p.is_absolute() || value.is_empty() {
            return p.to_path_buf();
        }
        let beside = dir.join(p);
        if shipped == Some(value) && !beside.exists() {
            return p.to_path_buf();
        }
        beside
    }
}

/// Longest target or vantage name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest override reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// `s` for an error message: at most 64 characters of it.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A target or vantage name (it appears in URLs, metric labels, logs and the TOML file):
/// 1 to 64 letters, digits, `-`, `_` and `.`, starting with a letter or a digit.
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters (got {} bytes)",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{c:?} is not allowed in a name: use letters, digits, '-', '_' and '.'"
        ));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or a digit".into());
    }
    Ok(())
}

/// Free text that goes into logs, events and alerts one line each (an override's reason): at
/// most `max` bytes, no control characters (no newline).
pub fn check_text(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("must be at most {max} bytes (got {})", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("{c:?}: control characters are not allowed"));
    }
    Ok(())
}

/// Host-name characters only: each label holds letters, digits, `-` and `_`.
fn check_labels(name: &Name, s: &str) -> Result<(), String> {
    for label in name.iter() {
        if let Some(&b) = label
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
        {
            return Err(format!(
                "\"{}\" is not a valid domain name: {:?} is not allowed (a label holds letters, digits, '-' and '_')",
                excerpt(s),
                b as char
            ));
        }
    }
    Ok(())
}

pub(super) struct Issues(pub(super) Vec<ConfigIssue>);

impl Issues {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            field: field.into(),
            line: None,
            message: message.into(),
        });
    }
}

/// Parse an absolute domain name (trailing dot optional) into a lower-case FQDN.
pub(crate) fn parse_name(s: &str) -> Result<Name, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty domain name".into());
    }
    if t == "." {
        return Ok(Name::root());
    }
    let s = excerpt(s);
    if t.contains(char::is_whitespace) {
        return Err(format!(
            "\"{s}\" is not a valid domain name: contains whitespace"
        ));
    }
    if t.ends_with("..") {
        return Err(format!("\"{s}\" is not a valid domain name: empty label"));
    }
    let mut name = Name::from_ascii(t.strip_suffix('.').unwrap_or(t))
        .map_err(|e| format!("\"{s}\" is not a valid domain name: {e}"))?;
    if name.iter().any(|l| l.is_empty()) {
        return Err(format!("\"{s}\" is not a valid domain name: empty label"));
    }
    check_labels(&name, t)?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn parse_ttl(ttl: u32, field: String, issues: &mut Issues) -> u32 {
    if ttl > MAX_TTL {
        issues.push(
            field,
            format!("TTL {ttl} exceeds the maximum {MAX_TTL} (RFC 2181)"),
        );
    }
    ttl
}

/// Validate a parsed configuration (relative paths from the working directory; a
/// configuration without zones is accepted); returns every issue found.
pub fn validate(cfg: &Config) -> Result<ValidConfig, Vec<ConfigIssue>> {
    validate_in(cfg, &Context::default())
}

/// Validate a parsed configuration read in `ctx`; returns every issue found.
pub fn validate_in(cfg: &Config, ctx: &Context) -> Result<ValidConfig, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());
    let server = validate_server(cfg, ctx, &mut issues);
    if ctx.serve && cfg.zones.is_empty() && !cfg.allow_no_zones {
        issues.push(
            "zones",
            "no zone: this configuration would answer every query REFUSED; add a [[zones]] \
             table, or set `allow_no_zones = true` (at the top of the file) to serve nothing on \
             purpose",
        );
    }

    // Zones: apex names first, so records can be checked against every zone.
    let mut apexes: Vec<Option<Name>> = Vec::new();
    let mut seen_zone: HashMap<Name, usize> = HashMap::new();
    for (i, z) in cfg.zones.iter().enumerate() {
        match parse_name(&z.name) {
            Ok(n) if n.is_root() => {
                issues.push(format!("zones[{i}].name"), "the root zone cannot be served");
                apexes.push(None);
            }
            Ok(n) => {
                if let Some(j) = seen_zone.insert(n.clone(), i) {
                    issues.push(
                        format!("zones[{i}].name"),
                        format!("duplicate zone \"{n}\" (also zones[{j}])"),
                    );
                }
                apexes.push(Some(n));
            }
            Err(e) => {
                issues.push(format!("zones[{i}].name"), e);
                apexes.push(None);
            }
        }
    }
    let known_apexes: Vec<(usize, Name)> = apexes
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.clone().map(|a| (i, a)))
        .collect();
    // Most specific zone containing `name`.
    let zone_for = |name: &Name| -> Option<usize> {
        known_apexes
            .iter()
            .filter(|(_, apex)| apex.zone_of(name))
            .max_by_key(|(_, apex)| apex.num_labels())
            .map(|(i, _)| *i)
    };

    let mut zones = Vec::new();
    for (i, z) in cfg.zones.iter().enumerate() {
        let Some(apex) = apexes[i].clone() else {
            continue;
        };
        if let Some(zone) = validate_zone(i, z, apex, &zone_for, &mut issues) {
            zones.push((i, zone));
        }
    }

    // A zone cannot start below a delegation of a less specific zone we also serve.
    for (i, z) in &zones {
        for (j, other) in &zones {
            if let Some(cut) = other
                .cuts
                .iter()
                .find(|c| **c != z.apex && c.zone_of(&z.apex))
            {
                issues.push(
                    format!("zones[{i}].name"),
                    format!(
                        "\"{}\" is below the delegation \"{cut}\" of zones[{j}]: serve it from the delegated servers, or remove the delegation",
                        z.apex
                    ),
                );
            }
        }
    }

    let probe = validate_probe(&cfg.probe, ctx, &mut issues);
    let health = super::check::validate_health(&cfg.health, &mut issues);

    // Targets.
    let mut targets = Vec::new();
    let mut target_idx: HashMap<&str, usize> = HashMap::new();
    for (i, t) in cfg.targets.iter().enumerate() {
        let f = format!("targets[{i}]");
        if t.name.trim().is_empty() {
            issues.push(format!("{f}.name"), "target name must not be empty");
        } else if let Err(e) = check_name(&t.name) {
            issues.push(format!("{f}.name"), e);
        } else if let Some(j) = target_idx.get(t.name.as_str()) {
            issues.push(
                format!("{f}.name"),
                format!("duplicate target \"{}\" (also targets[{j}])", t.name),
            );
        }
        let answer =
            match (&t.cname, t.a.is_empty() && t.aaaa.is_empty()) {
                (Some(_), false) => {
                    issues.push(
                    f.clone(),
                    "a target answers either with `cname` or with `a`/`aaaa` addresses, not both",
                );
                    None
                }
                (None, true) => {
                    issues.push(
                        f.clone(),
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
                (None, false) => {
                    let mut a = Vec::new();
                    for (k, s) in t.a.iter().enumerate() {
                        match s.trim().parse::<Ipv4Addr>() {
                            Ok(ip) if a.contains(&ip) => issues
                                .push(format!("{f}.a[{k}]"), format!("duplicate address {ip}")),
                            Ok(ip) => a.push(ip),
                            Err(_) => issues.push(
                                format!("{f}.a[{k}]"),
                                format!("\"{s}\" is not a valid IPv4 address"),
                            ),
                        }
                    }
                    let mut aaaa = Vec::new();
                    for (k, s) in t.aaaa.iter().enumerate() {
                        match s.trim().parse::<Ipv6Addr>() {
                            Ok(ip) if aaaa.contains(&ip) => issues
                                .push(format!("{f}.aaaa[{k}]"), format!("duplicate address {ip}")),
                            Ok(ip) => aaaa.push(ip),
                            Err(_) => issues.push(
                                format!("{f}.aaaa[{k}]"),
                                format!("\"{s}\" is not a valid IPv6 address"),
                            ),
                        }
                    }
                    Some(TargetAnswer::Addrs { a, aaaa })
                }
            };
        let coords = match (t.latitude, t.longitude) {
            (None, None) => None,
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) {
                    issues.push(
                        format!("{f}.latitude"),
                        format!("must be between -90 and 90 (got {lat})"),
                    );
                }
                if !(-180.0..=180.0).contains(&lon) {
                    issues.push(
                        format!("{f}.longitude"),
                        format!("must be between -180 and 180 (got {lon})"),
                    );
                }
                Some((lat, lon))
            }
            _ => {
                issues.push(f.clone(), "set both `latitude` and `longitude`, or neither");
                None
            }
        };
        let check = t.check.as_ref().and_then(|c| {
            let addrs: Vec<IpAddr> = match &answer {
                Some(TargetAnswer::Addrs { a, aaaa }) => a
                    .iter()
                    .map(|x| IpAddr::V4(*x))
                    .chain(aaaa.iter().map(|x| IpAddr::V6(*x)))
                    .collect(),
                _ => Vec::new(),
            };
            validate_check(
                t,
                c,
                &format!("{f}.check"),
                &probe,
                &addrs,
                ctx,
                &mut issues,
            )
            .map(std::sync::Arc::new)
        });
        let cost = t.cost.as_ref().and_then(|c| {
            let cf = format!("{f}.cost");
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
            money(c.price_per_gb, "price_per_gb", &mut issues);
            for (k, v) in &c.region_prices {
                money(*v, &format!("region_prices.{k}"), &mut issues);
            }
            if let Some(v) = c.monthly_cap {
                money(v, "monthly_cap", &mut issues);
            }
            if let Some(v) = c.commit {
                money(v, "commit", &mut issues);
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
            ok.then(|| crate::policy::cost::CostModel {
                price_per_gb: c.price_per_gb,
                region_prices: c.region_prices.clone(),
                monthly_cap: c.monthly_cap,
                commit: c.commit,
                bytes_per_answer: c
                    .bytes_per_answer
                    .unwrap_or(crate::policy::cost::DEFAULT_BYTES_PER_ANSWER),
            })
        });
        target_idx.entry(t.name.as_str()).or_insert(i);
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
        targets.push(answer.map(|answer| Target {
            name: t.name.clone(),
            answer,
            coords,
            check,
            cost,
            role,
        }));
    }

    // Geography.
    let (geo, countries) = validate_geo(cfg, ctx, &mut issues);

    // Services.
    let mut services = Vec::new();
    let mut seen_service: HashMap<Name, usize> = HashMap::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let f = format!("services[{i}]");
        let name = match parse_name(&s.name) {
            Ok(n) => n,
            Err(e) => {
                issues.push(format!("{f}.name"), e);
                continue;
            }
        };
        if let Some(j) = seen_service.insert(name.clone(), i) {
            issues.push(
                format!("{f}.name"),
                format!("duplicate service \"{name}\" (also services[{j}])"),
            );
        }
        let zone = zone_for(&name);
        match zone {
            None => issues.push(
                format!("{f}.name"),
                format!("\"{name}\" is not inside any configured zone"),
            ),
            Some(zi) => {
                if let Some((_, z)) = zones.iter().find(|(k, _)| *k == zi) {
                    if let Some(types) = z.rrsets.get(&name) {
                        let t: Vec<String> = types.keys().map(ToString::to_string).collect();
                        issues.push(
                            format!("{f}.name"),
                            format!(
                                "duplicate name: \"{name}\" already has static {} record(s) in zones[{zi}]; a steered name cannot hold other data",
                                t.join("/")
                            ),
                        );
                    }
                    if name == z.apex {
                        issues.push(
                            format!("{f}.name"),
                            "a steered name cannot be a zone apex (it would be a CNAME beside SOA/NS)",
                        );
                    }
                    if let Some(cut) = z.cuts.iter().find(|c| c.zone_of(&name)) {
                        issues.push(
                            format!("{f}.name"),
                            format!("\"{name}\" is inside the delegation \"{cut}\""),
                        );
                    }
                }
            }
        }
        let ttl = parse_ttl(s.ttl, format!("{f}.ttl"), &mut issues);
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
        let mut members = Vec::new();
        for (k, m) in s.targets.iter().enumerate() {
            let mf = format!("{f}.targets[{k}]");
            let Some(&ti) = target_idx.get(m.target.as_str()) else {
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
                (PolicyKind::Weighted, Some(w)) if w <= 0 => {
                    issues.push(
                        format!("{mf}.weight"),
                        format!("weight must be greater than 0 (got {w})"),
                    );
                    1
                }
                (PolicyKind::Weighted, Some(w)) if w > MAX_WEIGHT => {
                    issues.push(
                        format!("{mf}.weight"),
                        format!("weight must be at most {MAX_WEIGHT} (got {w})"),
                    );
                    1
                }
                (PolicyKind::Weighted, Some(w)) => w as u32,
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
                if targets[m.target]
                    .as_ref()
                    .is_some_and(|t| t.coords.is_none())
                {
                    issues.push(
                        format!("{f}.targets[{k}].target"),
                        format!(
                            "target \"{}\" has no latitude/longitude, which proximity (and cache-aware) steering needs",
                            cfg.targets[m.target].name
                        ),
                    );
                }
            }
        }
        // A member index for a target name, adding the target to the service if new.
        let mut member_of = |name: &str, field: String, issues: &mut Issues| -> Option<usize> {
            let Some(&ti) = target_idx.get(name) else {
                issues.push(
                    field,
                    format!(
                        "unknown target \"{}\" (not defined in [[targets]])",
                        excerpt(name)
                    ),
                );
                return None;
            };
            Some(match members.iter().position(|m| m.target == ti) {
                Some(p) => p,
                None => {
                    // Weight 0: reachable through the map or nets, not part of a weighted split.
                    members.push(Member {
                        target: ti,
                        weight: 0,
                    });
                    members.len() - 1
                }
            })
        };
        let mut regions = Vec::new();
        for (key, list) in &s.geo {
            let kf = format!("{f}.geo.{key}");
            let Some(rk) = parse_region_key(key, countries.as_deref(), &kf, &mut issues) else {
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
                let (name, weight) = match e {
                    RegionTarget::Name(n) => (n.as_str(), None),
                    RegionTarget::Weighted(w) => (w.target.as_str(), w.weight),
                };
                let Some(mi) = member_of(name, ef.clone(), &mut issues) else {
                    continue;
                };
                if choice.members.contains(&mi) {
                    issues.push(ef, format!("target \"{name}\" is listed twice"));
                    continue;
                }
                if let Some(ws) = &mut choice.weights {
                    match weight {
                        Some(w) if (1..=MAX_WEIGHT).contains(&w) => ws.push(w as u32),
                        Some(w) => {
                            let why = if w <= 0 {
                                format!("weight must be greater than 0 (got {w})")
                            } else {
                                format!("weight must be at most {MAX_WEIGHT} (got {w})")
                            };
                            issues.push(format!("{ef}.weight"), why);
                            ws.push(1);
                        }
                        None => {
                            issues.push(format!("{ef}.weight"), "missing weight: in a weighted region every target needs `weight` > 0");
                            ws.push(1);
                        }
                    }
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
        let mut nets = Vec::new();
        for (k, n) in s.nets.iter().enumerate() {
            let nf = format!("{f}.nets[{k}]");
            let Some(net) = parse_cidr(&n.cidr, &format!("{nf}.cidr"), &mut issues) else {
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
                if let Some(mi) = member_of(t, format!("{nf}.targets[{j}]"), &mut issues)
                    && !choice.members.contains(&mi)
                {
                    choice.members.push(mi);
                }
            }
            nets.push((net, choice));
        }
        // Chain settings.
        let mut chain = crate::policy::chain::ChainSettings::default();
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
                        targets[m.target]
                            .as_ref()
                            .is_some_and(|t| matches!(t.answer, TargetAnswer::Cname(_)))
                    }) {
                        issues.push(
                            format!("{f}.select"),
                            format!(
                                "select > 1 merges A/AAAA addresses, but target \"{}\" answers with a CNAME (a name holds one CNAME)",
                                cfg.targets[m.target].name
                            ),
                        );
                    }
                }
            }
        }
        chain.all_down = s.all_down.unwrap_or_default();
        let fallback = match &s.fallback {
            Some(fb) => match parse_name(fb) {
                Ok(n) => Some(n),
                Err(e) => {
                    issues.push(format!("{f}.fallback"), e);
                    None
                }
            },
            None => None,
        };
        if fallback.is_some() && chain.all_down != AllDownMode::Closed {
            issues.push(
                format!("{f}.fallback"),
                "the fallback answer is used only with all_down = \"closed\"",
            );
        }
        chain.has_fallback = fallback.is_some();
        let unstable_ttl = s.unstable_ttl.unwrap_or(5).min(ttl);
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
        if (s.stabilize_pct.is_some() || s.stabilize_ms.is_some())
            && s.policy != PolicyKind::Latency
        {
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
        if let Some(zone) = zone {
            services.push(Service {
                name,
                zone,
                ttl,
                policy: s.policy,
                members,
                regions,
                nets,
                chain,
                fallback,
                unstable_ttl,
            });
        }
    }

    let admin = validate_admin(cfg, server.as_ref(), &mut issues);
    let alerts = match crate::alert::validate(&cfg.alerts) {
        Ok(a) => a,
        Err(list) => {
            issues.0.extend(list);
            Default::default()
        }
    };
    let overrides = validate_overrides(cfg, countries.as_deref(), &mut issues);

    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    // Zone indices in services refer to config positions; every zone is present when no issue.
    let zones: Vec<StaticZone> = zones.into_iter().map(|(_, z)| z).collect();
    Ok(ValidConfig {
        server: server.expect("server settings valid when no issue"),
        geo: geo.expect("geo settings valid when no issue"),
        countries: countries.expect("country table loaded when no issue"),
        zones,
        targets: targets.into_iter().map(|t| t.expect("valid")).collect(),
        services,
        probe,
        health,
        version: cfg.version,
        admin,
        alerts,
        overrides,
    })
}

/// Default largest admin request body.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

fn validate_admin(
    cfg: &Config,
    server: Option<&ServerSettings>,
    issues: &mut Issues,
) -> AdminSettings {
    let mut tokens = Vec::new();
    for (i, t) in cfg.admin.tokens.iter().enumerate() {
        let f = format!("admin.tokens[{i}]");
        let scope = match t.scope.as_str() {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            other => {
                issues.push(
                    format!("{f}.scope"),
                    format!("must be \"read\" or \"admin\" (got \"{other}\")"),
                );
                None
            }
        };
        let secret = match (&t.token, &t.token_env) {
            (Some(s), None) => Some(s.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => {
                    issues.push(
                        format!("{f}.token_env"),
                        format!("environment variable {var} is not set (or empty)"),
                    );
                    None
                }
            },
            _ => {
                issues.push(f.clone(), "set exactly one of `token` and `token_env`");
                None
            }
        };
        if let Some(s) = &secret
            && s.len() < 16
        {
            issues.push(
                format!("{f}.token"),
                "must be at least 16 characters (use e.g. `openssl rand -hex 32`)",
            );
            continue;
        }
        if let (Some(scope), Some(secret)) = (scope, secret) {
            tokens.push(Token {
                name: t.name.clone().unwrap_or_else(|| format!("tokens[{i}]")),
                secret,
                scope,
            });
        }
    }
    let max_body = match cfg.admin.max_body {
        Some(0) => {
            issues.push("admin.max_body", "must be positive");
            DEFAULT_MAX_BODY
        }
        Some(n) => n,
        None => DEFAULT_MAX_BODY,
    };
    let _ = server;
    let conns = super::net::admin_limits(&cfg.admin, issues);
    AdminSettings {
        tokens,
        max_body,
        conns,
    }
}

fn validate_overrides(
    cfg: &Config,
    countries: Option<&CountryTable>,
    issues: &mut Issues,
) -> Vec<OverrideSpec> {
    let mut out = Vec::new();
    for (i, o) in cfg.overrides.iter().enumerate() {
        let f = format!("overrides[{i}]");
        let mut ok = true;
        if !cfg.targets.iter().any(|t| t.name == o.target) {
            issues.push(
                format!("{f}.target"),
                format!("no target named \"{}\"", excerpt(&o.target)),
            );
            ok = false;
        }
        let kind = crate::health::machine::OverrideKind::parse(&o.state);
        if kind.is_none() {
            issues.push(
                format!("{f}.state"),
                format!(
                    "must be \"forced_up\", \"forced_down\" or \"drained\" (got \"{}\")",
                    o.state
                ),
            );
            ok = false;
        }
        let region = match &o.region {
            None => None,
            Some(r) => match parse_region_key(r, countries, &format!("{f}.region"), issues) {
                Some(k) => Some((k, r.clone())),
                None => {
                    ok = false;
                    None
                }
            },
        };
        if let Err(e) = check_text(&o.reason, MAX_REASON_LEN) {
            issues.push(format!("{f}.reason"), e);
            ok = false;
        }
        for (key, t) in [("until", o.until), ("set_at", o.set_at)] {
            if let Some(u) = t
                && u > 253_402_300_799
            {
                issues.push(
                    format!("{f}.{key}"),
                    format!("{u} is not a Unix time in seconds (after year 9999; milliseconds?)"),
                );
                ok = false;
            }
        }
        if let Some(j) = cfg.overrides[..i]
            .iter()
            .position(|p| p.target == o.target && p.region == o.region)
        {
            issues.push(
                f.clone(),
                format!("a second override of the same target and region (also overrides[{j}])"),
            );
            ok = false;
        }
        if ok && let Some(kind) = kind {
            out.push(OverrideSpec {
                target: o.target.clone(),
                kind,
                region,
                until_ms: o.until.map(|s| s.saturating_mul(1000)),
                reason: o.reason.clone(),
                set_at_ms: o.set_at.unwrap_or(0).saturating_mul(1000),
            });
        }
    }
    out
}

/// Parse a CIDR; host bits must be zero.
fn parse_cidr(s: &str, field: &str, issues: &mut Issues) -> Option<IpNet> {
    match s.trim().parse::<IpNet>() {
        Ok(n) if n.trunc() != n => {
            issues.push(
                field,
                format!("\"{s}\" has host bits set (did you mean {}?)", n.trunc()),
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            issues.push(
                field,
                format!("\"{s}\" is not a valid CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)"),
            );
            None
        }
    }
}

fn parse_continent(s: &str) -> Option<[u8; 2]> {
    let b = s.as_bytes();
    (b.len() == 2 && CONTINENTS.iter().any(|c| c.as_bytes() == b)).then(|| [b[0], b[1]])
}

/// `"EU"`, `"EU/DE"` or `"default"`, checked against the country table.
fn parse_region_key(
    key: &str,
    countries: Option<&CountryTable>,
    field: &str,
    issues: &mut Issues,
) -> Option<RegionKey> {
    if key == "default" {
        return Some(RegionKey::Default);
    }
    let (cont, country) = match key.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (key, None),
    };
    let Some(c) = parse_continent(cont) else {
        issues.push(
            field,
            format!("\"{cont}\" is not a continent code ({}); keys are CONTINENT, CONTINENT/COUNTRY or default", CONTINENTS.join(", ")),
        );
        return None;
    };
    let Some(country) = country else {
        return Some(RegionKey::Continent(c));
    };
    let cc = country.as_bytes();
    if cc.len() != 2 || !cc.iter().all(u8::is_ascii_uppercase) {
        issues.push(
            field,
            format!("\"{country}\" is not an ISO 3166-1 alpha-2 country code (e.g. DE)"),
        );
        return None;
    }
    let cc = [cc[0], cc[1]];
    if let Some(table) = countries {
        match table.get(cc) {
            None => {
                issues.push(
                    field,
                    format!("unknown country \"{country}\" (not in the country table)"),
                );
                return None;
            }
            Some(info) if info.continent != c => {
                issues.push(
                    field,
                    format!(
                        "{country} is in {}, not {cont}: write \"{}/{country}\"",
                        String::from_utf8_lossy(&info.continent),
                        String::from_utf8_lossy(&info.continent)
                    ),
                );
                return None;
            }
            Some(_) => {}
        }
    }
    Some(RegionKey::Country(c, cc))
}

/// Parse network overrides (from the config or a nets file).
pub fn validate_nets(
    nets: &[NetConfig],
    prefix: &str,
    countries: &CountryTable,
) -> Result<Vec<NetOverride>, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());
    let mut out: Vec<NetOverride> = Vec::new();
    for (i, n) in nets.iter().enumerate() {
        let f = format!("{prefix}[{i}]");
        let Some(net) = parse_cidr(&n.cidr, &format!("{f}.cidr"), &mut issues) else {
            continue;
        };
        if out.iter().any(|o| o.net == net) {
            issues.push(format!("{f}.cidr"), format!("duplicate network {net}"));
            continue;
        }
        let entry = match (&n.country, &n.continent) {
            (Some(c), None) => {
                let b = c.as_bytes();
                match (b.len() == 2)
                    .then(|| [b[0], b[1]])
                    .and_then(|cc| countries.get(cc).map(|i| (cc, i)))
                {
                    Some((cc, info)) => Some(NetOverride {
                        net,
                        country: Some(cc),
                        continent: info.continent,
                    }),
                    None => {
                        issues.push(
                            format!("{f}.country"),
                            format!("unknown country \"{c}\" (not in the country table)"),
                        );
                        None
                    }
                }
            }
            (None, Some(c)) => match parse_continent(c) {
                Some(cont) => Some(NetOverride {
                    net,
                    country: None,
                    continent: cont,
                }),
                None => {
                    issues.push(
                        format!("{f}.continent"),
                        format!(
                            "\"{c}\" is not a continent code ({})",
                            CONTINENTS.join(", ")
                        ),
                    );
                    None
                }
            },
            _ => {
                issues.push(f.clone(), "set exactly one of `country` or `continent`");
                None
            }
        };
        out.extend(entry);
    }
    if issues.0.is_empty() {
        Ok(out)
    } else {
        Err(issues.0)
    }
}

fn validate_geo(
    cfg: &Config,
    ctx: &Context,
    issues: &mut Issues,
) -> (Option<GeoSettings>, Option<std::sync::Arc<CountryTable>>) {
    let g = &cfg.geo;
    let shipped = super::schema::GeoConfig::default();
    let countries_path = ctx.path(&g.countries, Some(&shipped.countries));
    let countries = match CountryTable::load(&countries_path) {
        Ok(t) => Some(std::sync::Arc::new(t)),
        Err(e) => {
            issues.push("geo.countries", e);
            None
        }
    };
    let nets = match &countries {
        Some(t) => match validate_nets(&g.nets, "geo.nets", t) {
            Ok(n) => n,
            Err(mut e) => {
                issues.0.append(&mut e);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if g.reload_interval > 86400 {
        issues.push(
            "geo.reload_interval",
            format!("must be at most 86400 seconds (got {})", g.reload_interval),
        );
    }
    let settings = GeoSettings {
        database: (!g.database.trim().is_empty())
            .then(|| ctx.path(g.database.trim(), Some(&shipped.database))),
        countries: countries_path,
        nets_file: g.nets_file.as_deref().map(|p| ctx.path(p, None)),
        reload_interval: Duration::from_secs(g.reload_interval),
        nets,
    };
    (Some(settings), countries)
}

fn validate_server(cfg: &Config, ctx: &Context, issues: &mut Issues) -> Option<ServerSettings> {
    let s = &cfg.server;
    // Relative to the configuration's directory ("" = no state file).
    let state_file = s
        .state_file
        .as_deref()
        .map(|p| ctx.path(p, None).to_string_lossy().into_owned());
    let before = issues.0.len();
    let mut dns_listen = Vec::new();
    if s.dns_listen.is_empty() {
        issues.push("server.dns_listen", "at least one listen address is needed");
    }
    for (i, a) in s.dns_listen.iter().enumerate() {
        match a.trim().parse::<SocketAddr>() {
            Ok(sa) if dns_listen.contains(&sa) => issues.push(
                format!("server.dns_listen[{i}]"),
                format!("duplicate address {sa}"),
            ),
            Ok(sa) => dns_listen.push(sa),
            Err(_) => issues.push(
                format!("server.dns_listen[{i}]"),
                format!("\"{a}\" is not a valid socket address (IP:port, [IPv6]:port)"),
            ),
        }
    }
    let admin_listen = match &s.admin_listen {
        None => None,
        Some(a) => match a.trim().parse::<SocketAddr>() {
            Ok(sa) => Some(sa),
            Err(_) => {
                issues.push(
                    "server.admin_listen",
                    format!("\"{a}\" is not a valid socket address (IP:port, [IPv6]:port)"),
                );
                None
            }
        },
    };
    if !(512..=4096).contains(&s.max_udp_payload) {
        issues.push(
            "server.max_udp_payload",
            format!("must be between 512 and 4096 (got {})", s.max_udp_payload),
        );
    }
    if s.tcp_idle_timeout == 0 || s.tcp_idle_timeout > 3600 {
        issues.push(
            "server.tcp_idle_timeout",
            format!(
                "must be between 1 and 3600 seconds (got {})",
                s.tcp_idle_timeout
            ),
        );
    }
    if s.hash_prefix_v4 > 32 {
        issues.push(
            "server.hash_prefix_v4",
            format!("must be at most 32 (got {})", s.hash_prefix_v4),
        );
    }
    if s.hash_prefix_v6 > 128 {
        issues.push(
            "server.hash_prefix_v6",
            format!("must be at most 128 (got {})", s.hash_prefix_v6),
        );
    }
    if let Some(p) = state_file.as_deref().filter(|p| !p.is_empty())
        && (p.ends_with('/') || std::path::Path::new(p).is_dir())
    {
        issues.push(
            "server.state_file",
            format!("\"{p}\" is a directory; name a file (or \"\" to keep no state)"),
        );
    }
    if s.udp_sockets > 1024 {
        issues.push(
            "server.udp_sockets",
            format!("must be at most 1024 (got {})", s.udp_sockets),
        );
    }
    let tcp = super::net::tcp_limits(s, issues);
    let fd_reserve = super::net::fd_reserve(s, issues);
    let rrl = super::net::rrl(&s.rrl, issues);
    let cookies = super::net::cookies(&s.cookies, issues);
    (issues.0.len() == before).then(|| ServerSettings {
        dns_listen,
        admin_listen,
        udp_sockets: s.udp_sockets,
        udp_engine: UdpEngine::Fast,
        max_udp_payload: s.max_udp_payload,
        tcp_idle_timeout: Duration::from_secs(s.tcp_idle_timeout),
        hash_prefix_v4: s.hash_prefix_v4,
        hash_prefix_v6: s.hash_prefix_v6,
        state_file,
        tcp,
        fd_reserve,
        rrl,
        cookies,
    })
}

fn validate_zone(
    i: usize,
    z: &super::schema::ZoneConfig,
    apex: Name,
    zone_for: &dyn Fn(&Name) -> Option<usize>,
    issues: &mut Issues,
) -> Option<StaticZone> {
    let f = format!("zones[{i}]");
    let before = issues.0.len();
    let soa_ttl = parse_ttl(z.soa.ttl, format!("{f}.soa.ttl"), issues);
    let ns_ttl = parse_ttl(z.ns_ttl, format!("{f}.ns_ttl"), issues);
    let default_ttl = parse_ttl(z.default_ttl, format!("{f}.default_ttl"), issues);
    let mname = parse_name(&z.soa.mname).map_err(|e| issues.push(format!("{f}.soa.mname"), e));
    let rname = parse_name(&z.soa.rname).map_err(|e| issues.push(format!("{f}.soa.rname"), e));
    for (k, v) in [
        ("refresh", z.soa.refresh),
        ("retry", z.soa.retry),
        ("expire", z.soa.expire),
    ] {
        if v > i32::MAX as u32 {
            issues.push(
                format!("{f}.soa.{k}"),
                format!("must be at most {} (got {v})", i32::MAX),
            );
        }
    }
    let soa = match (mname, rname) {
        (Ok(m), Ok(r)) => Some(Record::from_rdata(
            apex.clone(),
            soa_ttl,
            RData::SOA(SOA::new(
                m,
                r,
                z.soa.serial,
                z.soa.refresh as i32,
                z.soa.retry as i32,
                z.soa.expire as i32,
                z.soa.minimum,
            )),
        )),
        _ => None,
    };
    if z.ns.is_empty() {
        issues.push(format!("{f}.ns"), "a zone needs at least one name server");
    }
    let mut ns = Vec::new();
    for (k, n) in z.ns.iter().enumerate() {
        match parse_name(n) {
            Ok(n) => {
                let rec = Record::from_rdata(apex.clone(), ns_ttl, RData::NS(NS(n)));
                if ns.contains(&rec) {
                    issues.push(format!("{f}.ns[{k}]"), "duplicate name server");
                } else {
                    ns.push(rec);
                }
            }
            Err(e) => issues.push(format!("{f}.ns[{k}]"), e),
        }
    }

    let mut rrsets: BTreeMap<Name, BTreeMap<RecordType, Vec<Record>>> = BTreeMap::new();
    let mut first_field: HashMap<(Name, RecordType), String> = HashMap::new();
    for (k, r) in z.records.iter().enumerate() {
        let rf = format!("{f}.records[{k}]");
        let Some(owner) = owner_name(&r.name, &apex, &format!("{rf}.name"), issues) else {
            continue;
        };
        if !apex.zone_of(&owner) {
            issues.push(
                format!("{rf}.name"),
                format!("\"{owner}\" is outside the zone \"{apex}\""),
            );
            continue;
        }
        if let Some(zi) = zone_for(&owner)
            && zi != i
        {
            issues.push(
                format!("{rf}.name"),
                format!(
                    "\"{owner}\" belongs to the more specific zone zones[{zi}]; configure it there"
                ),
            );
            continue;
        }
        let ttl = parse_ttl(r.ttl.unwrap_or(default_ttl), format!("{rf}.ttl"), issues);
        let Some((rtype, rdatas)) = parse_rdata(r, &rf, issues) else {
            continue;
        };
        if owner == apex && rtype == RecordType::NS {
            issues.push(
                format!("{rf}.type"),
                format!("apex NS records come from {f}.ns, not from records"),
            );
            continue;
        }
        let set = rrsets
            .entry(owner.clone())
            .or_default()
            .entry(rtype)
            .or_default();
        first_field
            .entry((owner.clone(), rtype))
            .or_insert(rf.clone());
        for (d, rdata) in rdatas.into_iter().enumerate() {
            let rec = Record::from_rdata(owner.clone(), ttl, rdata);
            if set.iter().any(|x| x.data == rec.data) {
                issues.push(format!("{rf}.data[{d}]"), "duplicate record");
                continue;
            }
            if let Some(first) = set.first()
                && first.ttl != ttl
            {
                issues.push(
                    format!("{rf}.ttl"),
                    format!(
                        "TTL {ttl} differs from the TTL {} of the same {rtype} set at \"{owner}\" (RFC 2181 §5.2)",
                        first.ttl
                    ),
                );
                continue;
            }
            set.push(rec);
        }
    }

    // CNAME rules: alone at its name, one record, not at the apex.
    for (owner, types) in &rrsets {
        let Some(cnames) = types.get(&RecordType::CNAME) else {
            continue;
        };
        let field = first_field[&(owner.clone(), RecordType::CNAME)].clone();
        if *owner == apex {
            issues.push(
                format!("{field}.name"),
                "CNAME at the zone apex is not allowed (it would sit beside SOA and NS)",
            );
        }
        if cnames.len() > 1 {
            issues.push(
                format!("{field}.data"),
                "a name can hold only one CNAME record",
            );
        }
        if types.len() > 1 {
            let others: Vec<String> = types
                .keys()
                .filter(|t| **t != RecordType::CNAME)
                .map(ToString::to_string)
                .collect();
            issues.push(
                format!("{field}.type"),
                format!(
                    "CNAME beside other data: \"{owner}\" also has {} record(s)",
                    others.join("/")
                ),
            );
        }
    }

    // Delegations: NS below the apex makes a cut; only NS at the cut, only glue below it.
    let cuts: Vec<Name> = rrsets
        .iter()
        .filter(|(n, t)| **n != apex && t.contains_key(&RecordType::NS))
        .map(|(n, _)| n.clone())
        .collect();
    for (owner, types) in &rrsets {
        for cut in &cuts {
            if !cut.zone_of(owner) {
                continue;
            }
            if owner == cut {
                for t in types.keys().filter(|t| **t != RecordType::NS) {
                    let field = &first_field[&(owner.clone(), *t)];
                    issues.push(
                        format!("{field}.type"),
                        format!("{t} beside NS at the delegation point \"{cut}\""),
                    );
                }
            } else {
                for t in types
                    .keys()
                    .filter(|t| !matches!(t, RecordType::A | RecordType::AAAA))
                {
                    let field = &first_field[&(owner.clone(), *t)];
                    issues.push(
                        format!("{field}.name"),
                        format!(
                            "\"{owner}\" is below the delegation \"{cut}\": only glue A/AAAA records are allowed there"
                        ),
                    );
                }
            }
        }
    }

    // An RRset must fit in one DNS message (64 KiB, even over TCP).
    for (owner, types) in &rrsets {
        for (t, recs) in types {
            let size: usize = recs
                .iter()
                .map(|r| {
                    let rdata = match &r.data {
                        RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
                        RData::CAA(_) => 512,
                        _ => 256,
                    };
                    owner.len() + 10 + rdata
                })
                .sum();
            if size > 60_000 {
                let field = &first_field[&(owner.clone(), *t)];
                issues.push(
                    format!("{field}.data"),
                    format!(
                        "the {t} set at \"{owner}\" is about {size} bytes: an answer must fit in one 64 KiB DNS message"
                    ),
                );
            }
        }
    }
    // CNAME chains inside the zone must end.
    for (owner, types) in &rrsets {
        if !types.contains_key(&RecordType::CNAME) {
            continue;
        }
        let mut seen = vec![owner.clone()];
        let mut cur = owner.clone();
        while let Some(RData::CNAME(next)) = rrsets
            .get(&cur)
            .and_then(|t| t.get(&RecordType::CNAME))
            .and_then(|v| v.first())
            .map(|r| &r.data)
        {
            if seen.contains(&next.0) {
                let field = &first_field[&(owner.clone(), RecordType::CNAME)];
                issues.push(
                    format!("{field}.data"),
                    format!(
                        "CNAME loop: {}",
                        seen.iter()
                            .chain(std::iter::once(&next.0))
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                );
                break;
            }
            seen.push(next.0.clone());
            cur = next.0.clone();
        }
    }

    if issues.0.len() != before {
        return None;
    }
    Some(StaticZone {
        apex,
        soa: soa?,
        ns,
        rrsets,
        cuts,
    })
}

fn owner_name(s: &str, apex: &Name, field: &str, issues: &mut Issues) -> Option<Name> {
    let t = s.trim();
    if t.split('.').any(|l| l == "*") {
        issues.push(
            field,
            format!("\"{s}\": wildcard records are not supported; list each name explicitly"),
        );
        return None;
    }
    if t == "@" {
        return Some(apex.clone());
    }
    if t.ends_with('.') {
        return parse_name(t).map_err(|e| issues.push(field, e)).ok();
    }
    if t.is_empty() {
        issues.push(field, "empty owner name (use \"@\" for the zone apex)");
        return None;
    }
    let rel = match Name::from_ascii(t) {
        Ok(n) => n,
        Err(e) => {
            issues.push(
                field,
                format!("\"{}\" is not a valid domain name: {e}", excerpt(s)),
            );
            return None;
        }
    };
    if let Err(e) = check_labels(&rel, t) {
        issues.push(field, e);
        return None;
    }
    match rel.append_domain(apex) {
        Ok(n) => Some(n.to_lowercase()),
        Err(e) => {
            issues.push(
                field,
                format!(
                    "\"{}\" under \"{apex}\" is not a valid name: {e}",
                    excerpt(s)
                ),
            );
            None
        }
    }
}

fn parse_rdata(
    r: &RecordConfig,
    rf: &str,
    issues: &mut Issues,
) -> Option<(RecordType, Vec<RData>)> {
    let rtype = match r.rtype.trim().to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "CNAME" => RecordType::CNAME,
        "TXT" => RecordType::TXT,
        "MX" => RecordType::MX,
        "CAA" => RecordType::CAA,
        "NS" => RecordType::NS,
        "SOA" => {
            issues.push(
                format!("{rf}.type"),
                "the SOA record comes from the zone's [zones.soa] table",
            );
            return None;
        }
        other => {
            issues.push(
                format!("{rf}.type"),
                format!(
                    "unsupported record type \"{other}\" (supported: A, AAAA, CNAME, TXT, MX, CAA, NS)"
                ),
            );
            return None;
        }
    };
    if r.data.is_empty() {
        issues.push(format!("{rf}.data"), "at least one value is needed");
        return None;
    }
    let mut out = Vec::new();
    let before = issues.0.len();
    for (d, v) in r.data.iter().enumerate() {
        let df = format!("{rf}.data[{d}]");
        let v = v.as_str();
        let parsed: Result<RData, String> = match rtype {
            RecordType::A => v
                .trim()
                .parse::<Ipv4Addr>()
                .map(|ip| RData::A(A(ip)))
                .map_err(|_| format!("\"{v}\" is not a valid IPv4 address")),
            RecordType::AAAA => match v.trim().parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => Ok(RData::AAAA(AAAA(ip))),
                _ => Err(format!("\"{v}\" is not a valid IPv6 address")),
            },
            RecordType::CNAME => parse_name(v).map(|n| RData::CNAME(CNAME(n))),
            RecordType::NS => parse_name(v).map(|n| RData::NS(NS(n))),
            RecordType::MX => {
                let mut it = v.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(p), Some(host), None) => match p.parse::<u16>() {
                        Ok(p) => parse_name(host).map(|h| RData::MX(MX::new(p, h))),
                        Err(_) => Err(format!("MX preference \"{p}\" is not a number 0-65535")),
                    },
                    _ => Err(format!(
                        "\"{v}\" is not an MX value: expected \"PREFERENCE HOST\", e.g. \"10 mail.example.com\""
                    )),
                }
            }
            RecordType::TXT => {
                if v.len() > 4000 {
                    Err("TXT value longer than 4000 bytes".to_string())
                } else {
                    // Long texts are split into 255-byte character-strings (RFC 1035 §3.3.14).
                    let bytes = v.as_bytes();
                    let mut parts = Vec::new();
                    let mut start = 0;
                    while start < bytes.len() || parts.is_empty() {
                        let mut end = (start + 255).min(bytes.len());
                        while !v.is_char_boundary(end) {
                            end -= 1;
                        }
                        parts.push(v[start..end].to_string());
                        start = end;
                    }
                    Ok(RData::TXT(TXT::new(parts)))
                }
            }
            RecordType::CAA => RData::try_from_str(RecordType::CAA, v)
                .map_err(|e| {
                    format!("\"{v}\" is not a CAA value (FLAGS TAG \"VALUE\", e.g. 0 issue \"letsencrypt.org\"): {e}")
                }),
            _ => unreachable!(),
        };
        match parsed {
            Ok(rd) => out.push(rd),
            Err(e) => issues.push(df, e),
        }
    }
    (issues.0.len() == before).then_some((rtype, out))
}
