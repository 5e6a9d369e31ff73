//! Cloudflare: `POST {base_url}/zones/{zone_id}/purge_cache` with `Authorization: Bearer`,
//! one of `{"files": [...]}`, `{"tags": [...]}`, `{"prefixes": [...]}`, `{"hosts": [...]}` or
//! `{"purge_everything": true}`. Cloudflare accepts or refuses a request whole, so every item
//! of a request gets the same result; `success: true` is confirmation (its purge is instant).
//! Soft purges do not exist here: `soft` is ignored.

use serde_json::{Value, json};

use super::{Batch, Item, ItemResult, Kind, Results};
use crate::config::purge::{PurgeTarget, Secret};

/// Items in one request: 100 operations per request on every plan, per the purge limits
/// table of developers.cloudflare.com/cache/how-to/purge-cache/ (older API documentation said
/// 30 files, tags, hosts or prefixes; a target may lower `max_per_request` to that).
pub const MAX_PER_REQUEST: usize = 100;

pub async fn send(
    http: &reqwest::Client,
    c: &PurgeTarget,
    zone_id: &str,
    token: &Secret,
    batch: &Batch,
) -> Vec<ItemResult> {
    let mut out = Results::new(batch.items.len());
    for (kind, idx) in super::by_kind(batch) {
        for chunk in idx.chunks(MAX_PER_REQUEST) {
            let items: Vec<&Item> = chunk.iter().map(|&i| &batch.items[i]).collect();
            let r = purge(http, c, zone_id, token, kind, &items).await;
            out.set_all(chunk, &r);
        }
    }
    out.done()
}

/// The request body for items of one kind.
pub fn body(kind: Kind, items: &[&Item]) -> Value {
    let values = || -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Url(v) | Item::Key(v) | Item::Host(v) => Some(v.clone()),
                // Cloudflare's prefixes are host and path without a scheme.
                Item::Prefix(v) => Some(strip_scheme(v).to_string()),
                Item::Everything => None,
            })
            .collect()
    };
    match kind {
        Kind::Url => json!({ "files": values() }),
        Kind::Key => json!({ "tags": values() }),
        Kind::Prefix => json!({ "prefixes": values() }),
        Kind::Host => json!({ "hosts": values() }),
        Kind::Everything => json!({ "purge_everything": true }),
    }
}

fn strip_scheme(v: &str) -> &str {
    v.strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or(v)
}

async fn purge(
    http: &reqwest::Client,
    c: &PurgeTarget,
    zone_id: &str,
    token: &Secret,
    kind: Kind,
    items: &[&Item],
) -> ItemResult {
    let url = format!("{}/zones/{zone_id}/purge_cache", c.base_url);
    let sent = http
        .post(url)
        .timeout(c.timeout)
        .bearer_auth(token.expose())
        .json(&body(kind, items))
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => return ItemResult::Failed(super::transport_failure(e)),
    };
    let (status, headers, text) = super::read_answer(r).await;
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    let success = answer
        .as_ref()
        .and_then(|a| a.get("success"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if status.is_success() && success {
        let id = answer
            .as_ref()
            .and_then(|a| a.pointer("/result/id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return ItemResult::Confirmed { provider_id: id };
    }
    // The errors' messages say more than the whole body.
    let messages = answer.as_ref().map(error_messages).unwrap_or_default();
    let shown = if messages.is_empty() {
        if status.is_success() {
            "success is not true".to_string()
        } else {
            text
        }
    } else {
        messages
    };
    ItemResult::Failed(super::redact(
        super::http_failure(status, &headers, &shown),
        &[token],
    ))
}

/// `errors[].message` (with its code) joined by "; ".
fn error_messages(a: &Value) -> String {
    let Some(errors) = a.get("errors").and_then(Value::as_array) else {
        return String::new();
    };
    errors
        .iter()
        .map(|e| {
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            match e.get("code").and_then(Value::as_i64) {
                Some(code) => format!("{code}: {msg}"),
                None => msg.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_per_kind() {
        let u = Item::Url("https://a.example/x".into());
        assert_eq!(
            body(Kind::Url, &[&u]),
            json!({"files": ["https://a.example/x"]})
        );
        let p = Item::Prefix("https://a.example/blog/".into());
        assert_eq!(
            body(Kind::Prefix, &[&p]),
            json!({"prefixes": ["a.example/blog/"]})
        );
        let e = Item::Everything;
        assert_eq!(
            body(Kind::Everything, &[&e]),
            json!({"purge_everything": true})
        );
    }

    #[test]
    fn messages_with_codes() {
        let a = json!({"success": false, "errors": [{"code": 1134, "message": "too many"},
            {"message": "bad"}]});
        assert_eq!(error_messages(&a), "1134: too many; bad");
    }
}
