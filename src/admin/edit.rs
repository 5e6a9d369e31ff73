//! Configuration writes through the store: `If-Match`, the edit on a blocking thread (counted
//! and noted as an event), and the answer naming the new version, which is also its ETag.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use super::error::ApiError;
use super::store::{StoreError, Written};
use super::views::with_etag;

/// `If-Match: "7"` (or 7, or *) → Some(7) / None.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    let s = s.trim_start_matches("W/").trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("If-Match must be a configuration version such as \"7\" (got {s:?})"),
        )
    })
}

/// The answer to a write: the new version, generation and whether it was persisted, with
/// `extra`'s fields, and the version as ETag.
pub(super) fn written(w: Written, status: StatusCode, extra: Value) -> Response {
    let mut body = json!({
        "version": w.version,
        "generation": w.generation,
        "persisted": w.persisted,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    with_etag((status, Json(body)).into_response(), w.version)
}

/// 201 for a resource a write created, 200 for one it replaced.
pub(super) fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Run a configuration edit through the store (on a blocking thread: it compiles a table and
/// writes a file). `f` returns whether it created the resource.
pub(super) async fn edit(
    api: &Arc<Api>,
    headers: &HeaderMap,
    what: String,
    f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<bool, StoreError> + Send + 'static,
) -> Result<(Written, bool), ApiError> {
    let expected = if_match(headers)?;
    let a = api.clone();
    let r =
        tokio::task::spawn_blocking(move || a.store.write(expected, f, |cfg| a.apply_config(cfg)))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("write failed: {e}"),
                )
            })?;
    let m = &api.control.metrics().config_reloads;
    match &r {
        Ok((w, _)) => {
            m.with_label_values(&["ok"]).inc();
            api.control
                .note_config_change(format!("version {}: {what} (admin API)", w.version));
        }
        // Only a configuration that was refused counts as a failed reload (not a 404 or 412).
        Err(StoreError::Invalid { .. } | StoreError::Internal(_)) => {
            m.with_label_values(&["error"]).inc()
        }
        Err(_) => {}
    }
    r.map_err(ApiError::from)
}
