//! The purge APIs of the CDNs: one module per provider, each turning a [`Batch`] (items of one
//! kind, at most the target's `max_per_request`) into that provider's documented requests,
//! signing them, and reading the answer into one [`ItemResult`] per item. Nothing here waits,
//! batches, retries or remembers: the worker (`purge::worker`) does, from these results.

use std::time::Duration;

use crate::config::purge::{ProviderConfig, PurgeTarget};

pub mod akamai;
pub mod cloudflare;
pub mod cloudfront;
pub mod fastly;
pub mod http;

/// What one item of a purge names.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Item {
    /// A full URL (`https://www.example.com/a.css`).
    Url(String),
    /// A surrogate key / cache tag (`site:acme:blog`).
    Key(String),
    /// A URL prefix (`www.example.com/blog/`, Cloudflare's form: host and path, no scheme).
    Prefix(String),
    /// A host name: everything cached for it.
    Host(String),
    /// Everything this CDN holds for the target.
    Everything,
}

/// The kind of an [`Item`], which decides how it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Url,
    Key,
    Prefix,
    Host,
    Everything,
}

impl Item {
    pub fn kind(&self) -> Kind {
        match self {
            Item::Url(_) => Kind::Url,
            Item::Key(_) => Kind::Key,
            Item::Prefix(_) => Kind::Prefix,
            Item::Host(_) => Kind::Host,
            Item::Everything => Kind::Everything,
        }
    }
}

/// Items of one kind sent together, as far as the provider allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub items: Vec<Item>,
    /// Mark stale instead of removing, where the provider can (Fastly soft purge, Akamai
    /// invalidate rather than delete); ignored elsewhere.
    pub soft: bool,
}

/// Why an item was not purged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the provider said (status and its error message), never a credential.
    pub error: String,
    /// Worth sending again (429, 5xx, a timeout, a connection refused); a 4xx other than 429
    /// is not.
    pub retryable: bool,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

/// What became of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// The provider says it is purged (Cloudflare, Fastly, Akamai's 201, every edge's 2xx).
    Confirmed {
        provider_id: Option<String>,
    },
    /// Accepted, completing later: ask [`Provider::poll`] with this id (CloudFront's
    /// invalidation id).
    Pending {
        provider_id: String,
    },
    Failed(Failure),
}

/// What [`Provider::poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    Completed,
    InProgress,
    Failed(Failure),
}

/// A target's purge API, built from its `[targets.purge]`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub target: String,
    pub config: PurgeTarget,
}

impl Provider {
    pub fn new(target: &str, config: &PurgeTarget) -> Provider {
        Provider {
            target: target.to_string(),
            config: config.clone(),
        }
    }

    /// Whether this provider can purge items of `kind` itself. A key it cannot purge is
    /// expanded by the worker through the surrogate-key registry; any other kind fails.
    pub fn supports(&self, kind: Kind) -> bool {
        match &self.config.provider {
            ProviderConfig::Cloudflare { .. } => true,
            ProviderConfig::Fastly { .. } => {
                matches!(kind, Kind::Url | Kind::Key | Kind::Everything)
            }
            ProviderConfig::Akamai { cp_codes, .. } => match kind {
                Kind::Url | Kind::Key => true,
                Kind::Everything => !cp_codes.is_empty(),
                Kind::Prefix | Kind::Host => false,
            },
            ProviderConfig::Cloudfront { .. } => {
                matches!(kind, Kind::Url | Kind::Prefix | Kind::Everything)
            }
            ProviderConfig::Http { .. } => matches!(kind, Kind::Url | Kind::Key | Kind::Prefix),
        }
    }

    /// Items of `kind` one request may carry: the provider's documented limit, or the
    /// target's lower `max_per_request`. `Everything` is always alone.
    pub fn max_per_request(&self, kind: Kind) -> usize {
        let provider_max = match (&self.config.provider, kind) {
            (_, Kind::Everything) => 1,
            (ProviderConfig::Cloudflare { .. }, _) => cloudflare::MAX_PER_REQUEST,
            // Fastly purges one URL per request; keys go 256 at a time.
            (ProviderConfig::Fastly { .. }, Kind::Url) => 1,
            (ProviderConfig::Fastly { .. }, _) => fastly::MAX_KEYS_PER_REQUEST,
            (ProviderConfig::Akamai { .. }, _) => akamai::MAX_OBJECTS_PER_REQUEST,
            (ProviderConfig::Cloudfront { .. }, _) => cloudfront::MAX_PATHS_PER_REQUEST,
            (ProviderConfig::Http { .. }, _) => 1,
        };
        provider_max.min(self.config.max_per_request.max(1))
    }

    /// Tokens a batch costs under the target's rate limit (requests for most providers,
    /// objects for Akamai, whose limit counts objects).
    pub fn cost(&self, batch: &Batch) -> f64 {
        match &self.config.provider {
            ProviderConfig::Akamai { .. } => batch.items.len() as f64,
            _ => 1.0,
        }
    }

    /// Sends one batch (items of one kind, at most [`Provider::max_per_request`] of them):
    /// one result per item, in order.
    pub async fn send(&self, http: &reqwest::Client, batch: &Batch) -> Vec<ItemResult> {
        let c = &self.config;
        match &c.provider {
            ProviderConfig::Cloudflare { zone_id, token } => {
                cloudflare::send(http, c, zone_id, token, batch).await
            }
            ProviderConfig::Fastly { service_id, token } => {
                fastly::send(http, c, service_id, token, batch).await
            }
            ProviderConfig::Akamai {
                network,
                credentials,
                cp_codes,
            } => akamai::send(http, c, *network, credentials, cp_codes, batch).await,
            ProviderConfig::Cloudfront {
                distribution_id,
                credentials,
            } => cloudfront::send(http, c, distribution_id, credentials, batch).await,
            ProviderConfig::Http {
                edges,
                key_method,
                key_header,
                token,
            } => {
                http::send(
                    http,
                    c,
                    edges,
                    *key_method,
                    key_header,
                    token.as_ref(),
                    batch,
                )
                .await
            }
        }
    }

    /// Whether a [`ItemResult::Pending`] purge has completed (CloudFront's invalidation
    /// status); `Completed` for every other provider.
    pub async fn poll(&self, http: &reqwest::Client, provider_id: &str) -> PollResult {
        match &self.config.provider {
            ProviderConfig::Cloudfront {
                distribution_id,
                credentials,
            } => {
                cloudfront::poll(
                    http,
                    &self.config,
                    distribution_id,
                    credentials,
                    provider_id,
                )
                .await
            }
            _ => PollResult::Completed,
        }
    }
}

/// The same result for every item of a batch (one request answered for all of them).
pub fn all(batch: &Batch, r: ItemResult) -> Vec<ItemResult> {
    vec![r; batch.items.len()]
}

/// A failure from an HTTP answer: retryable for 408, 429 and 5xx, with its `Retry-After`
/// (seconds, or an HTTP date) when present. `body` is the provider's error text (trimmed to
/// a few hundred bytes by the caller).
pub fn http_failure(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Failure {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let code = status.as_u16();
    Failure {
        error: format!("HTTP {code}: {}", body.trim()),
        retryable: code == 408 || code == 429 || status.is_server_error(),
        retry_after,
    }
}

/// A failure of the request itself (connect, timeout): retryable. The error is printed
/// without its URL's query string.
pub fn transport_failure(e: reqwest::Error) -> Failure {
    Failure {
        error: format!("request failed: {}", e.without_url()),
        retryable: true,
        retry_after: None,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}
