//! The purge APIs of the CDNs: one module per provider, each turning a [`Batch`] (items of one
//! kind, at most the target's `max_per_request`) into that provider's documented requests,
//! signing them, and reading the answer into one [`ItemResult`] per item. Nothing here waits,
//! batches, retries or remembers: the worker (`purge::worker`) does, from these results.

use std::time::Duration;

use crate::config::purge::{ProviderConfig, PurgeTarget, Secret};

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
            ProviderConfig::Http { key_method, .. } => match kind {
                Kind::Key => *key_method != crate::config::purge::EdgeMethod::Urls,
                _ => matches!(kind, Kind::Url | Kind::Prefix),
            },
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
            // Prefixes become `path*` wildcards: CloudFront allows 15 of them in progress.
            (ProviderConfig::Cloudfront { .. }, Kind::Prefix) => {
                cloudfront::MAX_WILDCARDS_PER_REQUEST
            }
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
/// (seconds, or an HTTP date) when present. `body` is the provider's error text, trimmed here
/// to [`ERROR_BODY_MAX`] bytes.
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
    let body = trimmed(body);
    Failure {
        error: if body.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {body}")
        },
        retryable: code == 408 || code == 429 || status.is_server_error(),
        retry_after,
    }
}

/// A failure of the request itself (connect, timeout): retryable. The error is printed
/// without its URL (a URL purge's URL is the purged one, never a credential, but stays out of
/// the message all the same), with its causes, which say what went wrong.
pub fn transport_failure(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    let mut error = if e.is_timeout() {
        "request failed: timed out".to_string()
    } else {
        format!("request failed: {e}")
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !error.ends_with(&s_text) {
            error.push_str(": ");
            error.push_str(&s_text);
        }
        source = s.source();
    }
    Failure {
        error: trimmed(&error),
        retryable: true,
        retry_after: None,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date already past is
/// no delay.
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

/// The most of a provider's error body kept in a [`Failure`].
pub const ERROR_BODY_MAX: usize = 300;

/// `s` without surrounding space, cut to [`ERROR_BODY_MAX`] bytes on a character boundary.
fn trimmed(s: &str) -> String {
    let s = s.trim();
    if s.len() <= ERROR_BODY_MAX {
        return s.to_string();
    }
    let mut end = ERROR_BODY_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `f` with every credential in `secrets` replaced (a provider that echoes what it was sent
/// must not put a token into a log).
fn redact(mut f: Failure, secrets: &[&Secret]) -> Failure {
    for s in secrets {
        let v = s.expose();
        if !v.is_empty() && f.error.contains(v) {
            f.error = f.error.replace(v, "<secret>");
        }
    }
    f
}

/// A failure that is no provider's answer: not retryable.
fn refused(error: impl Into<String>) -> Failure {
    Failure {
        error: error.into(),
        retryable: false,
        retry_after: None,
    }
}

/// The result for an item of a kind the provider cannot purge.
fn unsupported(provider: &str, kind: Kind) -> ItemResult {
    ItemResult::Failed(refused(format!("{provider} cannot purge {kind:?} items")))
}

/// An answer's status, headers and body (the body as text; unreadable → empty).
async fn read_answer(
    r: reqwest::Response,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    (status, headers, body)
}

/// The positions of the batch's items, grouped by kind in order of first appearance (a batch
/// should hold one kind; one that does not is sent one request per kind).
fn by_kind(batch: &Batch) -> Vec<(Kind, Vec<usize>)> {
    let mut groups: Vec<(Kind, Vec<usize>)> = Vec::new();
    for (i, item) in batch.items.iter().enumerate() {
        match groups.iter_mut().find(|(k, _)| *k == item.kind()) {
            Some((_, v)) => v.push(i),
            None => groups.push((item.kind(), vec![i])),
        }
    }
    groups
}

/// Results collected out of order into their items' places; an unfilled place (a bug) fails.
struct Results(Vec<Option<ItemResult>>);

impl Results {
    fn new(n: usize) -> Results {
        Results(vec![None; n])
    }

    fn set(&mut self, i: usize, r: ItemResult) {
        self.0[i] = Some(r);
    }

    fn set_all(&mut self, idx: &[usize], r: &ItemResult) {
        for &i in idx {
            self.0[i] = Some(r.clone());
        }
    }

    fn done(self) -> Vec<ItemResult> {
        self.0
            .into_iter()
            .map(|r| r.unwrap_or_else(|| ItemResult::Failed(refused("no result"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn http_failure_trims_and_classifies() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        let f = http_failure(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, &"é".repeat(400));
        assert!(f.retryable);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert!(f.error.len() < ERROR_BODY_MAX + 20, "{}", f.error.len());
        let f = http_failure(reqwest::StatusCode::FORBIDDEN, &Default::default(), " no ");
        assert_eq!(f.error, "HTTP 403: no");
        assert!(!f.retryable);
        assert!(http_failure(reqwest::StatusCode::BAD_GATEWAY, &h, "").retryable);
    }

    #[test]
    fn redact_hides_credentials() {
        let s = Secret::new("tok-123");
        let f = redact(refused("HTTP 401: bad key tok-123"), &[&s]);
        assert_eq!(f.error, "HTTP 401: bad key <secret>");
    }
}
