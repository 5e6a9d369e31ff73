//! The validated configuration: what validation makes of the file, with every name
//! parsed, every record built and every reference resolved; what the rest of steerd runs on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{Name, Record, RecordType};
use ipnet::IpNet;

use super::schema::{AllDownMode, CostModeConfig, PolicyKind};
use crate::events::{AlertAction, EventKind, Severity};
use crate::geo::CountryTable;
use crate::health::Level;

/// Which engine answers UDP queries (test and benchmark switch: see
/// [`ServerSettings::udp_engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpEngine {
    /// Per-core blocking workers answering from precomputed wire-format answers; every query the
    /// cache cannot answer goes through the hickory `RequestHandler`.
    #[default]
    Fast,
    /// hickory-server's own UDP loop (one task per query); kept for comparison.
    Hickory,
}

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
    pub rrl: Option<RrlSettings>,
    pub cookies: CookieSettings,
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
    pub check: Option<Arc<CheckSpec>>,
    /// Price, cap and commit; None = unmetered.
    pub cost: Option<CostModel>,
    /// "edge" or "origin".
    pub role: &'static str,
    /// How its cache is purged (`[targets.purge]`); None = steerd cannot purge it.
    pub purge: Option<crate::config::purge::PurgeTarget>,
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

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

pub use crate::geo::NetOverride;

/// Geography settings, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSettings {
    pub database: Option<PathBuf>,
    pub countries: PathBuf,
    pub nets_file: Option<PathBuf>,
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
    pub chain: ChainSettings,
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
    pub countries: Arc<CountryTable>,
    pub zones: Vec<StaticZone>,
    pub targets: Vec<Target>,
    pub services: Vec<Service>,
    pub probe: ProbeSettings,
    pub health: crate::health::machine::Thresholds,
    /// Bumped by every admin API write.
    pub version: u64,
    pub admin: AdminSettings,
    pub alerts: AlertSettings,
    pub overrides: Vec<OverrideSpec>,
    /// `[purge]`.
    pub purge: crate::config::purge::PurgeSettings,
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

/// Default largest admin request body.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Probing: `[probe]` and each target's `[targets.check]`

/// A check's timeout when none is set (or half the interval, when that is shorter).
pub(super) const DEFAULT_CHECK_TIMEOUT: f64 = 2.0;

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
            concurrency: 64,
            defaults: Timing::default(),
            resolvers: Vec::new(),
            cert_warning_days: 14,
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
            interval: Duration::from_secs_f64(10.0),
            timeout: Duration::from_secs_f64(DEFAULT_CHECK_TIMEOUT),
            jitter: 0.1,
            confirm: 3,
            confirm_gap: Duration::from_secs_f64(0.1),
            watch: true,
            heartbeat: Duration::from_secs_f64(1.0),
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

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

// ---------------------------------------------------------------------------------------------
// Alerts: `[alerts]` and its sinks

/// Default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Path Alertmanager v2 takes alerts on, appended to a sink's base URL.
pub const ALERTMANAGER_PATH: &str = "/api/v2/alerts";

pub(super) const DEFAULT_QUEUE: usize = 1000;
pub(super) const DEFAULT_MAX_AGE: f64 = 3600.0;
pub(super) const DEFAULT_RETRY_INITIAL: f64 = 0.5;
pub(super) const DEFAULT_RETRY_MAX: f64 = 60.0;
pub(super) const DEFAULT_SINK_TIMEOUT: f64 = 5.0;
pub(super) const DEFAULT_RESEND: f64 = 60.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkKind {
    Webhook,
    Slack,
    PagerDuty,
    Alertmanager,
}

impl SinkKind {
    pub const ALL: [SinkKind; 4] = [
        SinkKind::Webhook,
        SinkKind::Slack,
        SinkKind::PagerDuty,
        SinkKind::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::PagerDuty => "pagerduty",
            SinkKind::Alertmanager => "alertmanager",
        }
    }

    pub fn parse(s: &str) -> Option<SinkKind> {
        SinkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the sink takes informational events (override, config_changed): PagerDuty and
    /// Alertmanager only take alerts that open and close.
    pub fn takes_info(self) -> bool {
        matches!(self, SinkKind::Webhook | SinkKind::Slack)
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated sink.
#[derive(Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    /// The URL every request is POSTed to (Alertmanager: with `/api/v2/alerts`).
    pub url: String,
    /// PagerDuty integration key (None for the other kinds).
    pub routing_key: Option<String>,
    /// Extra headers, validated as HTTP header names and values.
    pub headers: Vec<(String, String)>,
    /// Kinds this sink gets, resolve kinds of every wanted trigger included.
    pub events: Vec<EventKind>,
    pub min_severity: Severity,
    pub timeout: Duration,
    /// Alertmanager: interval of the re-sends of firing alerts; firing alerts carry
    /// `endsAt` = now + 4 × this.
    pub resend: Duration,
}

impl SinkSpec {
    /// Whether this sink gets `kind` at `severity`.
    pub fn wants(&self, kind: EventKind, severity: Severity) -> bool {
        let action = kind.action();
        if action == AlertAction::Info && !self.kind.takes_info() {
            return false;
        }
        if !self.events.contains(&kind) {
            return false;
        }
        action == AlertAction::Resolve || severity >= self.min_severity
    }

    /// The URL without credentials, query or (for Slack, whose path is the secret) path.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url, self.kind == SinkKind::Slack)
    }
}

