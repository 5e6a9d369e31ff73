//! `[purge]` and `[targets.purge]` as written. Every key is optional here: which are required,
//! and which belong to which provider, is validation's (`validate::purge`), so that a key of
//! another provider is reported with the provider it belongs to. Defaults in docs/config.md.

use serde::Deserialize;

/// `[purge]`: how purges are kept and delivered, for every target.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeSectionConfig {
    /// The store of accepted purges, relative to the configuration's directory (default
    /// `steerd-purges.redb`).
    pub store: Option<String>,
    /// Seconds unconfirmed after which a purge is failed on a CDN (default 3600).
    pub give_up: Option<f64>,
    /// First retry delay and its cap, seconds (defaults 0.5 and 60).
    pub retry_base: Option<f64>,
    pub retry_max: Option<f64>,
    /// Most items in one `POST /v1/purges` (default 100000).
    pub max_items: Option<usize>,
    /// Finished purges kept (default 10000).
    pub keep_finished: Option<usize>,
    /// Most URLs in the surrogate-key registry (default 1000000).
    pub registry_max_urls: Option<usize>,
    /// Seconds from acceptance to every CDN confirmed (defaults 1, 10, 60, 300).
    pub sla: PerPriority,
    /// Seconds items wait to be batched (defaults 0, 0.2, 2, 10; critical must be 0).
    pub batch_window: PerPriority,
    /// Fetch the canaries a confirmed purge covers through that CDN (default false).
    pub verify: Option<bool>,
    /// Seconds a CDN may serve an older canary version than the origin (default 60).
    pub stale_grace: Option<f64>,
    /// Seconds between canary version checks (default 30).
    pub check_every: Option<f64>,
    /// Rank a stale CDN behind fresh ones (default false).
    pub demote_stale: Option<bool>,
    /// Seconds one canary fetch may take (default 5).
    pub canary_timeout: Option<f64>,
    /// `[[purge.canaries]]`.
    pub canaries: Vec<CanaryConfig>,
}

/// `[[purge.canaries]]`: an object watched through every CDN and at the origin.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The object's URL (`https://www.example.com/app.css`).
    pub url: String,
    /// The origin's base URL (`https://origin.example.com`): the canary's path is fetched there.
    pub origin: Option<String>,
    /// Connect to the origin at this address (`10.0.0.5:443`) instead of resolving its host.
    pub origin_address: Option<String>,
    /// "etag" (default), "last-modified" or "header:<name>".
    pub version: Option<String>,
    /// Targets it is fetched through (default: every target with `[targets.purge]`).
    pub targets: Option<Vec<String>>,
    /// Per target, the address to fetch it from (`{ cdn-a = "203.0.113.7:443" }`).
    pub via: Option<std::collections::BTreeMap<String, String>>,
}

/// One number of seconds per priority, each optional.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PerPriority {
    pub critical: Option<f64>,
    pub high: Option<f64>,
    pub normal: Option<f64>,
    pub low: Option<f64>,
}

impl PerPriority {
    /// The values in `Priority::ALL` order.
    pub fn values(&self) -> [Option<f64>; 4] {
        [self.critical, self.high, self.normal, self.low]
    }
}

/// `[targets.purge]`: the keys of every provider in one table.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PurgeConfig {
    /// "cloudflare", "fastly", "akamai", "cloudfront" or "http".
    pub provider: String,
    /// The API's base URL (default: the provider's public API).
    pub base_url: Option<String>,
    /// Tokens per second and tokens kept (default: the provider's).
    pub rate: Option<f64>,
    pub burst: Option<f64>,
    /// Most items in one request (default and maximum: the provider's).
    pub max_per_request: Option<usize>,
    /// Seconds one request may take (default 10).
    pub timeout: Option<f64>,
    /// The host purged URLs belong to.
    pub host: Option<String>,
    /// cloudflare.
    pub zone_id: Option<String>,
    /// cloudflare, fastly, http (optional there).
    pub token_env: Option<String>,
    /// fastly.
    pub service_id: Option<String>,
    /// akamai.
    pub client_token_env: Option<String>,
    pub client_secret_env: Option<String>,
    pub access_token_env: Option<String>,
    /// akamai: "production" (default) or "staging".
    pub network: Option<String>,
    pub cp_codes: Option<Vec<u64>>,
    /// cloudfront.
    pub distribution_id: Option<String>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// http: the edges told every purge, at least one.
    pub edges: Option<Vec<String>>,
    /// http: "ban" (default), "purge" or "urls" (keys expanded through the registry).
    pub key_method: Option<String>,
    /// http: the header carrying the keys of a key purge (default "xkey").
    pub key_header: Option<String>,
    /// The price per billed item per month, in tiers (default: the provider's).
    pub pricing: Option<Vec<PriceTierConfig>>,
    /// Objects purged in 5 minutes that make `recent_purge_ratio` 0.5 (default 100).
    pub purge_ratio_half: Option<f64>,
}

/// One tier of `pricing`: `{ up_to = 1000, per_item = 0.0 }`; the last has no `up_to`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceTierConfig {
    /// The month's billed items this tier reaches to (inclusive, counted from the first).
    pub up_to: Option<i64>,
    /// Dollars per item in this tier.
    pub per_item: Option<f64>,
}
