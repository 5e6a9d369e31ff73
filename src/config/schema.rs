//! The TOML schema. Every struct rejects unknown keys; defaults live here and are documented in
//! `docs/config.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

mod purge;
pub use purge::*;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Configuration version, bumped by every admin API write (the API's ETag).
    pub version: u64,
    /// A configuration without zones answers every query REFUSED: it is refused unless this
    /// says that is meant (e.g. a node whose zones come later through the admin API).
    pub allow_no_zones: bool,
    pub server: ServerConfig,
    pub zones: Vec<ZoneConfig>,
    pub targets: Vec<TargetConfig>,
    pub services: Vec<ServiceConfig>,
    pub geo: GeoConfig,
    pub probe: ProbeConfig,
    pub health: HealthConfig,
    pub alerts: AlertsConfig,
    pub admin: AdminConfig,
    /// Operator overrides (written by the admin API; expired ones are ignored).
    pub overrides: Vec<OverrideConfig>,
    /// `[purge]`: the purge queue's settings (every key optional).
    pub purge: PurgeSectionConfig,
}

/// `[admin]`: the admin HTTP API's access control.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer tokens. Each is `{ token = "...", scope = "read" | "admin" }` or
    /// `{ token_env = "VAR", scope = ... }` (the token read from the environment).
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted, in bytes (default 1 MiB).
    pub max_body: Option<usize>,
    /// Where `POST /v1/reload` and API writes persist (default: the file the config was read
    /// from; none when serving the embedded demo).
    pub persist: Option<bool>,
    /// Open connections to the admin listener at most (default 64); when full, a new
    /// connection closes the least active one of the source with the most open (`conns`).
    pub max_connections: Option<usize>,
    /// Open connections from one source address (IPv6: one /64) at most (default 16).
    pub max_connections_per_source: Option<usize>,
    /// Seconds a client has to send a complete request head: the first within this long of
    /// connecting, later ones within this long of their first byte (default 5).
    pub header_timeout: Option<f64>,
    /// Seconds a keep-alive connection may wait for its next request (default 30).
    pub idle_timeout: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub scope: String,
    /// A label for logs ("ci", "oncall").
    pub name: Option<String>,
}

/// One operator override, as persisted.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    pub target: String,
    /// "forced_up", "forced_down" or "drained".
    pub state: String,
    /// Region key ("EU", "EU/DE", "default"): only clients of that region; absent = everyone.
    pub region: Option<String>,
    /// Expiry, Unix seconds (absent = until cleared).
    pub until: Option<u64>,
    #[serde(default)]
    pub reason: String,
    /// When it was set, Unix seconds.
    pub set_at: Option<u64>,
}

/// Health thresholds; every key optional, defaults = the seed policy.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Error rate (0..1) over 1 min above which a target goes down (with statistical
    /// confidence: the Wilson lower bound must exceed it). Default 0.05.
    pub error_rate: Option<f64>,
    /// ... and below which it counts as recovered. Default 0.01.
    pub error_rate_recover: Option<f64>,
    /// Checks needed in the window before the error-rate rule applies. Default 10.
    pub min_samples: Option<u64>,
    /// z of the Wilson bound. Default 3 (about 99.9 % one-sided: noise at 3–4 % stays up).
    pub confidence_z: Option<f64>,
    /// p95 latency (seconds) over 1 min above which a target goes down. Default 2.
    pub p95: Option<f64>,
    /// ... and below which it counts as recovered. Default 0.5.
    pub p95_recover: Option<f64>,
    /// Availability (0..1) over 5 min below which a target goes down. Default 0.99.
    pub availability: Option<f64>,
    /// ... and above which (over 1 min) it counts as recovered. Default 0.999.
    pub availability_recover: Option<f64>,
    /// Seconds the error-rate and p95 recovery conditions must hold. Default 300.
    pub recover_for: Option<f64>,
    /// Seconds the availability recovery condition must hold. Default 600.
    pub availability_recover_for: Option<f64>,
    /// Seconds between two transitions of a target (hard failures excepted). Default 30.
    pub min_dwell: Option<f64>,
    /// Seconds after a change during which answers depending on the target get the short
    /// `unstable_ttl`. Default 600.
    pub unstable_for: Option<f64>,
}

