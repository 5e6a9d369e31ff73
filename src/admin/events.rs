//! `/v1/events`: the event log, paged by id and filtered by kind and subject.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::error::{ApiError, ApiResult};
use crate::events::EventKind;

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new().route("/v1/events", get(events))
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    /// Comma-separated kinds.
    kind: Option<String>,
    subject: Option<String>,
}

async fn events(State(api): State<Arc<Api>>, Query(q): Query<EventsQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit: must be 1 to 1000 (got {limit})"),
        ));
    }
    let mut kinds = Vec::new();
    for k in q
        .kind
        .iter()
        .flat_map(|k| k.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        match EventKind::parse(k) {
            Some(kind) => kinds.push(kind),
            None => {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("kind: \"{k}\" is not an event kind ({})", all.join(", ")),
                ));
            }
        }
    }
    let after = q.after.unwrap_or(0);
    let (list, last_id, first_id) =
        api.control
            .event_page(after, limit, &kinds, q.subject.as_deref());
    // Everything up to last_id has been scanned unless the page is full.
    let next_after = if list.len() == limit {
        list.last().map(|e| e.id).unwrap_or(after)
    } else {
        after.max(last_id)
    };
    let events: Vec<Value> = list
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["time"] = json!(e.time_rfc3339());
            v["dedup_key"] = json!(e.dedup_key());
            v
        })
        .collect();
    Ok(Json(json!({
        "events": events,
        "next_after": next_after,
        "last_id": last_id,
        "oldest_id": first_id,
        "more": list.len() == limit,
    }))
    .into_response())
}
