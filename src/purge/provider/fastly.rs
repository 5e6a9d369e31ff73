//! Fastly, with `Fastly-Key` and, for soft purges, `Fastly-Soft-Purge: 1`:
//! - a URL: `POST {base_url}/purge/{url without its scheme}` → `{"status": "ok", "id": ...}`;
//! - keys: `POST {base_url}/service/{service_id}/purge` with `{"surrogate_keys": [...]}` →
//!   a map from each key to its purge id (a key missing from it failed);
//! - everything: `POST {base_url}/service/{service_id}/purge_all` (never soft: Fastly has no
//!   soft purge-all).
//!
//! Prefixes and hosts are not Fastly's (the worker expands keys it cannot send elsewhere).

use serde_json::{Value, json};

use super::{Batch, Item, ItemResult, Kind, Results};
use crate::config::purge::{PurgeTarget, Secret};

/// Surrogate keys in one batch purge (Fastly's API reference: "Up to 256 surrogate keys can
/// be purged in one batch request").
pub const MAX_KEYS_PER_REQUEST: usize = 256;

pub async fn send(
    http: &reqwest::Client,
    c: &PurgeTarget,
    service_id: &str,
    token: &Secret,
    batch: &Batch,
) -> Vec<ItemResult> {
    let mut out = Results::new(batch.items.len());
    for (kind, idx) in super::by_kind(batch) {
        match kind {
            Kind::Url => {
                for &i in &idx {
                    let Item::Url(u) = &batch.items[i] else {
                        continue;
                    };
                    out.set(i, purge_url(http, c, token, u, batch.soft).await);
                }
            }
            Kind::Key => {
                for chunk in idx.chunks(MAX_KEYS_PER_REQUEST) {
                    let keys: Vec<&str> = chunk
                        .iter()
                        .filter_map(|&i| match &batch.items[i] {
                            Item::Key(k) => Some(k.as_str()),
                            _ => None,
                        })
                        .collect();
                    let rs = purge_keys(http, c, service_id, token, &keys, batch.soft).await;
                    for (&i, r) in chunk.iter().zip(rs) {
                        out.set(i, r);
                    }
                }
            }
            Kind::Everything => {
                let r = purge_all(http, c, service_id, token).await;
                out.set_all(&idx, &r);
            }
            Kind::Prefix | Kind::Host => out.set_all(&idx, &super::unsupported("fastly", kind)),
        }
    }
    out.done()
}

/// The API path of a URL purge: the URL without its scheme (`www.example.com/a.css`).
pub fn url_path(url: &str) -> &str {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
        .trim_start_matches('/')
}

fn request(
    http: &reqwest::Client,
    c: &PurgeTarget,
    token: &Secret,
    url: String,
    soft: bool,
) -> reqwest::RequestBuilder {
    let mut b = http
        .post(url)
        .timeout(c.timeout)
        .header("Fastly-Key", token.expose())
        .header(reqwest::header::ACCEPT, "application/json");
    if soft {
        b = b.header("Fastly-Soft-Purge", "1");
    }
    b
}

/// Sends `b`; a 2xx answer's JSON, or the item's failure.
async fn answer(b: reqwest::RequestBuilder, token: &Secret) -> Result<Value, ItemResult> {
    let r = b
        .send()
        .await
        .map_err(|e| ItemResult::Failed(super::transport_failure(e)))?;
    let (status, headers, text) = super::read_answer(r).await;
    if !status.is_success() {
        // Fastly's errors are `{"msg": ..., "detail": ...}`.
        let shown = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let msg = v.get("msg")?.as_str()?.to_string();
                Some(match v.get("detail").and_then(Value::as_str) {
                    Some(d) => format!("{msg}: {d}"),
                    None => msg,
                })
            })
            .unwrap_or(text);
        return Err(ItemResult::Failed(super::redact(
            super::http_failure(status, &headers, &shown),
            &[token],
        )));
    }
    serde_json::from_str(&text).map_err(|_| {
        ItemResult::Failed(super::Failure {
            error: format!("HTTP {}: an answer that is not JSON", status.as_u16()),
            retryable: true,
            retry_after: None,
        })
    })
}

async fn purge_url(
    http: &reqwest::Client,
    c: &PurgeTarget,
    token: &Secret,
    url: &str,
    soft: bool,
) -> ItemResult {
    let api = format!("{}/purge/{}", c.base_url, url_path(url));
    match answer(request(http, c, token, api, soft), token).await {
        Ok(v) if v.get("status").and_then(Value::as_str) == Some("ok") => ItemResult::Confirmed {
            provider_id: v.get("id").and_then(Value::as_str).map(str::to_string),
        },
        Ok(v) => ItemResult::Failed(super::refused(format!(
            "status is not ok: {}",
            super::trimmed(&v.to_string())
        ))),
        Err(r) => r,
    }
}

async fn purge_keys(
    http: &reqwest::Client,
    c: &PurgeTarget,
    service_id: &str,
    token: &Secret,
    keys: &[&str],
    soft: bool,
) -> Vec<ItemResult> {
    let api = format!("{}/service/{service_id}/purge", c.base_url);
    let b = request(http, c, token, api, soft).json(&json!({ "surrogate_keys": keys }));
    match answer(b, token).await {
        Ok(v) => keys
            .iter()
            .map(|k| match v.get(*k).and_then(Value::as_str) {
                Some(id) => ItemResult::Confirmed {
                    provider_id: Some(id.to_string()),
                },
                // Not purged, for a reason Fastly did not say: worth another try.
                None => ItemResult::Failed(super::Failure {
                    error: format!("key {k:?} missing from Fastly's answer"),
                    retryable: true,
                    retry_after: None,
                }),
            })
            .collect(),
        Err(r) => vec![r; keys.len()],
    }
}

async fn purge_all(
    http: &reqwest::Client,
    c: &PurgeTarget,
    service_id: &str,
    token: &Secret,
) -> ItemResult {
    let api = format!("{}/service/{service_id}/purge_all", c.base_url);
    match answer(request(http, c, token, api, false), token).await {
        Ok(v) if v.get("status").and_then(Value::as_str) == Some("ok") => {
            ItemResult::Confirmed { provider_id: None }
        }
        Ok(v) => ItemResult::Failed(super::refused(format!(
            "status is not ok: {}",
            super::trimmed(&v.to_string())
        ))),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_lose_the_scheme() {
        assert_eq!(
            url_path("https://www.example.com/a.css"),
            "www.example.com/a.css"
        );
        assert_eq!(url_path("http://h/x?y=1"), "h/x?y=1");
        assert_eq!(url_path("h/x"), "h/x");
    }
}