/// Declares a table with the per-check keys, which `[probe]` sets for every check and
/// `[targets.check]` for one: the table's own fields, then the per-check keys, then its fields
/// after `..`. One list, so that every per-check key has its `[probe]` default.
macro_rules! with_per_check_keys {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$a:meta])* pub $first:ident: $first_ty:ty,)*
            ..
            $($(#[$b:meta])* pub $last:ident: $last_ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$a])* pub $first: $first_ty,)*
            /// Seconds between two checks of a target (at least 1). Default 10.
            pub interval: Option<f64>,
            /// Seconds a whole check run may take (less than the interval). Default 2.
            pub timeout: Option<f64>,
            /// Random jitter, as a fraction of the interval (0 to 0.5). Default 0.1.
            pub jitter: Option<f64>,
            /// Re-checks run straight after a first failure to confirm it (0 = none). Default 3.
            pub confirm: Option<u32>,
            /// Seconds between two confirmation re-checks. Default 0.1.
            pub confirm_gap: Option<f64>,
            /// Keep each check's connection open until the next check and re-check at once when
            /// the target closes or resets it (a crashed edge is then seen in well under a
            /// second, not at the next interval). Default true.
            pub watch: Option<bool>,
            /// Seconds between two heartbeats on a kept connection (a HEAD of the check's path;
            /// an edge that stops answering is re-checked at once). 0 = none. Default 1.
            pub heartbeat: Option<f64>,
            /// Resolvers ("ip" or "ip:port") the dns level asks; empty = the system's
            /// (/etc/resolv.conf).
            pub resolvers: Option<Vec<String>>,
            /// A TLS certificate expiring in fewer days than this is reported as a warning.
            /// Default 14.
            pub cert_warning_days: Option<u32>,
            /// PEM file of extra trust anchors, added to the Mozilla roots.
            pub ca_file: Option<String>,
            $($(#[$b])* pub $last: $last_ty,)*
        }
    };
}

with_per_check_keys! {
    /// The prober's global settings; every per-check setting here is a default that a target's
    /// `[targets.check]` can override.
    #[derive(Debug, Clone, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct ProbeConfig {
        /// Name of this node as a vantage point (observations are tagged with it). Default
        /// "local".
        pub vantage: Option<String>,
        /// Checks in flight at once, all targets together. Default 64.
        pub concurrency: Option<u64>,
        ..
    }
}

with_per_check_keys! {
    /// Health check of one target: which levels run and how. Every key is optional; see
    /// docs/config.md for the defaults.
    #[derive(Debug, Clone, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct CheckConfig {
        /// Levels to run, among dns, tcp, tls, http, content, cache. Default: every level the
        /// other settings make possible.
        pub levels: Option<Vec<String>>,
        /// Host name the dns level resolves. Default: the target's `cname`.
        pub host: Option<String>,
        /// Connect here ("ip:port") instead of the address the dns level found (or the target's
        /// a/aaaa addresses).
        pub address: Option<String>,
        /// Port to connect to. Default: from `url` (443 for https, 80 for http).
        pub port: Option<u16>,
        /// URL requested through the target: its scheme decides TLS, its host is sent as SNI and
        /// Host header (the service's name, the way users reach the CDN).
        pub url: Option<String>,
        /// "GET" or "HEAD". Default "GET".
        pub method: Option<String>,
        /// Accepted status codes: numbers (200) or classes ("2xx"). Default ["2xx"].
        pub expect_status: Option<Vec<StatusSpec>>,
        /// Extra request headers.
        pub headers: Option<BTreeMap<String, String>>,
        /// TLS server name, when it differs from the URL's host.
        pub sni: Option<String>,
        ..
        pub content: Option<ContentCheckConfig>,
        pub cache: Option<CacheCheckConfig>,
    }
}

/// One accepted status: a number or a class such as "2xx".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(i64),
    Text(String),
}

/// Content integrity: exactly one of `sha256`, `contains`, `regex`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContentCheckConfig {
    /// Hex SHA-256 of the whole body.
    pub sha256: Option<String>,
    /// A substring the body must contain.
    pub contains: Option<String>,
    /// A regular expression the body must match.
    pub regex: Option<String>,
    /// Largest body read; a longer body fails the level. Default 1 MiB.
    pub max_bytes: Option<u64>,
}

/// Cache status of a canary object, read from the CDN's cache headers.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CacheCheckConfig {
    /// Path of the canary object, fetched on the same connection after the http level.
    /// Default: read the headers of the http level's response.
    pub path: Option<String>,
}

