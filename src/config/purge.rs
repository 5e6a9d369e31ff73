//! The validated purge configuration: the server-wide `[purge]` settings (store, SLAs, batching
//! windows, retries) and a target's `[targets.purge]` (its provider, where its API is, its
//! credentials read from the environment, its rate limit). Defined here because the valid
//! configuration embeds them; `purge` re-exports them and owns their behaviour.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How urgent a purge is; each has an SLA and a batching window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Critical,
    High,
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Index into per-priority arrays (`[T; 4]`).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A credential read from the environment: never printed (its `Debug` is `<secret>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the request that needs it and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// `[purge]`: how purges are kept and delivered, for every target.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeSettings {
    /// The embedded store of accepted purges (`purge.store`, relative to the configuration's
    /// directory; default `steerd-purges.redb` beside the configuration).
    pub store: PathBuf,
    /// From acceptance to every CDN confirmed, per [`Priority`] (default 1, 10, 60, 300 s).
    pub sla: [Duration; 4],
    /// How long items of one priority wait to be batched with others (critical: 0, never
    /// batched; default 0, 0.2, 2 and 10 s).
    pub batch_window: [Duration; 4],
    /// First retry delay and its cap (default 0.5 s and 60 s); full jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// After this long unconfirmed a purge is failed on that CDN and an event raised
    /// (default 1 h).
    pub give_up: Duration,
    /// Most items one `POST /v1/purges` may carry (default 100,000).
    pub max_items: usize,
    /// Finished purges kept for `GET /v1/purges` (default 10,000; older ones are removed).
    pub keep_finished: usize,
    /// Most URLs the surrogate-key registry holds (`purge.registry_max_urls`, default
    /// 1,000,000): registering a URL beyond it is refused.
    pub registry_max_urls: usize,
    /// Canary objects, their versions and what is done with them (`[purge]` `verify`,
    /// `stale_grace`, `check_every`, `demote_stale`, `canary_timeout`, `[[purge.canaries]]`).
    pub freshness: Freshness,
}

/// How canary objects are watched: verification after a CDN confirms a purge, and versions
/// compared across the CDNs and the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// After a CDN confirms a purge, fetch the canaries it covers through that CDN (default
    /// false).
    pub verify: bool,
    /// How long a CDN may serve an older version than the origin's before it is stale
    /// (default 60 s).
    pub stale_grace: Duration,
    /// How often every canary is fetched from the origin and through every CDN (default 30 s).
    pub check_every: Duration,
    /// A stale CDN ranks behind fresh ones in the policy chain (default false).
    pub demote_stale: bool,
    /// One canary fetch's time limit (default 5 s).
    pub timeout: Duration,
    pub canaries: Vec<Canary>,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            verify: false,
            stale_grace: Duration::from_secs(60),
            check_every: Duration::from_secs(30),
            demote_stale: false,
            timeout: Duration::from_secs(5),
            canaries: Vec::new(),
        }
    }
}

/// Where a canary is fetched: scheme, the Host header and TLS name, the port, the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryUrl {
    pub https: bool,
    /// The host name (no port).
    pub host: String,
    pub port: u16,
    /// Host header: the host, plus the port when it is not the scheme's default.
    pub host_header: String,
    /// Path and query.
    pub path: String,
}

/// One `[[purge.canaries]]` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// The URL as written (how purges name it).
    pub url: String,
    pub at: CanaryUrl,
    /// The origin's copy: the canary's path on `origin` (its own host, port and scheme).
    pub origin: CanaryUrl,
    /// Connect to the origin here instead of resolving its host (`origin_address`).
    pub origin_address: Option<std::net::SocketAddr>,
    pub version: VersionSource,
    /// The targets it is fetched through (default: every target with `[targets.purge]`).
    pub targets: Vec<String>,
    /// Per target, the address to fetch it from (`via`; default: the target's check address,
    /// else its A/AAAA records or its CNAME resolved).
    pub via: Vec<(String, std::net::SocketAddr)>,
}

/// Where a response's version is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// `ETag`: equal or not (no order).
    ETag,
    /// `Last-Modified`: an HTTP date, later is newer.
    LastModified,
    /// `header:<name>`: numbers compare as numbers, anything else equal or not.
    Header(String),
}

impl VersionSource {
    /// The header the version is read from.
    pub fn header(&self) -> &str {
        match self {
            VersionSource::ETag => "etag",
            VersionSource::LastModified => "last-modified",
            VersionSource::Header(h) => h,
        }
    }

    /// As written in the configuration.
    pub fn label(&self) -> String {
        match self {
            VersionSource::ETag => "etag".into(),
            VersionSource::LastModified => "last-modified".into(),
            VersionSource::Header(h) => format!("header:{h}"),
        }
    }
}

impl Default for PurgeSettings {
    fn default() -> Self {
        PurgeSettings {
            store: PathBuf::from("steerd-purges.redb"),
            sla: [1.0, 10.0, 60.0, 300.0].map(Duration::from_secs_f64),
            batch_window: [0.0, 0.2, 2.0, 10.0].map(Duration::from_secs_f64),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            give_up: Duration::from_secs(3600),
            max_items: 100_000,
            keep_finished: 10_000,
            registry_max_urls: 1_000_000,
            freshness: Freshness::default(),
        }
    }
}

/// A token bucket: `per_second` tokens earned, at most `burst` kept. What a token is (a
/// request, an object) is the provider's (see `purge::provider`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// Akamai EdgeGrid credentials (`client_token_env`, `client_secret_env`, `access_token_env`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeGridCredentials {
    pub client_token: Secret,
    pub client_secret: Secret,
    pub access_token: Secret,
}

/// AWS credentials for CloudFront (`access_key_id_env`, `secret_access_key_env`, optional
/// `session_token_env`).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Akamai's network: `production` (default) or `staging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AkamaiNetwork {
    Production,
    Staging,
}

/// How a self-run edge is told to drop objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeMethod {
    /// `PURGE <path>` with `Host`: one object (Varnish, nginx `proxy_cache_purge`).
    Purge,
    /// `BAN` with the key header: every object tagged with the key (Varnish bans, xkey).
    Ban,
    /// No tags at the edge (`key_method = "urls"`): a key is expanded through the
    /// surrogate-key registry into its URLs, each sent as a `PURGE`.
    Urls,
}

