//! Akamai Fast Purge v3: `POST {base_url}/ccu/v3/{invalidate|delete}/{url|tag|cpcode}/{network}`
//! with `{"objects": [...]}`, signed with EdgeGrid (`EG1-HMAC-SHA256`). A soft purge
//! invalidates (marks stale), any other deletes. `everything` purges the target's `cp_codes`.
//! Akamai answers 201 with a `purgeId` once the purge is accepted; it completes in seconds
//! (`estimatedSeconds`), so the answer is taken as confirmation.
//!
//! A request body may not exceed 50,000 bytes (Fast Purge API, error 413): items are split
//! into as many requests as that needs, still one result per item, in order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Batch, Item, ItemResult, Kind, Results};
use crate::config::purge::{AkamaiNetwork, EdgeGridCredentials, PurgeTarget};

/// Objects in one request. Akamai documents no count, only the 50,000-byte body; this keeps
/// a request (and one failure) to a reasonable share of the 10,000-URL object bucket.
pub const MAX_OBJECTS_PER_REQUEST: usize = 500;

/// The largest request body Fast Purge accepts.
pub const MAX_BODY_BYTES: usize = 50_000;

/// Bytes of a POST body EdgeGrid hashes (its default `max_body`, 128 KiB).
const MAX_SIGNED_BODY: usize = 131_072;

pub async fn send(
    http: &reqwest::Client,
    c: &PurgeTarget,
    network: AkamaiNetwork,
    creds: &EdgeGridCredentials,
    cp_codes: &[u64],
    batch: &Batch,
) -> Vec<ItemResult> {
    let mut out = Results::new(batch.items.len());
    let action = if batch.soft { "invalidate" } else { "delete" };
    let network = match network {
        AkamaiNetwork::Production => "production",
        AkamaiNetwork::Staging => "staging",
    };
    for (kind, idx) in super::by_kind(batch) {
        let kind_path = match kind {
            Kind::Url => "url",
            Kind::Key => "tag",
            Kind::Everything if !cp_codes.is_empty() => "cpcode",
            _ => {
                out.set_all(&idx, &super::unsupported("akamai", kind));
                continue;
            }
        };
        let path = format!("/ccu/v3/{action}/{kind_path}/{network}");
        if kind == Kind::Everything {
            let objects: Vec<Value> = cp_codes.iter().map(|&c| Value::from(c)).collect();
            let r = purge(http, c, creds, &path, &objects).await;
            out.set_all(&idx, &r);
            continue;
        }
        let objects: Vec<(usize, Value)> = idx
            .iter()
            .filter_map(|&i| match &batch.items[i] {
                Item::Url(v) | Item::Key(v) => Some((i, Value::from(v.as_str()))),
                _ => None,
            })
            .collect();
        for chunk in split(&objects, MAX_OBJECTS_PER_REQUEST, MAX_BODY_BYTES) {
            let positions: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            if chunk.len() == 1 && body_len(chunk.iter().map(|(_, v)| v)) > MAX_BODY_BYTES {
                let r = ItemResult::Failed(super::refused(format!(
                    "an object longer than Fast Purge's {MAX_BODY_BYTES}-byte body"
                )));
                out.set_all(&positions, &r);
                continue;
            }
            let values: Vec<Value> = chunk.iter().map(|(_, v)| v.clone()).collect();
            let r = purge(http, c, creds, &path, &values).await;
            out.set_all(&positions, &r);
        }
    }
    out.done()
}

/// Bytes of `{"objects":[a,b,...]}` for these objects.
fn body_len<'a>(objects: impl Iterator<Item = &'a Value>) -> usize {
    let mut n = r#"{"objects":[]}"#.len();
    for (k, v) in objects.enumerate() {
        n += v.to_string().len() + usize::from(k > 0);
    }
    n
}

/// `objects` in order, in runs of at most `max_count` whose body stays within `max_bytes` (an
/// object too long alone is a run of its own).
fn split<T>(objects: &[(T, Value)], max_count: usize, max_bytes: usize) -> Vec<&[(T, Value)]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = body_len(std::iter::empty());
    for (k, (_, v)) in objects.iter().enumerate() {
        let add = v.to_string().len() + usize::from(k > start);
        if k > start && (k - start == max_count || bytes + add > max_bytes) {
            runs.push(&objects[start..k]);
            start = k;
            bytes = body_len(std::iter::empty()) + v.to_string().len();
        } else {
            bytes += add;
        }
    }
    if start < objects.len() {
        runs.push(&objects[start..]);
    }
    runs
}

async fn purge(
    http: &reqwest::Client,
    c: &PurgeTarget,
    creds: &EdgeGridCredentials,
    path: &str,
    objects: &[Value],
) -> ItemResult {
    let body = serde_json::json!({ "objects": objects }).to_string();
    let url = match reqwest::Url::parse(&format!("{}{path}", c.base_url)) {
        Ok(u) => u,
        Err(e) => return ItemResult::Failed(super::refused(format!("base_url: {e}"))),
    };
    let auth = authorization(
        creds,
        "POST",
        &url,
        body.as_bytes(),
        &timestamp(time::OffsetDateTime::now_utc()),
        &nonce(),
    );
    let sent = http
        .post(url)
        .timeout(c.timeout)
        .header(reqwest::header::AUTHORIZATION, auth)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => return ItemResult::Failed(super::transport_failure(e)),
    };
    let (status, headers, text) = super::read_answer(r).await;
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        let id = answer
            .as_ref()
            .and_then(|a| a.get("purgeId"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return ItemResult::Confirmed { provider_id: id };
    }
    // Errors are problem+json: `title` and `detail` say what happened.
    let shown = answer
        .as_ref()
        .and_then(|a| {
            let title = a.get("title").and_then(Value::as_str);
            let detail = a.get("detail").and_then(Value::as_str);
            match (title, detail) {
                (Some(t), Some(d)) => Some(format!("{t}: {d}")),
                (Some(t), None) => Some(t.to_string()),
                (None, Some(d)) => Some(d.to_string()),
                (None, None) => None,
            }
        })
        .unwrap_or(text);
    ItemResult::Failed(super::redact(
        super::http_failure(status, &headers, &shown),
        &[
            &creds.client_token,
            &creds.client_secret,
            &creds.access_token,
        ],
    ))
}

