//! `/v1/purges`: accepting a purge (stored before it is acknowledged), its progress per CDN,
//! and the list of purges by state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::error::{ApiError, ApiResult, parse_body};
use crate::events::rfc3339_ms;
use crate::purge::model::{CdnState, PurgeRecord, PurgeRequest};
use crate::purge::provider::Item;
use crate::purge::{Priority, Purger, SubmitError};

/// A purge body may be larger than other writes (100,000 URLs): at least this.
const MAX_PURGE_BODY: usize = 64 << 20;

pub(super) fn router(max_body: usize) -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/purges", get(list).post(submit))
        .route("/v1/purges/{id}", get(one))
        .layer(DefaultBodyLimit::max(max_body.max(MAX_PURGE_BODY)))
}

pub(super) fn purger(api: &Api) -> Result<Arc<Purger>, ApiError> {
    api.purger.lock().clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "nothing can be purged: no target has [targets.purge], or the purge store could not \
             be opened (see the log)",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    everything: bool,
    #[serde(default)]
    soft: bool,
    priority: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    idempotency_key: Option<String>,
}

fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// A surrogate key or idempotency key: printable, no spaces, at most 1,024 bytes.
fn check_token(field: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "{field}: {s:?} must be 1 to 1024 printable characters without spaces"
        )));
    }
    Ok(())
}

fn check_host(field: &str, h: &str) -> Result<(), ApiError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{field}: {h:?} is not a host name")))
    }
}

fn request(body: PurgeBody, headers: &HeaderMap) -> Result<PurgeRequest, ApiError> {
    let mut items = Vec::new();
    for (i, u) in body.urls.iter().enumerate() {
        let ok = reqwest::Url::parse(u)
            .ok()
            .filter(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
        if ok.is_none() {
            return Err(bad(format!(
                "urls[{i}]: {u:?} is not an absolute http(s) URL"
            )));
        }
        items.push(Item::Url(u.clone()));
    }
    for (i, k) in body.keys.iter().enumerate() {
        check_token(&format!("keys[{i}]"), k)?;
        items.push(Item::Key(k.clone()));
    }
    for (i, p) in body.prefixes.iter().enumerate() {
        let bare = p
            .strip_prefix("https://")
            .or_else(|| p.strip_prefix("http://"))
            .unwrap_or(p);
        let host = bare.split('/').next().unwrap_or("");
        check_host(&format!("prefixes[{i}]"), host)?;
        if !bare.contains('/') {
            return Err(bad(format!(
                "prefixes[{i}]: {p:?} needs a path (`www.example.com/blog/`); use hosts for a whole host"
            )));
        }
        items.push(Item::Prefix(bare.to_string()));
    }
    for (i, h) in body.hosts.iter().enumerate() {
        check_host(&format!("hosts[{i}]"), h)?;
        items.push(Item::Host(h.to_ascii_lowercase()));
    }
    if body.everything {
        if !items.is_empty() {
            return Err(bad(
                "everything: purges all; give it alone, without urls, keys, prefixes or hosts"
                    .into(),
            ));
        }
        items.push(Item::Everything);
    }
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            bad(format!(
                "priority: must be \"critical\", \"high\", \"normal\" or \"low\" (got {p:?})"
            ))
        })?,
    };
    let header_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| bad("Idempotency-Key: not a printable header value".into()))?;
    let idempotency_key = match (body.idempotency_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            return Err(bad(
                "idempotency_key: differs from the Idempotency-Key header".into(),
            ));
        }
        (b, h) => b.or(h),
    };
    if let Some(k) = &idempotency_key {
        check_token("idempotency_key", k)?;
    }
    Ok(PurgeRequest {
        items,
        soft: body.soft,
        priority,
        targets: body.targets,
        idempotency_key,
    })
}