/// The provider of `[targets.purge]` and what only it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    /// `provider = "cloudflare"`: `zone_id`, `token_env` (an API token with Cache Purge).
    Cloudflare { zone_id: String, token: Secret },
    /// `provider = "fastly"`: `service_id`, `token_env` (an API token with purge scope).
    Fastly { service_id: String, token: Secret },
    /// `provider = "akamai"`: EdgeGrid credentials, `network`, and optional `cp_codes` for
    /// `everything`.
    Akamai {
        network: AkamaiNetwork,
        credentials: EdgeGridCredentials,
        cp_codes: Vec<u64>,
    },
    /// `provider = "cloudfront"`: `distribution_id` and AWS credentials.
    Cloudfront {
        distribution_id: String,
        credentials: AwsCredentials,
    },
    /// `provider = "http"`: self-run edges (`edges = ["http://10.0.0.1:6081", ...]`, each
    /// told every purge), the `method` of key purges (`"ban"` default for keys), the
    /// `key_header` (default `xkey`) and an optional `token_env` sent as a bearer token.
    Http {
        edges: Vec<String>,
        key_method: EdgeMethod,
        key_header: String,
        token: Option<Secret>,
    },
}

impl ProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Cloudflare { .. } => "cloudflare",
            ProviderConfig::Fastly { .. } => "fastly",
            ProviderConfig::Akamai { .. } => "akamai",
            ProviderConfig::Cloudfront { .. } => "cloudfront",
            ProviderConfig::Http { .. } => "http",
        }
    }
}

/// `[targets.purge]`: how this target's cache is purged.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeTarget {
    pub provider: ProviderConfig,
    /// The API's base URL (default: the provider's public API; tests point it at stand-ins).
    /// Without a trailing slash. Unused by `http` (its edges are its URLs).
    pub base_url: String,
    /// The token bucket requests are sent under (default: the provider's documented limit).
    pub rate: RateLimit,
    /// Most items in one request (default, and maximum: the provider's documented limit).
    pub max_per_request: usize,
    /// One request's time limit (default 10 s).
    pub timeout: Duration,
    /// The host the purged URLs belong to, for `http` edges and for relative paths (default:
    /// the host of each URL).
    pub host: Option<String>,
    /// What the provider charges per billed item in a calendar month (UTC), as tiers, the last
    /// unbounded (`pricing`; default: the provider's public price, see
    /// `purge_defaults::pricing`).
    pub pricing: Vec<PriceTier>,
    /// Objects confirmed purged within 5 minutes that make this target's
    /// `recent_purge_ratio` 0.5 (`purge_ratio_half`, default 100; see `purge::recent`).
    pub purge_ratio_half: f64,
}

/// One tier of a purge price list: the month's billed items up to `up_to` (counted from the
/// month's first; None: no bound, the last tier) cost `per_item` dollars each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceTier {
    pub up_to: Option<u64>,
    pub per_item: f64,
}
