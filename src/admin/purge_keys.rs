//! `/v1/purges/keys`: the surrogate-key registry (`purge::registry`), which tells the CDNs
//! that cannot purge by key (CloudFront, `http` edges with `key_method = "urls"`) the URLs a
//! key stands for, and the others the keys below a hierarchical key. `PUT` replaces a key's
//! URLs, `POST` adds to them, `GET` shows them (and its descendants' with
//! `?descendants=true`), `DELETE` removes the key; `GET /v1/purges/keys?prefix=` lists keys.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::error::{ApiError, ApiResult, parse_body};
use crate::clock::wall_ms;
use crate::purge::registry::{Registry, RegistryError, key_problem};

/// Most URLs one request may name.
const MAX_URLS_PER_REQUEST: usize = 10_000;

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/purges/keys", get(list_purge_keys))
        .route(
            "/v1/purges/keys/{key}",
            get(get_purge_key)
                .put(put_purge_key)
                .post(post_purge_key)
                .delete(delete_purge_key),
        )
}

fn key_registry(api: &Api) -> Result<Registry, ApiError> {
    let p = api.purger.lock().clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no surrogate-key registry: no target has [targets.purge], or the purge store could \
             not be opened (see the log)",
        )
    })?;
    Ok(p.registry().clone())
}

fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn checked_key(key: &str) -> Result<(), ApiError> {
    match key_problem(key) {
        Some(reason) => Err(bad(format!("key: {key:?} {reason}"))),
        None => Ok(()),
    }
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Invalid { .. } => bad(e.to_string()),
        RegistryError::Full { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        RegistryError::Store(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Runs a registry call off the async threads (each is a store transaction).
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyUrlsBody {
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct KeysQuery {
    /// Keys beginning with this (a plain prefix: `site:acme` lists `site:acme`, `site:acme:blog`
    /// and `site:acmex`).
    prefix: Option<String>,
    /// Keys after this one (the previous page's `next_after`).
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct KeyQuery {
    /// Also the URLs of every key below this one.
    #[serde(default)]
    descendants: bool,
}

async fn list_purge_keys(State(api): State<Arc<Api>>, Query(q): Query<KeysQuery>) -> ApiResult {
    let reg = key_registry(&api)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(bad(format!("limit: must be 1 to 1000 (got {limit})")));
    }
    let (keys, total) = off_thread(move || {
        let keys = reg
            .keys(q.prefix.as_deref().unwrap_or(""), q.after.as_deref(), limit)
            .map_err(|e| registry_error(e.into()))?;
        let total = reg.len().map_err(|e| registry_error(e.into()))?;
        Ok((keys, total))
    })
    .await?;
    let next_after = if keys.len() == limit {
        keys.last().map(|k| k.key.clone())
    } else {
        None
    };
    Ok(
        Json(json!({ "keys": keys, "next_after": next_after, "registered_urls": total }))
            .into_response(),
    )
}

/// A key as the API shows it: its URLs, and those below it when asked.
fn key_view(reg: &Registry, key: &str, descendants: bool) -> Result<Value, ApiError> {
    let urls = reg.urls(key).map_err(|e| registry_error(e.into()))?;
    let mut v = json!({ "key": key, "urls": urls });
    if descendants {
        let d = reg
            .descendant_urls(key)
            .map_err(|e| registry_error(e.into()))?;
        v["descendants"] = json!(d);
    }
    Ok(v)
}

async fn get_purge_key(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    Query(q): Query<KeyQuery>,
) -> ApiResult {
    checked_key(&key)?;
    let reg = key_registry(&api)?;
    let v = off_thread(move || key_view(&reg, &key, q.descendants)).await?;
    let none_below = v["descendants"].as_object().is_none_or(|d| d.is_empty());
    if v["urls"].as_array().is_some_and(|u| u.is_empty()) && none_below {
        let key = v["key"].as_str().unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no URLs registered for surrogate key {key:?}"),
        ));
    }
    Ok(Json(v).into_response())
}

/// PUT and POST: the key's URLs replaced by, or added to, the body's.
async fn set_purge_key(api: Arc<Api>, key: String, body: Bytes, replace: bool) -> ApiResult {
    checked_key(&key)?;
    let body: KeyUrlsBody = parse_body(&body)?;
    if body.urls.len() > MAX_URLS_PER_REQUEST {
        return Err(bad(format!(
            "urls: {} URLs, at most {MAX_URLS_PER_REQUEST} in one request",
            body.urls.len()
        )));
    }
    let reg = key_registry(&api)?;
    let v = off_thread(move || {
        reg.set_key(&key, &body.urls, replace, wall_ms())
            .map_err(registry_error)?;
        key_view(&reg, &key, false)
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn put_purge_key(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    set_purge_key(api, key, body, true).await
}

async fn post_purge_key(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult {
    set_purge_key(api, key, body, false).await
}

async fn delete_purge_key(State(api): State<Arc<Api>>, Path(key): Path<String>) -> ApiResult {
    checked_key(&key)?;
    let reg = key_registry(&api)?;
    let k = key.clone();
    let had = off_thread(move || reg.delete_key(&k, wall_ms()).map_err(registry_error)).await?;
    if !had {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no URLs registered for surrogate key {key:?}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