/// An EdgeGrid timestamp: `yyyyMMddTHH:mm:ss+0000`, in UTC.
pub fn timestamp(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour]:[minute]:[second]+0000");
    now.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .expect("a UTC time in years 0-9999 formats")
}

/// A fresh nonce in UUID v4 form.
fn nonce() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    B64.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header of an EdgeGrid request with no signed headers:
/// signing key = base64(HMAC-SHA256(client_secret, timestamp)); data = method, scheme, host
/// (with its port when the URL has one), path and query, the (empty) canonical headers, the
/// body's base64 SHA-256 (POST with a body only), and the header so far, tab-separated;
/// signature = base64(HMAC-SHA256(signing key, data)).
pub fn authorization(
    creds: &EdgeGridCredentials,
    method: &str,
    url: &reqwest::Url,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> String {
    let head = format!(
        "EG1-HMAC-SHA256 client_token={};access_token={};timestamp={timestamp};nonce={nonce};",
        creds.client_token.expose(),
        creds.access_token.expose()
    );
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let content_hash = if method.eq_ignore_ascii_case("POST") && !body.is_empty() {
        B64.encode(Sha256::digest(&body[..body.len().min(MAX_SIGNED_BODY)]))
    } else {
        String::new()
    };
    let data = [
        &method.to_ascii_uppercase(),
        url.scheme(),
        &host,
        &path,
        "",
        &content_hash,
        &head,
    ]
    .join("\t");
    let key = hmac_b64(
        creds.client_secret.expose().as_bytes(),
        timestamp.as_bytes(),
    );
    let signature = hmac_b64(key.as_bytes(), data.as_bytes());
    format!("{head}signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::purge::Secret;

    /// The credentials of Akamai's EdgeGrid test suite (`testdata.json` of the edgegrid
    /// libraries): its expected signatures match `python3 -c` with `hmac`/`hashlib`/`base64`
    /// computing the steps of [`authorization`]'s comment.
    fn suite() -> EdgeGridCredentials {
        EdgeGridCredentials {
            client_token: Secret::new("akab-client-token-xxx-xxxxxxxxxxxxxxxx"),
            client_secret: Secret::new("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx="),
            access_token: Secret::new("akab-access-token-xxx-xxxxxxxxxxxxxxxx"),
        }
    }

    const TS: &str = "20140321T19:34:21+0000";
    const NONCE: &str = "nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    const BASE: &str = "https://akaa-baseurl-xxxxxxxxxxx-xxxxxxxxxxxxx.luna.akamaiapis.net";

    fn sig(method: &str, path: &str, body: &[u8]) -> String {
        let url = reqwest::Url::parse(&format!("{BASE}{path}")).unwrap();
        let h = authorization(&suite(), method, &url, body, TS, NONCE);
        let prefix = format!(
            "EG1-HMAC-SHA256 client_token=akab-client-token-xxx-xxxxxxxxxxxxxxxx;\
             access_token=akab-access-token-xxx-xxxxxxxxxxxxxxxx;timestamp={TS};nonce={NONCE};\
             signature="
        );
        h.strip_prefix(&prefix).expect("header layout").to_string()
    }

    #[test]
    fn edgegrid_test_suite_vectors() {
        assert_eq!(
            sig("GET", "/", b""),
            "tL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU="
        );
        assert_eq!(
            sig("GET", "/testapi/v1/t1?p1=1&p2=2", b""),
            "hKDH1UlnQySSHjvIcZpDMbQHihTQ0XyVAKZaApabdeA="
        );
        assert_eq!(
            sig(
                "POST",
                "/testapi/v1/t3",
                b"datadatadatadatadatadatadatadata"
            ),
            "hXm4iCxtpN22m4cbZb4lVLW5rhX8Ca82vCFqXzSTPe4="
        );
        assert_eq!(
            sig("POST", "/testapi/v1/t6", b""),
            "1gEDxeQGD5GovIkJJGcBaKnZ+VaPtrc4qBUHixjsPCQ="
        );
    }

    #[test]
    fn timestamps_and_nonces() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_395_430_461).unwrap();
        assert_eq!(timestamp(t), TS);
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn split_keeps_bodies_under_the_limit() {
        let objects: Vec<(usize, Value)> =
            (0..10).map(|i| (i, Value::from("x".repeat(20)))).collect();
        let runs = split(&objects, 4, 100);
        let lens: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 10);
        for r in &runs {
            assert!(r.len() <= 4);
            assert!(body_len(r.iter().map(|(_, v)| v)) <= 100, "{lens:?}");
        }
        assert_eq!(lens, vec![3, 3, 3, 1]);
        assert_eq!(
            body_len([Value::from("a"), Value::from("b")].iter()),
            r#"{"objects":["a","b"]}"#.len()
        );
    }
}
