//! Operator overrides (`forced_up`, `forced_down`, `drained`, for every client or one region,
//! until a time or for a while): `/v1/targets/{name}/override` and `/v1/overrides`, kept as
//! `[[overrides]]` of the configuration.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::doc::tables_mut;
use super::edit::{edit, written};
use super::error::{ApiError, ApiResult, parse_body};
use super::store::StoreError;
use super::views::{rfc3339, with_etag};
use super::{Api, MAX_UNIX_SECS};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/v1/targets/{name}/override",
            put(put_override).delete(delete_override),
        )
        .route("/v1/overrides", get(list_overrides))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    /// forced_up | forced_down | drained
    state: String,
    /// Region key: "EU", "EU/DE", "default"; absent = every client.
    region: Option<String>,
    /// Expiry, Unix seconds ...
    until: Option<u64>,
    /// ... or a duration from now: seconds, or "30m", "2h".
    #[serde(rename = "for")]
    for_: Option<Value>,
    reason: String,
}

#[derive(Deserialize)]
struct RegionQuery {
    region: Option<String>,
}

/// The longest override: ten years.
const MAX_OVERRIDE_SECS: f64 = 10.0 * 366.0 * 86_400.0;

fn parse_for(v: &Value) -> Result<Duration, ApiError> {
    match v {
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f > 0.0 && f <= MAX_OVERRIDE_SECS) =>
        {
            Ok(Duration::from_secs_f64(n.as_f64().unwrap_or(0.0)))
        }
        Value::String(s) => match humantime::parse_duration(s) {
            Ok(d) if d.as_secs_f64() <= MAX_OVERRIDE_SECS && !d.is_zero() => Ok(d),
            Ok(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("for: \"{s}\" must be more than 0 and at most 10 years"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("for: \"{s}\" is not a duration ({e}); write e.g. \"30m\" or 1800"),
            )),
        },
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "for: must be a positive number of seconds (at most 10 years) or a duration such as \"30m\"",
        )),
    }
}

async fn put_override(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let b: OverrideBody = parse_body(&body)?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason: say why (it is shown in events, alerts and explain output)",
        ));
    }
    let now = api.control.now().wall_ms;
    let until = match (b.until, &b.for_) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "set `until` or `for`, not both",
            ));
        }
        (Some(u), None) => {
            if u > MAX_UNIX_SECS {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("until: {u} is not a Unix time in seconds"),
                ));
            }
            if u * 1000 <= now {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("until: {u} is in the past"),
                ));
            }
            Some(u)
        }
        (None, Some(f)) => Some((now + parse_for(f)?.as_millis() as u64).div_ceil(1000)),
        (None, None) => None,
    };
    let mut t = toml_edit::Table::new();
    t.insert("target", toml_edit::value(name.as_str()));
    t.insert("state", toml_edit::value(b.state.as_str()));
    if let Some(r) = &b.region {
        t.insert("region", toml_edit::value(r.as_str()));
    }
    if let Some(u) = until {
        t.insert("until", toml_edit::value(u as i64));
    }
    t.insert("reason", toml_edit::value(b.reason.as_str()));
    t.insert("set_at", toml_edit::value((now / 1000) as i64));
    let region = b.region.clone();
    let what = format!("override of {name}: {}", b.state);
    let (w, _) = edit(&api, &headers, what, {
        let name = name.clone();
        move |doc| {
            let a = tables_mut(doc.as_table_mut(), "overrides", "overrides")?;
            // Drop expired overrides while we are here, and the one this replaces.
            a.retain(|x| {
                let expired = x
                    .get("until")
                    .and_then(|v| v.as_integer())
                    .is_some_and(|u| (u as u64) * 1000 <= now);
                let same = x.get("target").and_then(|v| v.as_str()) == Some(name.as_str())
                    && x.get("region").and_then(|v| v.as_str()) == region.as_deref();
                !expired && !same
            });
            a.push(t);
            Ok(false)
        }
    })
    .await?;
    Ok(written(
        w,
        StatusCode::OK,
        json!({
            "target": name, "state": b.state, "region": b.region,
            "until": until, "reason": b.reason,
        }),
    ))
}

async fn delete_override(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<RegionQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let (w, _) = edit(&api, &headers, format!("override of {name} cleared"), {
        let name = name.clone();
        move |doc| {
            let a = tables_mut(doc.as_table_mut(), "overrides", "overrides")?;
            let before = a.len();
            a.retain(|x| {
                !(x.get("target").and_then(|v| v.as_str()) == Some(name.as_str())
                    && x.get("region").and_then(|v| v.as_str()) == q.region.as_deref())
            });
            if a.len() == before {
                return Err(StoreError::NotFound(format!(
                    "no override of \"{name}\"{}",
                    q.region
                        .as_ref()
                        .map(|r| format!(" for region {r}"))
                        .unwrap_or_default()
                )));
            }
            Ok(false)
        }
    })
    .await?;
    Ok(written(
        w,
        StatusCode::OK,
        json!({ "target": name, "cleared": true }),
    ))
}

async fn list_overrides(State(api): State<Arc<Api>>) -> ApiResult {
    let cfg = api.control.config();
    let now = api.control.now().wall_ms;
    let list: Vec<Value> = cfg
        .overrides
        .iter()
        .map(|o| {
            json!({
                "target": o.target,
                "state": o.kind.as_str(),
                "region": o.region.as_ref().map(|r| r.1.clone()),
                "until": o.until_ms.map(|u| u / 1000),
                "until_time": o.until_ms.map(rfc3339),
                "expired": o.until_ms.is_some_and(|u| u <= now),
                "reason": o.reason,
                "set_at": o.set_at_ms / 1000,
            })
        })
        .collect();
    Ok(with_etag(
        Json(json!({ "overrides": list })).into_response(),
        cfg.version,
    ))
}
