//! Operating the server: status, the raw configuration, reload, resolve with its explain
//! trace, `/metrics` and the OpenAPI document.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::edit::written;
use super::error::{ApiError, ApiResult};
use super::store::{ConfigStore, StoreError, Written};
use super::views::{rfc3339, view, with_etag};
use super::{Api, OPENAPI};
use crate::config::ValidConfig;
use crate::control::Control;

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/config", get(get_config))
        .route("/v1/resolve", get(resolve))
        .route("/v1/reload", post(reload))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
}

async fn status(State(api): State<Arc<Api>>) -> ApiResult {
    let table = api.control.table().load();
    let cfg = api.control.config();
    let now = api.control.now().wall_ms;
    let version = api.store.version();
    Ok(with_etag(
        Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_version": version,
            "generation": table.generation,
            "uptime_seconds": (now.saturating_sub(api.started_ms)) / 1000,
            "started_at": rfc3339(api.started_ms),
            "config_file": api.store.path().map(|p| p.display().to_string()),
            "zones": cfg.zones.len(),
            "targets": cfg.targets.len(),
            "services": cfg.services.len(),
            "all_down": table.all_down,
            "auth": api.keys.enabled(),
        }))
        .into_response(),
        version,
    ))
}

async fn get_config(State(api): State<Arc<Api>>) -> ApiResult {
    let (text, version) = api.store.snapshot();
    let Some(text) = text else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this server was started without a configuration text",
        ));
    };
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/toml; charset=utf-8"),
    );
    Ok(with_etag(r, version))
}

/// Reload the file through the store (`POST /v1/reload`, SIGHUP), counting the outcome and
/// noting the change as an event.
pub fn reload_file(
    store: &ConfigStore,
    control: &Control,
    apply: impl FnMut(ValidConfig) -> Result<u64, String>,
) -> Result<Written, StoreError> {
    let r = store.reload(apply);
    let m = &control.metrics().config_reloads;
    match &r {
        Ok(w) => {
            m.with_label_values(&["ok"]).inc();
            control.note_config_change(format!("version {}: reloaded from the file", w.version));
        }
        Err(_) => m.with_label_values(&["error"]).inc(),
    }
    r
}

async fn reload(State(api): State<Arc<Api>>) -> ApiResult {
    let a = api.clone();
    let w = tokio::task::spawn_blocking(move || {
        reload_file(&a.store, &a.control, |cfg| a.apply_config(cfg))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}"),
        )
    })??;
    Ok(written(w, StatusCode::OK, json!({ "reloaded": true })))
}

#[derive(Deserialize)]
struct ResolveQuery {
    name: String,
    client: String,
    #[serde(rename = "type")]
    rtype: Option<String>,
}

async fn resolve(State(api): State<Arc<Api>>, Query(q): Query<ResolveQuery>) -> ApiResult {
    use std::str::FromStr;
    let client: crate::resolve::ClientSpec = q
        .client
        .parse()
        .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, format!("client: {e}")))?;
    let qtype_s = q.rtype.unwrap_or_else(|| "A".into()).to_ascii_uppercase();
    let qtype = hickory_proto::rr::RecordType::from_str(&qtype_s).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("type: \"{qtype_s}\" is not a DNS record type"),
        )
    })?;
    let mut name = hickory_proto::rr::Name::from_ascii(&q.name).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("name: \"{}\" is not a domain name: {e}", q.name),
        )
    })?;
    name.set_fqdn(true);
    let client_text = q.client.clone();
    view(&api, move |api| {
        resolve_view(api, client, client_text, name, qtype)
    })
    .await
}

/// `GET /v1/resolve`'s answer and explain trace (runs the policy chain: blocking).
fn resolve_view(
    api: &Api,
    client: crate::resolve::ClientSpec,
    client_text: String,
    name: hickory_proto::rr::Name,
    qtype: hickory_proto::rr::RecordType,
) -> ApiResult {
    let table = api.control.table().load();
    let geo = api.control.geo();
    let r = crate::resolve::resolve(&table, &geo, client, &name, qtype);
    let cfg = api.control.config();
    let inputs = api.control.inputs();
    let memory = api.control.memory();
    let explain = crate::policy::explain(&cfg, &geo, &inputs, &memory, &name, client.addr);
    let explain_json = explain.as_ref().map(|e| {
        json!({
            "service": e.service,
            "policy": crate::policy::policy_name(e.policy),
            "cell": e.cell,
            "ttl": e.ttl,
            "all_down": e.outcome.all_down,
            "unstable": e.outcome.unstable,
            "steps": e.outcome.trace.iter().map(|s| json!({
                "step": s.step, "input": s.input, "output": s.output, "notes": s.notes,
            })).collect::<Vec<_>>(),
            "text": e.to_string(),
        })
    });
    Ok(Json(json!({
        "name": r.name.to_string(),
        "type": r.qtype.to_string(),
        "client": client_text,
        "located_by": r.located_by,
        "location": {
            "country": r.location.country.map(|_| r.location.country_str().to_string()),
            "continent": r.location.continent.map(|_| r.location.continent_str().to_string()),
        },
        "rcode": crate::resolve::rcode_mnemonic(r.rcode),
        "authoritative": r.authoritative,
        "answers": r.answers,
        "authority": r.authority,
        "additional": r.additional,
        "steered": r.steered.as_ref().map(|(s, t)| json!({"service": s, "target": t})),
        "ecs_scope": r.scope,
        "explain": explain_json,
    }))
    .into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let a = api.clone();
    match tokio::task::spawn_blocking(move || metrics_text(&a)).await {
        Ok(r) => r,
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics failed: {e}"),
        )
        .into_response(),
    }
}

/// The exposition text of every metric family (walks every target's windows: blocking).
fn metrics_text(api: &Api) -> Response {
    let mut families = api.control.metrics().gather();
    families.extend(api.control.gauges().collect());
    for src in &api.metrics_sources {
        families.extend(src());
    }
    let mut info = crate::metrics::Gauges::new();
    let b = info.family("steerd_build_info", "steerd's version.", &["version"]);
    info.set(b, &[env!("CARGO_PKG_VERSION")], 1.0);
    let s = info.family(
        "steerd_start_time_seconds",
        "Unix time the server started.",
        &[],
    );
    info.set(s, &[], api.started_ms as f64 / 1000.0);
    families.extend(info.collect());
    // A family without samples is not valid exposition text.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::encode(&families),
    )
        .into_response()
}