/// Geography: the GeoIP database, the country table and network overrides. Defaults: see
/// `Default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    /// MaxMind DB file (GeoIP2/GeoLite2 or the flat `country_code` schema); "" = no database.
    pub database: String,
    /// Country table: ISO code → continent and a representative point.
    pub countries: String,
    /// Optional TOML file holding more `[[nets]]` entries; watched and reloaded like the database.
    pub nets_file: Option<String>,
    /// Seconds between checks of the database and nets file for changes; 0 = never reload.
    pub reload_interval: u64,
    /// Network overrides: CIDR → country or continent; they win over the database, longest
    /// prefix first.
    pub nets: Vec<NetConfig>,
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            database: "geodb/geo-whois-asn-country.mmdb".to_string(),
            countries: "geodb/countries.csv".to_string(),
            nets_file: None,
            reload_interval: 2,
            nets: Vec::new(),
        }
    }
}

/// One network override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub cidr: String,
    /// ISO 3166-1 alpha-2 country code (implies the continent).
    pub country: Option<String>,
    /// Continent code (AF, AN, AS, EU, NA, OC, SA), when no country is given.
    pub continent: Option<String>,
}

/// The contents of a `nets_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetsFile {
    #[serde(default)]
    pub nets: Vec<NetConfig>,
}

/// `[server]`: listeners and DNS protocol settings. Defaults: see `Default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses the DNS server listens on (UDP and TCP on each).
    pub dns_listen: Vec<String>,
    /// Address of the admin HTTP API.
    pub admin_listen: Option<String>,
    /// UDP sockets per listen address (SO_REUSEPORT); 0 = one per available core.
    pub udp_sockets: usize,
    /// Largest UDP response we send, whatever the client advertises (and the size we advertise).
    pub max_udp_payload: u16,
    /// Seconds an idle TCP connection is kept open.
    pub tcp_idle_timeout: u64,
    /// Prefix lengths that define a "client" for stable weighted picks.
    pub hash_prefix_v4: u8,
    pub hash_prefix_v6: u8,
    /// Where this month's answer counts, billing reports and cache metrics are kept across
    /// restarts (see `crate::persist`): unset = `<config name>.state.json` beside the
    /// configuration file; `""` = not kept.
    pub state_file: Option<String>,
    /// Seconds a TCP client has to send a complete query: the first within this long of
    /// connecting, later ones within this long of their first byte (default 2).
    pub tcp_message_timeout: Option<f64>,
    /// Open TCP connections per DNS listen address at most (default 1024); when full, a new
    /// connection closes the least active one of the source with the most open (`conns`).
    pub tcp_max_connections: Option<usize>,
    /// Open TCP connections from one source address (IPv6: one /64) per listen address at most
    /// (default 32).
    pub tcp_max_connections_per_source: Option<usize>,
    /// File descriptors the listeners never take: kept for the prober, the alert sinks and
    /// files (default 1024). The connection caps are lowered at start to fit RLIMIT_NOFILE.
    pub fd_reserve: Option<usize>,
    /// Response rate limiting (off unless `responses_per_second` is set).
    pub rrl: RrlConfig,
    /// DNS cookies (RFC 7873, RFC 9018).
    pub cookies: CookiesConfig,
}

/// `[server.rrl]`: response rate limiting as BIND 9 does it: per client prefix and per
/// response (the query name, or the zone for NXDOMAIN and NODATA answers, or the delegation
/// for referrals, or one account for every error).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RrlConfig {
    /// Identical answers per second to one client prefix; 0 (the default) = RRL off.
    pub responses_per_second: Option<u32>,
    /// The same for NXDOMAIN answers (default: `responses_per_second`).
    pub nxdomains_per_second: Option<u32>,
    /// The same for NODATA answers (default: `responses_per_second`).
    pub nodata_per_second: Option<u32>,
    /// The same for referrals (default: `responses_per_second`).
    pub referrals_per_second: Option<u32>,
    /// Error answers (REFUSED, FORMERR, SERVFAIL…) per second (default: `responses_per_second`).
    pub errors_per_second: Option<u32>,
    /// Seconds of history: a client over its rate stays limited until its rate over this
    /// window falls below it (default 15).
    pub window: Option<u32>,
    /// Every `slip`-th limited answer is sent truncated (TC=1, or BADCOOKIE to a client that
    /// sent a cookie) instead of dropped; 0 = drop them all (default 2).
    pub slip: Option<u32>,
    /// Prefix lengths that group client addresses (defaults 24 and 56).
    pub ipv4_prefix_length: Option<u8>,
    pub ipv6_prefix_length: Option<u8>,
    /// Addresses and CIDRs never limited.
    pub exempt_clients: Vec<String>,
    /// Count what would be limited, but answer everything (default false).
    pub log_only: Option<bool>,
    /// Accounts kept (rounded up to a power of two; default 65536, 8 bytes each).
    pub table_size: Option<usize>,
}