/// Secrets (routing key, header values, Slack webhook path) are not printed.
impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.redacted_url())
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<secret>"),
            )
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| format!("{k}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .field("min_severity", &self.min_severity)
            .field("timeout", &self.timeout)
            .field("resend", &self.resend)
            .finish()
    }
}

pub(crate) fn redact_url(url: &str, hide_path: bool) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(p) = u.port() {
                out.push_str(&format!(":{p}"));
            }
            if hide_path {
                out.push_str("/…");
            } else {
                out.push_str(u.path());
            }
            out
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Validated `[alerts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// This node's name in every payload.
    pub node: String,
    /// Events waiting per sink (besides the one being delivered) before the oldest is dropped.
    pub queue: usize,
    /// How long an undelivered event keeps being retried, from when it was queued.
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub sinks: Vec<SinkSpec>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            node: hostname(),
            queue: DEFAULT_QUEUE,
            max_age: Duration::from_secs_f64(DEFAULT_MAX_AGE),
            retry_initial: Duration::from_secs_f64(DEFAULT_RETRY_INITIAL),
            retry_max: Duration::from_secs_f64(DEFAULT_RETRY_MAX),
            sinks: Vec::new(),
        }
    }
}

/// The host name, or "steerd" when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !name.is_empty() {
            return name;
        }
    }
    "steerd".into()
}

/// Default traffic one DNS answer is estimated to send to a CDN: 2 MB (2 × 10⁶ bytes).
///
/// This is only an estimate: real traffic per answer depends on the content, the TTL and how
/// many clients sit behind each resolver. Operators should tune it per target from billing data
/// (billed bytes ÷ answers over a past month).
pub const DEFAULT_BYTES_PER_ANSWER: f64 = 2e6;

/// Prices, cap and commit of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// Flat price in USD per GB, used for regions without a price of their own.
    pub price_per_gb: f64,
    /// Region key (`"EU"`, `"EU/DE"`, `"default"`) → USD per GB. The most specific key wins:
    /// `"EU/DE"`, then `"EU"`, then the flat price. Keys compare ASCII-case-insensitively.
    pub region_prices: BTreeMap<String, f64>,
    /// Monthly spending cap in USD.
    pub monthly_cap: Option<f64>,
    /// Minimum monthly spend in USD already committed (paid for whether used or not).
    pub commit: Option<f64>,
    /// Estimated bytes one DNS answer sends to this target (see [`DEFAULT_BYTES_PER_ANSWER`]).
    pub bytes_per_answer: f64,
}

/// Per-service settings of the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSettings {
    pub select: usize,
    pub all_down: AllDownMode,
    pub has_fallback: bool,
    pub cost: CostModeConfig,
    pub prefer_commit: bool,
    pub stabilize_pct: f64,
    pub stabilize_ms: u32,
    pub proximity_weight: f64,
    pub cache_weight: f64,
}

impl Default for ChainSettings {
    fn default() -> Self {
        Self {
            select: 1,
            all_down: AllDownMode::Open,
            has_fallback: false,
            cost: CostModeConfig::Demote,
            prefer_commit: false,
            stabilize_pct: 10.0,
            stabilize_ms: 50,
            proximity_weight: 0.4,
            cache_weight: 0.6,
        }
    }
}

/// `[server.rrl]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RrlSettings {
    /// Per second, indexed by [`Class`]; 0 = that class is not limited.
    pub rates: [u32; 5],
    pub window: u32,
    pub slip: u8,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub exempt: Vec<IpNet>,
    pub log_only: bool,
    /// A power of two.
    pub table_size: usize,
}

/// `[server.cookies]`, validated.
#[derive(Clone, PartialEq)]
pub struct CookieSettings {
    pub enabled: bool,
    /// Secrets from the environment (the first signs); None: a random one drawn at start.
    pub secrets: Option<Vec<[u8; 16]>>,
}