async fn submit(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let p = purger(&api)?;
    let body: PurgeBody = parse_body(&body)?;
    let req = request(body, &headers)?;
    let critical = req.priority == Priority::Critical;
    let (id, new) = p.submit(req).await.map_err(|e| match e {
        SubmitError::Invalid(m) => bad(m),
        SubmitError::Store(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })?;
    // Critical purges answer once every CDN has confirmed, or at their SLA with the status.
    let rec = if critical && new {
        let sla = p.settings().sla[Priority::Critical.index()];
        p.wait(id, sla + Duration::from_millis(250)).await
    } else {
        p.get(id)
    }
    .map_err(store_error)?
    .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "purge vanished"))?;
    let status = if rec.state() == CdnState::Confirmed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut v = view(&rec, false);
    v["duplicate"] = json!(!new);
    let location = HeaderValue::from_str(&format!("/v1/purges/{id}")).expect("digits");
    Ok((status, [(header::LOCATION, location)], Json(v)).into_response())
}

fn store_error(e: crate::purge::store::StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

#[derive(Deserialize)]
struct OneQuery {
    /// Include the items.
    #[serde(default)]
    items: bool,
}

async fn one(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(q): Query<OneQuery>,
) -> ApiResult {
    let p = purger(&api)?;
    let id: u64 = id
        .parse()
        .map_err(|_| bad(format!("id: {id:?} is not a purge id")))?;
    let rec = tokio::task::spawn_blocking(move || p.get(id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no purge {id}")))?;
    Ok(Json(view(&rec, q.items)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

async fn list(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> ApiResult {
    let p = purger(&api)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(bad(format!("limit: must be 1 to 1000 (got {limit})")));
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(CdnState::parse(s).ok_or_else(|| {
            let all: Vec<&str> = CdnState::ALL.iter().map(|s| s.as_str()).collect();
            bad(format!("state: {s:?} is not a state ({})", all.join(", ")))
        })?),
    };
    let before = q.before;
    let list = tokio::task::spawn_blocking(move || p.list(state, before, limit))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(store_error)?;
    let next_before = if list.len() == limit {
        list.last().map(|r| r.id)
    } else {
        None
    };
    let purges: Vec<Value> = list.iter().map(|r| view(r, false)).collect();
    Ok(Json(json!({ "purges": purges, "next_before": next_before })).into_response())
}

fn time(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |m| json!(rfc3339_ms(m)))
}

/// A purge as the API shows it.
fn view(r: &PurgeRecord, with_items: bool) -> Value {
    let mut counts = serde_json::Map::new();
    for i in &r.request.items {
        let k = match i {
            Item::Url(_) => "urls",
            Item::Key(_) => "keys",
            Item::Prefix(_) => "prefixes",
            Item::Host(_) => "hosts",
            Item::Everything => "everything",
        };
        let n = counts.get(k).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(k.into(), json!(n + 1));
    }
    let cdns: serde_json::Map<String, Value> = r
        .cdns
        .iter()
        .map(|(t, p)| {
            let took = p
                .finished_ms
                .filter(|_| p.state == CdnState::Confirmed)
                .map(|f| f.saturating_sub(r.accepted_ms) as f64 / 1000.0);
            (
                t.clone(),
                json!({
                    "state": p.state.as_str(),
                    "attempts": p.attempts,
                    "confirmed": p.done.count(),
                    "failed": p.failed.count(),
                    "open": p.open().count(),
                    "provider_ids": p.provider_ids,
                    "errors": p.errors,
                    "first_sent_at": time(p.first_sent_ms),
                    "finished_at": time(p.finished_ms),
                    "next_retry_at": time(p.next_retry_ms),
                    "seconds_to_confirm": took,
                    "verified": p.verification.as_ref().map(|v| v.verified),
                    "verification": p.verification,
                }),
            )
        })
        .collect();
    let mut v = json!({
        "id": r.id.to_string(),
        "state": r.state().as_str(),
        "priority": r.request.priority.as_str(),
        "soft": r.request.soft,
        "accepted_at": rfc3339_ms(r.accepted_ms),
        "idempotency_key": r.request.idempotency_key,
        "items": counts,
        "targets": r.request.targets,
        "cdns": cdns,
    });
    if with_items {
        v["item_list"] = serde_json::to_value(&r.request.items).unwrap_or(Value::Null);
    }
    v
}