/// `[server.cookies]`: DNS cookies (RFC 7873) with RFC 9018 interoperable server cookies.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CookiesConfig {
    /// Answer COOKIE options (default true).
    pub enabled: Option<bool>,
    /// Environment variable holding the server secret: 32 hex digits (a SipHash-2-4 key), or
    /// several separated by commas (the first signs, every one is accepted: for rotation).
    /// Default `STEERD_COOKIE_SECRET`; when that is unset, a random secret is drawn at start.
    pub secret_env: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            dns_listen: vec!["127.0.0.1:5353".to_string()],
            admin_listen: None,
            udp_sockets: 0,
            max_udp_payload: 1232,
            tcp_idle_timeout: 10,
            hash_prefix_v4: 24,
            hash_prefix_v6: 56,
            state_file: None,
            tcp_message_timeout: None,
            tcp_max_connections: None,
            tcp_max_connections_per_source: None,
            fd_reserve: None,
            rrl: RrlConfig::default(),
            cookies: CookiesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Zone apex, e.g. `example.com` (trailing dot optional).
    pub name: String,
    /// Authoritative name servers of the zone (apex NS set).
    pub ns: Vec<String>,
    /// TTL of the apex NS set.
    #[serde(default = "num::<86400>")]
    pub ns_ttl: u32,
    /// TTL of static records that do not set one.
    #[serde(default = "num::<3600>")]
    pub default_ttl: u32,
    pub soa: SoaConfig,
    #[serde(default)]
    pub records: Vec<RecordConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    pub mname: String,
    pub rname: String,
    #[serde(default = "num::<1>")]
    pub serial: u32,
    #[serde(default = "num::<7200>")]
    pub refresh: u32,
    #[serde(default = "num::<3600>")]
    pub retry: u32,
    #[serde(default = "num::<1_209_600>")]
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    #[serde(default = "num::<300>")]
    pub minimum: u32,
    #[serde(default = "num::<3600>")]
    pub ttl: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Owner name: `@` for the apex, a name relative to the zone (`www`), or an absolute name ending
    /// with a dot (`www.example.com.`).
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    /// One value or a list of values in presentation format.
    #[serde(deserialize_with = "one_or_many")]
    pub data: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// Answer as a CNAME to this host name.
    pub cname: Option<String>,
    /// Answer with these addresses.
    #[serde(default)]
    pub a: Vec<String>,
    #[serde(default)]
    pub aaaa: Vec<String>,
    /// Where the target serves from, for `policy = "proximity"` (degrees).
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Health check; a target without one is not probed.
    pub check: Option<CheckConfig>,
    /// "edge" (a CDN, the default) or "origin": labels metrics and alert rules.
    pub role: Option<String>,
    /// What the CDN costs: a target without one is never over a cap.
    pub cost: Option<CostConfig>,
    /// How its cache is purged; a target without one cannot be purged.
    pub purge: Option<PurgeConfig>,
}

/// A target's price, cap and commit (USD).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// USD per GB delivered.
    pub price_per_gb: f64,
    /// Region (`"EU"`, `"EU/DE"`) → USD per GB; the most specific wins.
    #[serde(default)]
    pub region_prices: BTreeMap<String, f64>,
    /// Monthly cap: above its projected month-end spend the target is demoted (or dropped).
    pub monthly_cap: Option<f64>,
    /// Monthly commit (minimum spend already paid for).
    pub commit: Option<f64>,
    /// Estimated bytes of CDN traffic one DNS answer leads to (default 2,000,000), used when
    /// the CDN's billing has not reported usage.
    pub bytes_per_answer: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Failover,
    Weighted,
    /// Region map (continent, continent/country, default) → targets; most specific wins.
    Geo,
    /// Targets ordered by great-circle distance from the client.
    Proximity,
    /// Lowest recent p95 latency first (per region when measurements carry one), with a
    /// stabilize band so near-equal targets do not swap back and forth.
    Latency,
    /// Highest `proximity_weight × proximity + cache_weight × cache_score` first.
    CacheAware,
}

/// What a service answers when every candidate is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AllDownMode {
    /// Answer with the least-bad candidates anyway (Route 53's behaviour).
    #[default]
    Open,
    /// SERVFAIL, or the `fallback` CNAME when one is set.
    Closed,
}

/// What the cost step does with a target whose projected monthly spend exceeds its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CostModeConfig {
    /// Move it after the others.
    #[default]
    Demote,
    /// Remove it (unless every candidate is over its cap).
    Drop,
    /// Ignore costs for this service.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Steered name, absolute (trailing dot optional); must be inside a configured zone.
    pub name: String,
    #[serde(default = "num::<30>")]
    pub ttl: u32,
    pub policy: PolicyKind,
    #[serde(default)]
    pub targets: Vec<ServiceTargetConfig>,
    /// For `policy = "geo"`: region → targets. Keys: a continent code (`"EU"`), a country within
    /// its continent (`"EU/DE"`) or `"default"`. Values: target names in failover order, or
    /// `{ target, weight }` tables for a weighted split within the region.
    #[serde(default)]
    pub geo: BTreeMap<String, Vec<RegionTarget>>,
    /// Client networks sent straight to a target list, whatever their location.
    #[serde(default)]
    pub nets: Vec<ServiceNetConfig>,
    /// Answer with the first N targets of the chain (N > 1 only for A/AAAA targets, whose
    /// addresses are merged). Default 1.
    pub select: Option<u32>,
    /// "open" (default): when every candidate is down, answer the least-bad one anyway.
    /// "closed": SERVFAIL, or `fallback`.
    pub all_down: Option<AllDownMode>,
    /// Last-resort CNAME answered when every candidate is down and `all_down = "closed"`.
    pub fallback: Option<String>,
    /// TTL while the answer depends on a target that is recovering or changed state recently
    /// (at most `ttl`). Default 5.
    pub unstable_ttl: Option<u32>,
    /// `policy = "latency"`: a challenger takes over only when it beats the incumbent by this
    /// many percent or `stabilize_ms`. Defaults 10 and 50.
    pub stabilize_pct: Option<f64>,
    pub stabilize_ms: Option<u32>,
    /// `policy = "cache_aware"`: score weights. Defaults 0.4 and 0.6.
    pub proximity_weight: Option<f64>,
    pub cache_weight: Option<f64>,
    /// Cost step: "demote" (default), "drop" or "off".
    pub cost: Option<CostModeConfig>,
    /// Move targets whose projected spend is below their commit to the front.
    pub prefer_commit: Option<bool>,
}

/// A target in a region list: a name, or a name with a weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RegionTarget {
    Name(String),
    Weighted(ServiceTargetConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetConfig {
    pub cidr: String,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTargetConfig {
    pub target: String,
    /// Only for `policy = "weighted"`; must be > 0.
    pub weight: Option<i64>,
}

/// `[alerts]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Name of this node in every payload (default: the host name).
    pub node: Option<String>,
    /// Events waiting per sink before the oldest is dropped (default 1000).
    pub queue: Option<usize>,
    /// Seconds an undelivered event keeps being retried before it is dropped (default 3600).
    pub max_age: Option<f64>,
    /// First retry delay, seconds (default 0.5); doubles after every failed attempt.
    pub retry_initial: Option<f64>,
    /// Longest retry delay, seconds (default 60).
    pub retry_max: Option<f64>,
    pub sinks: Vec<SinkConfig>,
}

/// `[[alerts.sinks]]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// "webhook", "slack", "pagerduty" or "alertmanager".
    pub kind: String,
    pub url: Option<String>,
    /// Read the URL from this environment variable instead (Slack webhook URLs are secrets).
    pub url_env: Option<String>,
    /// PagerDuty integration key.
    pub routing_key: Option<String>,
    pub routing_key_env: Option<String>,
    /// Extra HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// Event kinds this sink gets (default: every kind it can take).
    pub events: Option<Vec<String>>,
    /// Least severity of a trigger or informational event sent (default "info"). Resolves
    /// always pass.
    pub min_severity: Option<String>,
    /// Seconds one delivery attempt may take (default 5).
    pub timeout: Option<f64>,
    /// Alertmanager only: seconds between two re-sends of the firing alerts (default 60).
    pub resend: Option<f64>,
}

/// `#[serde(default = "num::<N>")]`: a number key's default, written at the key.
const fn num<const N: u32>() -> u32 {
    N
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected a string or a list of strings",
        )),
    }
}
