//! The admin HTTP API (axum): status, targets, services, zones' static records, overrides,
//! pushed inputs (remote observations, RUM, billing usage, cache metrics), events, reload,
//! resolve + explain, `/metrics` and the OpenAPI document. Every write is validated like the
//! configuration file, applied (a new table swapped in) and persisted atomically; see
//! `docs/operations.md` and `docs/openapi.json`.

pub mod doc;
mod listen;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::config::{Scope, Token, ValidConfig};
use crate::control::{CacheReport, Control, RumBeacon, now_ms};
use crate::health::{Level, Observation, WindowStats};
use doc::{json_find, json_list, json_to_table, name_body, remove, same_name, tables_mut, upsert};
use store::{ConfigStore, StoreError, Written};

/// The OpenAPI document (also kept in `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// A source of extra metric families (the DNS path, the alert sinks).
pub type MetricsSource = Arc<dyn Fn() -> Vec<prometheus::proto::MetricFamily> + Send + Sync>;

/// Applies a validated configuration to the running server; returns the table generation.
pub type Apply = Arc<dyn Fn(ValidConfig) -> Result<u64, String> + Send + Sync>;

/// The bearer tokens of the configuration in force, updated by every apply (API write,
/// `POST /v1/reload`, SIGHUP).
pub type Tokens = Arc<ArcSwap<Vec<Token>>>;

/// Reads that need an admin token: the raw configuration holds the tokens and sink secrets.
const ADMIN_READS: &[&str] = &["/v1/config"];

/// What the handlers share.
pub struct Api {
    pub control: Control,
    pub store: Arc<ConfigStore>,
    pub apply: Apply,
    pub started_ms: u64,
    pub metrics_sources: Vec<MetricsSource>,
    /// Tokens from the configuration in force plus the environment's.
    tokens: Tokens,
    env_tokens: Vec<Token>,
    /// Where pushed usage and cache metrics are kept across restarts (None: not kept).
    state: Option<Arc<crate::control::Saver>>,
}

/// Tokens from `STEERD_ADMIN_TOKEN` and `STEERD_READ_TOKEN` (comma-separated lists).
fn tokens_from_env() -> Vec<Token> {
    let mut out = Vec::new();
    for (var, scope) in [
        ("STEERD_ADMIN_TOKEN", Scope::Admin),
        ("STEERD_READ_TOKEN", Scope::Read),
    ] {
        if let Ok(v) = std::env::var(var) {
            for (i, t) in v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .enumerate()
            {
                if t.len() < 16 {
                    warn!("{var}: token {i} is shorter than 16 characters: ignored");
                    continue;
                }
                out.push(Token {
                    name: format!("{var}[{i}]"),
                    secret: t.to_string(),
                    scope,
                });
            }
        }
    }
    out
}

impl Api {
    pub fn new(
        control: Control,
        store: Arc<ConfigStore>,
        apply: Apply,
        metrics_sources: Vec<MetricsSource>,
        tokens: Tokens,
        state: Option<Arc<crate::control::Saver>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            control,
            store,
            apply,
            started_ms: now_ms(),
            metrics_sources,
            tokens,
            env_tokens: tokens_from_env(),
            state,
        })
    }

    /// Apply a configuration (its tokens come with it).
    fn apply_config(&self, cfg: ValidConfig) -> Result<u64, String> {
        (self.apply)(cfg)
    }

    /// The scope of a presented token (None: no token matches). Every configured token is
    /// compared, in constant time, whatever matched before.
    fn scope_of(&self, presented: &str) -> Option<Scope> {
        let p = Sha256::digest(presented.as_bytes());
        let mut best: Option<Scope> = None;
        let cfg = self.tokens.load();
        for t in cfg.iter().chain(self.env_tokens.iter()) {
            let s = Sha256::digest(t.secret.as_bytes());
            let eq: bool = p.as_slice().ct_eq(s.as_slice()).into();
            if eq {
                best = best.max(Some(t.scope));
            }
        }
        best
    }

    fn auth_enabled(&self) -> bool {
        !self.tokens.load().is_empty() || !self.env_tokens.is_empty()
    }
}

/// The running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Bind `addr` and serve the API until [`AdminServer::stop`], with the connection caps and
    /// timeouts of `limits` (its connections tracked in `registry`).
    pub async fn start(
        addr: SocketAddr,
        api: Arc<Api>,
        limits: crate::conns::ConnLimits,
        registry: &crate::conns::Registry,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if !api.auth_enabled() {
            if !addr.ip().is_loopback() {
                return Err(std::io::Error::other(format!(
                    "refusing to serve the admin API on {addr} without tokens: set [admin] \
                     tokens or STEERD_ADMIN_TOKEN, or listen on 127.0.0.1"
                )));
            }
            warn!(%addr, "admin API without tokens: anyone who can reach {addr} can change the configuration (add [admin] tokens)");
        }
        let app = router(api);
        let tracker = crate::conns::Tracker::new("admin", limits);
        registry.add(tracker.clone());
        let task = tokio::spawn(listen::serve(listener, app, tracker));
        info!(%addr, "admin API listening");
        Ok(Self { addr, task })
    }

    /// Stop accepting and close every connection (they are tasks of the accept loop's).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Every route.
pub fn router(api: Arc<Api>) -> Router {
    let max_body = api.control.config().admin.max_body;
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/config", get(get_config))
        .route("/v1/targets", get(list_targets))
        .route(
            "/v1/targets/{name}",
            get(get_target).put(put_target).delete(delete_target),
        )
        .route(
            "/v1/targets/{name}/override",
            put(put_override).delete(delete_override),
        )
        .route("/v1/overrides", get(list_overrides))
        .route(
            "/v1/targets/{name}/usage",
            put(put_usage).delete(delete_usage),
        )
        .route("/v1/targets/{name}/cache-metrics", put(put_cache_metrics))
        .route("/v1/services", get(list_services))
        .route(
            "/v1/services/{name}",
            get(get_service).put(put_service).delete(delete_service),
        )
        .route("/v1/zones", get(list_zones))
        .route(
            "/v1/zones/{zone}",
            get(get_zone).put(put_zone).delete(delete_zone),
        )
        .route("/v1/zones/{zone}/records", get(list_records))
        .route(
            "/v1/zones/{zone}/records/{name}/{rtype}",
            get(get_record).put(put_record).delete(delete_record),
        )
        .route("/v1/resolve", get(resolve))
        .route("/v1/observations", post(post_observations))
        .route("/v1/rum", post(post_rum))
        .route("/v1/events", get(events))
        .route("/v1/reload", post(reload))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}

// ---------------------------------------------------------------------------------------------
// Errors and auth

/// A JSON error response.
pub struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": msg.into() }),
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionMismatch { current, .. } => {
                let mut err = ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string());
                err.body["version"] = json!(current);
                err.headers.push((header::ETAG, etag_value(current)));
                err
            }
            StoreError::Invalid {
                ref file,
                ref issues,
            } => {
                let list: Vec<Value> = issues
                    .iter()
                    .map(|i| json!({"field": i.field, "line": i.line, "message": i.message}))
                    .collect();
                // The first issue as the message: FILE:LINE: FIELD: reason for a reload,
                // FIELD: reason for a write.
                let first = StoreError::Invalid {
                    file: file.clone(),
                    issues: issues.iter().take(1).cloned().collect(),
                };
                let mut body = json!({
                    "error": format!("the configuration would not be valid: {first}"),
                    "issues": list,
                });
                if let Some(f) = file {
                    body["file"] = json!(f);
                }
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body,
                    headers: Vec::new(),
                }
            }
            StoreError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            StoreError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn etag_value(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// Checks the bearer token (reads need `read` or `admin`, writes `admin`), counts the
/// request, and turns axum's plain-text rejections into JSON errors.
async fn auth(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let public = path == "/metrics" || path == "/v1/openapi.json";
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        || ADMIN_READS.contains(&path.as_str());
    let denied = if public || !api.auth_enabled() {
        None
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            None => Some((
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer TOKEN)".to_string(),
            )),
            Some(t) => match api.scope_of(t) {
                None => Some((StatusCode::UNAUTHORIZED, "unknown token".to_string())),
                Some(Scope::Read) if write => Some((
                    StatusCode::FORBIDDEN,
                    format!("this token has the read scope; {method} {path} needs an admin token"),
                )),
                Some(_) => None,
            },
        }
    };
    let response = match denied {
        Some((status, msg)) => {
            let mut e = ApiError::new(status, msg);
            if status == StatusCode::UNAUTHORIZED {
                e.headers.push((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"steerd\""),
                ));
            }
            e.into_response()
        }
        None => {
            let r = next.run(req).await;
            json_rejection(r).await
        }
    };
    api.control
        .metrics()
        .admin_requests
        .with_label_values(&[
            &route,
            crate::metrics::method_label(&method),
            response.status().as_str(),
        ])
        .inc();
    response
}

/// axum's extractor rejections are plain text: wrap them as `{"error": ...}`.
async fn json_rejection(r: Response) -> Response {
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_text = content_type.is_some_and(|v| v.starts_with("text/plain"));
    if r.status() == StatusCode::METHOD_NOT_ALLOWED && content_type.is_none() {
        let allow = r.headers().get(header::ALLOW).cloned();
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route (see /v1/openapi.json)",
        );
        if let Some(a) = allow {
            e.headers.push((header::ALLOW, a));
        }
        return e.into_response();
    }
    if !(r.status().is_client_error() && is_text) {
        return r;
    }
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let mut msg = String::from_utf8_lossy(&body).trim().to_string();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        msg = format!("request body too large ({msg}); see [admin] max_body");
    }
    ApiError::new(status, msg).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route (see /v1/openapi.json)",
    )
}

/// Create or replace the `kind` named `name` in the array of tables `coll`; true when created.
async fn upsert_named(
    api: &Arc<Api>,
    headers: &HeaderMap,
    coll: &'static str,
    kind: &str,
    name: &str,
    dns: bool,
    table: toml_edit::Table,
) -> Result<(Written, bool), ApiError> {
    let owned = name.to_string();
    edit(api, headers, format!("{kind} {name} written"), move |doc| {
        let a = tables_mut(doc.as_table_mut(), coll, coll)?;
        Ok(upsert(a, "name", &owned, dns, table))
    })
    .await
}

/// Remove the `kind` named `name` from the array of tables `coll` (404 when there is none).
async fn remove_named(
    api: &Arc<Api>,
    headers: &HeaderMap,
    coll: &'static str,
    kind: &'static str,
    name: &str,
    dns: bool,
) -> Result<Written, ApiError> {
    let owned = name.to_string();
    edit(api, headers, format!("{kind} {name} deleted"), move |doc| {
        let a = tables_mut(doc.as_table_mut(), coll, coll)?;
        if !remove(a, "name", &owned, dns) {
            return Err(StoreError::NotFound(format!("no {kind} named \"{owned}\"")));
        }
        Ok(false)
    })
    .await
    .map(|(w, _)| w)
}

/// Run a control-plane update that recompiles on a blocking thread; its error is a 404 (the
/// only way these fail is an unknown target).
async fn blocking(
    api: &Arc<Api>,
    f: impl FnOnce(&Control) -> Result<(), String> + Send + 'static,
) -> Result<(), ApiError> {
    let control = api.control.clone();
    tokio::task::spawn_blocking(move || f(&control))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("update failed: {e}"),
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))
}

/// Like [`blocking`] for a pushed input that outlives restarts (usage, cache metrics): it is
/// answered only once written to the state file (fsynced), so an acknowledged input survives
/// a SIGKILL. A state file that cannot be written is a 503: the input is in force, but the
/// caller should retry for it to be kept.
async fn blocking_durable(
    api: &Arc<Api>,
    f: impl FnOnce(&Control) -> Result<(), String> + Send + 'static,
) -> Result<(), ApiError> {
    blocking(api, f).await?;
    let Some(state) = api.state.clone() else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || state.save())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("saving the state failed: {e}"),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("in force, but not saved (retry): server.state_file: {e}"),
            )
        })
}

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

fn with_etag(mut r: Response, version: u64) -> Response {
    r.headers_mut().insert(header::ETAG, etag_value(version));
    r
}

fn written(w: Written, status: StatusCode, extra: Value) -> Response {
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

/// Parse a JSON body ourselves (clear errors naming the position).
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body: {path}: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    })
}

/// Run a configuration edit through the store (on a blocking thread: it compiles a table and
/// writes a file). `f` returns whether it created the resource.
async fn edit(
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

// ---------------------------------------------------------------------------------------------
// Views

fn rfc3339(ms: u64) -> String {
    crate::events::rfc3339_ms(ms)
}

fn ms(d: Option<Duration>) -> Value {
    d.map(|d| json!((d.as_secs_f64() * 1e6).round() / 1e3))
        .unwrap_or(Value::Null)
}

fn window_json(s: &WindowStats) -> Value {
    json!({
        "checks": s.count,
        "failures": s.failures,
        "error_rate": s.error_rate,
        "availability": s.availability,
        "p50_ms": ms(s.p50),
        "p95_ms": ms(s.p95),
        "p99_ms": ms(s.p99),
        "cache_hit_ratio": s.cache_hit_ratio,
    })
}

fn override_json(o: &crate::health::machine::Override) -> Value {
    json!({
        "state": o.kind.as_str(),
        "until": o.until_ms.map(|u| u / 1000),
        "until_time": o.until_ms.map(rfc3339),
        "reason": o.reason,
        "set_at": o.set_at_ms / 1000,
    })
}

/// What every view of one request reads from the control plane, gathered once (building the
/// policy inputs walks every target's windows).
struct Views {
    inputs: crate::policy::PolicyInputs,
    geo: Arc<crate::geo::GeoData>,
    memory: crate::policy::chain::Memory,
}

impl Views {
    fn now(api: &Api) -> Self {
        Views {
            inputs: api.control.inputs(),
            geo: api.control.geo(),
            memory: api.control.memory(),
        }
    }
}

/// Build a response on a blocking thread: views walk windows and run the policy chain, which
/// must not hold up the async threads (they serve TCP DNS and the rest of the API too).
async fn view(api: &Arc<Api>, f: impl FnOnce(&Api) -> ApiResult + Send + 'static) -> ApiResult {
    let api = api.clone();
    tokio::task::spawn_blocking(move || f(&api))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("view failed: {e}"),
            )
        })?
}

fn target_json(
    api: &Api,
    views: &Views,
    cfg: &ValidConfig,
    t: &crate::config::Target,
    config: Value,
) -> Value {
    let clock = api.control.now();
    let now = clock.mono_ms;
    let name = t.name.as_str();
    let (state, since, reason, ovr) = match api.control.target_state(name) {
        Some((s, since, reason, o)) => (s.as_str(), Some(since), reason, o),
        None => ("healthy", None, "no health data".to_string(), None),
    };
    let mut levels = Vec::new();
    let mut windows = serde_json::Map::new();
    {
        let mut store = api.control.health().lock();
        if let Some(th) = store.target(name) {
            for level in Level::ALL {
                for o in th.last(level) {
                    levels.push(json!({
                        "level": level.as_str(),
                        "vantage": &*o.vantage,
                        "ok": o.ok,
                        "at": rfc3339(clock.wall_of(o.at_ms)),
                        "latency_ms": ms(Some(o.latency)),
                        "detail": o.detail,
                    }));
                }
            }
            for w in crate::health::WINDOWS {
                let mut s = window_json(&th.stats(Level::Check, now, w));
                let c = th.stats(Level::Cache, now, w);
                if c.cache_hit_ratio.is_some() {
                    s["cache_hit_ratio"] = json!(c.cache_hit_ratio);
                }
                windows.insert(w.as_str().to_string(), s);
            }
        }
    }
    let (rum_all, rum_regions) = api.control.rum_stats(name);
    let (usage, cache, cost) = api.control.reports(name);
    let region_overrides: Vec<Value> = cfg
        .overrides
        .iter()
        .filter(|o| o.target == name && o.region.is_some())
        .filter(|o| o.until_ms.is_none_or(|u| u > clock.wall_ms))
        .map(|o| {
            json!({
                "state": o.kind.as_str(),
                "region": o.region.as_ref().map(|r| r.1.clone()),
                "until": o.until_ms.map(|u| u / 1000),
                "reason": o.reason,
            })
        })
        .collect();
    json!({
        "name": name,
        "role": t.role,
        "probed": t.check.is_some(),
        "state": state,
        "since": since.map(rfc3339),
        "reason": reason,
        "override": ovr.as_ref().map(override_json),
        "region_overrides": region_overrides,
        "levels": levels,
        "windows": windows,
        "rum": {
            "all": rum_all.as_ref().map(window_json),
            "regions": rum_regions.iter().map(|(r, s)| (r.clone(), window_json(s))).collect::<serde_json::Map<_, _>>(),
        },
        "cost": cost.filter(|c| c.source != crate::policy::cost::Source::Unmetered).map(|c| json!({
            "spend_so_far_usd": c.spend_so_far,
            "projected_usd": c.projected,
            "cap_usd": c.cap,
            "commit_usd": c.commit,
            "over_cap": c.over_cap,
            "under_commit": c.under_commit,
            "source": c.source.to_string(),
        })),
        "usage": usage.map(|u| json!({"spend_usd": u.spend_usd, "bytes": u.bytes, "as_of": u.as_of_ms / 1000})),
        "cache_metrics": cache,
        "cache": cache_json(api, &views.inputs, name, cfg),
        "config": config,
    })
}

/// The cache-aware inputs of a target as the next compile sees them, and its reports with
/// whether they still count (reports older than 5 minutes do not).
fn cache_json(
    api: &Api,
    inputs: &crate::policy::PolicyInputs,
    name: &str,
    cfg: &ValidConfig,
) -> Value {
    let (all, regions) = api.control.cache_reports(name);
    let i = cfg.targets.iter().position(|t| t.name == name);
    let input = i.and_then(|i| inputs.targets.get(i));
    let score = |c: &crate::policy::chain::CacheInputs| {
        json!({
            "score": c.score(),
            "popularity": c.popularity,
            "popularity_from": c.popularity_from,
            "ttl_factor": c.ttl_factor,
            "purge_ratio": c.purge_ratio,
        })
    };
    json!({
        "inputs": input.map(|t| score(&t.cache)),
        "report_fresh": all.as_ref().map(|(_, fresh)| *fresh),
        "regions": regions
            .iter()
            .map(|(r, report, fresh)| {
                let inputs = input
                    .and_then(|t| t.cache_by_region.iter().find(|(k, _)| k == r))
                    .map(|(_, c)| score(c));
                (r.clone(), json!({"report": report, "fresh": fresh, "inputs": inputs}))
            })
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn service_json(
    api: &Api,
    views: &Views,
    cfg: &ValidConfig,
    svc: &crate::config::Service,
    config: Value,
) -> Value {
    let cells =
        crate::policy::cell_answers(cfg, &views.geo, &views.inputs, &views.memory, &svc.name);
    let table = api.control.table().load();
    json!({
        "name": svc.name.to_string(),
        "policy": crate::policy::policy_name(svc.policy),
        "ttl": svc.ttl,
        "zone": cfg.zones.get(svc.zone).map(|z| z.apex.to_string()),
        "all_down": table.all_down.iter().any(|s| *s == svc.name.to_string()),
        "answers": cells,
        "config": config,
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers

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
            "auth": api.auth_enabled(),
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

/// The configuration's JSON form and its version, read together (a body and its ETag must
/// describe the same version, or If-Match could lose an update).
fn config_json(api: &Api) -> (Value, u64) {
    let (text, version) = api.store.snapshot();
    let doc = text
        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        .map(|d| doc::to_json(&d))
        .unwrap_or(Value::Null);
    (doc, version)
}

async fn list_targets(State(api): State<Arc<Api>>) -> ApiResult {
    view(&api, |api| {
        let cfg = api.control.config();
        let (doc, version) = config_json(api);
        let views = Views::now(api);
        let list: Vec<Value> = cfg
            .targets
            .iter()
            .map(|t| {
                let c = json_find(json_list(&doc, "targets"), "name", &t.name, false)
                    .cloned()
                    .unwrap_or(Value::Null);
                target_json(api, &views, &cfg, t, c)
            })
            .collect();
        Ok(with_etag(
            Json(json!({ "targets": list })).into_response(),
            version,
        ))
    })
    .await
}

async fn get_target(State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    view(&api, move |api| {
        let cfg = api.control.config();
        let Some(t) = cfg.targets.iter().find(|t| t.name == name) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no target named \"{name}\""),
            ));
        };
        let (doc, version) = config_json(api);
        let c = json_find(json_list(&doc, "targets"), "name", &name, false)
            .cloned()
            .unwrap_or(Value::Null);
        let views = Views::now(api);
        Ok(with_etag(
            Json(target_json(api, &views, &cfg, t, c)).into_response(),
            version,
        ))
    })
    .await
}

async fn put_target(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: Value = parse_body(&body)?;
    let mut table = json_to_table(&body, "target")?;
    name_body(&mut table, "name", &name, false)?;
    let (w, created) =
        upsert_named(&api, &headers, "targets", "target", &name, false, table).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written(
        w,
        status,
        json!({ "target": name, "created": created }),
    ))
}

/// Where the services of `doc` name the target `name`: (field, service name), in file order.
fn target_uses(doc: &toml_edit::DocumentMut, name: &str) -> Vec<(String, String)> {
    use toml::Value as T;
    let Ok(root) = doc.to_string().parse::<toml::Table>() else {
        return Vec::new();
    };
    let named = |v: &T, key: &str| match v {
        T::String(s) => s == name,
        T::Table(t) => t.get(key).and_then(T::as_str) == Some(name),
        _ => false,
    };
    let mut out = Vec::new();
    let services = root.get("services").and_then(T::as_array);
    for (i, svc) in services.into_iter().flatten().enumerate() {
        let service = svc
            .get("name")
            .and_then(T::as_str)
            .unwrap_or("?")
            .to_string();
        let f = format!("services[{i}]");
        let list = |key: &str| svc.get(key).and_then(T::as_array).into_iter().flatten();
        for (k, m) in list("targets").enumerate() {
            if named(m, "target") {
                out.push((format!("{f}.targets[{k}].target"), service.clone()));
            }
        }
        for (region, entries) in svc.get("geo").and_then(T::as_table).into_iter().flatten() {
            for (k, e) in entries.as_array().into_iter().flatten().enumerate() {
                if named(e, "target") {
                    let field = match e {
                        T::Table(_) => format!("{f}.geo.{region}[{k}].target"),
                        _ => format!("{f}.geo.{region}[{k}]"),
                    };
                    out.push((field, service.clone()));
                }
            }
        }
        for (k, n) in list("nets").enumerate() {
            let targets = n.get("targets").and_then(T::as_array).into_iter().flatten();
            for (j, t) in targets.enumerate() {
                if named(t, "target") {
                    out.push((format!("{f}.nets[{k}].targets[{j}]"), service.clone()));
                }
            }
        }
    }
    out
}

async fn delete_target(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (w, _) = edit(&api, &headers, format!("target {name} deleted"), {
        let name = name.clone();
        move |doc| {
            let a = tables_mut(doc.as_table_mut(), "targets", "targets")?;
            if !remove(a, "name", &name, false) {
                return Err(StoreError::NotFound(format!("no target named \"{name}\"")));
            }
            // Still used by services: one issue naming them (not one per reference).
            let uses = target_uses(doc, &name);
            if let Some((first, _)) = uses.first() {
                let mut services: Vec<String> = Vec::new();
                for (field, s) in &uses {
                    if !services.iter().any(|x| x.starts_with(&format!("{s} "))) {
                        services.push(format!("{s} ({field})"));
                    }
                }
                let plural = if services.len() > 1 {
                    "services"
                } else {
                    "service"
                };
                let overrides = tables_mut(doc.as_table_mut(), "overrides", "overrides")
                    .map(|o| {
                        o.iter()
                            .filter(|t| t.get("target").and_then(|v| v.as_str()) == Some(&name))
                            .count()
                    })
                    .unwrap_or(0);
                let also = match overrides {
                    0 => String::new(),
                    n => format!(" (its {n} override(s) go with it once it is deleted)"),
                };
                return Err(StoreError::Invalid {
                    file: None,
                    issues: vec![crate::config::ConfigIssue {
                        field: first.clone(),
                        line: None,
                        message: format!(
                            "target \"{name}\" is in use by {plural} {}: remove it from there \
                             first{also}",
                            services.join(", ")
                        ),
                    }],
                });
            }
            // Its overrides go with it.
            if let Ok(o) = tables_mut(doc.as_table_mut(), "overrides", "overrides") {
                o.retain(|t| t.get("target").and_then(|v| v.as_str()) != Some(name.as_str()));
            }
            Ok(false)
        }
    })
    .await?;
    Ok(written(w, StatusCode::OK, json!({ "deleted": name })))
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

#[derive(Deserialize, Default)]
struct RegionQuery {
    region: Option<String>,
}

/// Largest latency accepted in pushed observations and beacons: one hour.
const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// The longest override: ten years.
const MAX_OVERRIDE_SECS: f64 = 10.0 * 366.0 * 86_400.0;

/// Latest Unix time (seconds) accepted anywhere: year 9999.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

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
    body: axum::body::Bytes,
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
    let (w, _) = edit(
        &api,
        &headers,
        format!("override of {name}: {}", b.state),
        {
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
        },
    )
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBody {
    spend_usd: Option<f64>,
    bytes: Option<u64>,
    /// Unix seconds the figures describe (default: now).
    as_of: Option<u64>,
}

async fn put_usage(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: UsageBody = parse_body(&body)?;
    if b.spend_usd.is_none() && b.bytes.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "set spend_usd, bytes or both",
        ));
    }
    if let Some(s) = b.spend_usd
        && (!s.is_finite() || s < 0.0)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("spend_usd: must be a non-negative amount (got {s})"),
        ));
    }
    let now = api.control.now().wall_ms;
    if b.as_of.is_some_and(|s| s > MAX_UNIX_SECS) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "as_of: is not a Unix time in seconds",
        ));
    }
    let as_of_ms = b.as_of.map(|s| s * 1000).unwrap_or(now);
    if as_of_ms > now + crate::control::MAX_FUTURE_SKEW_MS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "as_of: is in the future",
        ));
    }
    let usage = crate::policy::cost::Usage {
        spend_usd: b.spend_usd,
        bytes: b.bytes,
        as_of_ms,
    };
    blocking_durable(&api, {
        let name = name.clone();
        move |c| c.set_usage(&name, Some(usage))
    })
    .await?;
    let (_, _, cost) = api.control.reports(&name);
    let cost = cost.filter(|c| c.source != crate::policy::cost::Source::Unmetered);
    let note = cost.is_none().then(|| {
        format!("{name} has no [targets.cost]: the usage is kept but no cap or commit applies")
    });
    Ok(Json(json!({
        "target": name,
        "note": note,
        "cost": cost.map(|c| json!({
            "spend_so_far_usd": c.spend_so_far,
            "projected_usd": c.projected,
            "cap_usd": c.cap,
            "over_cap": c.over_cap,
            "source": c.source.to_string(),
            "stale_report_ignored": c.stale_report_ignored,
        })),
    }))
    .into_response())
}

async fn delete_usage(State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    blocking_durable(&api, {
        let name = name.clone();
        move |c| c.set_usage(&name, None)
    })
    .await?;
    Ok(Json(json!({ "target": name, "cleared": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheBody {
    hit_ratio: Option<f64>,
    popularity: Option<f64>,
    ttl_factor: Option<f64>,
    purge_ratio: Option<f64>,
    /// The figures are those of this region's clients (continent code).
    region: Option<String>,
}

async fn put_cache_metrics(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: CacheBody = parse_body(&body)?;
    if let Some(r) = &b.region
        && !crate::geo::CONTINENTS.contains(&r.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "region: \"{}\" is not a continent code ({})",
                r.chars().take(16).collect::<String>(),
                crate::geo::CONTINENTS.join(", ")
            ),
        ));
    }
    let report = CacheReport {
        hit_ratio: b.hit_ratio,
        popularity: b.popularity,
        ttl_factor: b.ttl_factor,
        purge_ratio: b.purge_ratio,
        at_ms: api.control.now().wall_ms,
        received_ms: 0,
    };
    report
        .check()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let score = report.inputs().score();
    blocking_durable(&api, {
        let (name, report, region) = (name.clone(), report.clone(), b.region.clone());
        move |c| c.set_cache_report(&name, region.as_deref(), report)
    })
    .await?;
    Ok(Json(json!({
        "target": name,
        "region": b.region,
        "cache_metrics": report,
        "cache_score": score,
    }))
    .into_response())
}

async fn list_services(State(api): State<Arc<Api>>) -> ApiResult {
    view(&api, |api| {
        let cfg = api.control.config();
        let (doc, version) = config_json(api);
        let views = Views::now(api);
        let list: Vec<Value> = cfg
            .services
            .iter()
            .map(|s| {
                let c = json_find(
                    json_list(&doc, "services"),
                    "name",
                    &s.name.to_string(),
                    true,
                )
                .cloned()
                .unwrap_or(Value::Null);
                service_json(api, &views, &cfg, s, c)
            })
            .collect();
        Ok(with_etag(
            Json(json!({ "services": list })).into_response(),
            version,
        ))
    })
    .await
}

async fn get_service(State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    view(&api, move |api| {
        let cfg = api.control.config();
        let Some(s) = cfg
            .services
            .iter()
            .find(|s| same_name(&s.name.to_string(), &name))
        else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no service named \"{name}\""),
            ));
        };
        let (doc, version) = config_json(api);
        let c = json_find(json_list(&doc, "services"), "name", &name, true)
            .cloned()
            .unwrap_or(Value::Null);
        let views = Views::now(api);
        Ok(with_etag(
            Json(service_json(api, &views, &cfg, s, c)).into_response(),
            version,
        ))
    })
    .await
}

async fn put_service(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: Value = parse_body(&body)?;
    let mut table = json_to_table(&body, "service")?;
    name_body(&mut table, "name", &name, true)?;
    let (w, created) =
        upsert_named(&api, &headers, "services", "service", &name, true, table).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written(
        w,
        status,
        json!({ "service": name, "created": created }),
    ))
}

async fn delete_service(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let w = remove_named(&api, &headers, "services", "service", &name, true).await?;
    Ok(written(w, StatusCode::OK, json!({ "deleted": name })))
}

async fn list_zones(State(api): State<Arc<Api>>) -> ApiResult {
    let (doc, version) = config_json(&api);
    Ok(with_etag(
        Json(json!({ "zones": json_list(&doc, "zones") })).into_response(),
        version,
    ))
}

fn zone_config(api: &Api, zone: &str) -> Result<(Value, u64), ApiError> {
    let (doc, version) = config_json(api);
    json_find(json_list(&doc, "zones"), "name", zone, true)
        .cloned()
        .map(|z| (z, version))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no zone named \"{zone}\"")))
}

async fn get_zone(State(api): State<Arc<Api>>, Path(zone): Path<String>) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    Ok(with_etag(Json(z).into_response(), version))
}

async fn put_zone(
    State(api): State<Arc<Api>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: Value = parse_body(&body)?;
    // Records are arrays of tables in the file: write them as [[zones.records]].
    let mut records = Vec::new();
    let mut body = body;
    match body.as_object_mut().and_then(|o| o.remove("records")) {
        Some(Value::Array(rs)) => {
            for (i, r) in rs.iter().enumerate() {
                records.push(json_to_table(r, &format!("record (records[{i}])"))?);
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "records: must be an array of records",
            ));
        }
    }
    let mut table = json_to_table(&body, "zone")?;
    name_body(&mut table, "name", &zone, true)?;
    if !records.is_empty() {
        let mut a = toml_edit::ArrayOfTables::new();
        for r in records {
            a.push(r);
        }
        table.insert("records", toml_edit::Item::ArrayOfTables(a));
    }
    let (w, created) = upsert_named(&api, &headers, "zones", "zone", &zone, true, table).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written(
        w,
        status,
        json!({ "zone": zone, "created": created }),
    ))
}

async fn delete_zone(
    State(api): State<Arc<Api>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let w = remove_named(&api, &headers, "zones", "zone", &zone, true).await?;
    Ok(written(w, StatusCode::OK, json!({ "deleted": zone })))
}

async fn list_records(State(api): State<Arc<Api>>, Path(zone): Path<String>) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    Ok(with_etag(
        Json(json!({ "zone": zone, "records": z.get("records").cloned().unwrap_or(json!([])) }))
            .into_response(),
        version,
    ))
}

fn record_matches(r: &toml_edit::Table, name: &str, rtype: &str) -> bool {
    let n = r.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let t = r.get("type").and_then(|v| v.as_str()).unwrap_or("");
    same_name(n, name) && t.eq_ignore_ascii_case(rtype)
}

async fn get_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    let list: Vec<Value> = z
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| same_name(n, &name))
                && r.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(&rtype))
        })
        .cloned()
        .collect();
    if list.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {rtype} record named \"{name}\" in zone {zone}"),
        ));
    }
    Ok(with_etag(
        Json(json!({ "zone": zone, "name": name, "type": rtype.to_ascii_uppercase(), "records": list }))
            .into_response(),
        version,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    data: Value,
    ttl: Option<Value>,
}

async fn put_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: RecordBody = parse_body(&body)?;
    let mut t = toml_edit::Table::new();
    t.insert("name", toml_edit::value(name.as_str()));
    t.insert("type", toml_edit::value(rtype.to_ascii_uppercase()));
    let body = json!({ "data": b.data, "ttl": b.ttl });
    let rest = json_to_table(&body, "record")?;
    for (k, v) in rest.iter() {
        t.insert(k, v.clone());
    }
    let (w, created) = edit(
        &api,
        &headers,
        format!("{name} {rtype} in zone {zone} written"),
        {
            let name = name.clone();
            let zone = zone.clone();
            let rtype = rtype.clone();
            move |doc| {
                let zones = tables_mut(doc.as_table_mut(), "zones", "zones")?;
                let Some(zi) = doc::find(zones, "name", &zone, true) else {
                    return Err(StoreError::NotFound(format!("no zone named \"{zone}\"")));
                };
                let z = zones.get_mut(zi).expect("found");
                let recs = tables_mut(z, "records", "zones.records")?;
                let before = recs.len();
                // Replace the whole RRset: its first entry keeps its place.
                let first = recs.iter().position(|r| record_matches(r, &name, &rtype));
                recs.retain(|r| !record_matches(r, &name, &rtype));
                let created = recs.len() == before;
                match first {
                    Some(i) if i <= recs.len() => {
                        let mut all: Vec<toml_edit::Table> = recs.iter().cloned().collect();
                        all.insert(i, t);
                        recs.clear();
                        for r in all {
                            recs.push(r);
                        }
                    }
                    _ => recs.push(t),
                }
                Ok(created)
            }
        },
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written(
        w,
        status,
        json!({ "zone": zone, "name": name, "type": rtype.to_ascii_uppercase(), "created": created }),
    ))
}

async fn delete_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let (w, _) = edit(
        &api,
        &headers,
        format!("{name} {rtype} in zone {zone} deleted"),
        {
            let name = name.clone();
            let zone = zone.clone();
            let rtype = rtype.clone();
            move |doc| {
                let zones = tables_mut(doc.as_table_mut(), "zones", "zones")?;
                let Some(zi) = doc::find(zones, "name", &zone, true) else {
                    return Err(StoreError::NotFound(format!("no zone named \"{zone}\"")));
                };
                let z = zones.get_mut(zi).expect("found");
                let recs = tables_mut(z, "records", "zones.records")?;
                let before = recs.len();
                recs.retain(|r| !record_matches(r, &name, &rtype));
                if recs.len() == before {
                    return Err(StoreError::NotFound(format!(
                        "no {rtype} record named \"{name}\" in zone {zone}"
                    )));
                }
                Ok(false)
            }
        },
    )
    .await?;
    Ok(written(
        w,
        StatusCode::OK,
        json!({ "deleted": format!("{name} {rtype}") }),
    ))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservationsBody {
    /// The agent's vantage point ("fra1", "us-east").
    vantage: String,
    observations: Vec<ObservationBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservationBody {
    target: String,
    /// dns, tcp, tls, http, content, cache or check (a whole run's verdict).
    level: String,
    ok: bool,
    latency_ms: f64,
    /// Unix milliseconds (default: now).
    at_ms: Option<u64>,
    #[serde(default)]
    detail: String,
}

async fn post_observations(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> ApiResult {
    let b: ObservationsBody = parse_body(&body)?;
    if b.vantage.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "vantage: must not be empty",
        ));
    }
    // The vantage becomes a metric label: a name, like the targets'.
    if let Err(e) = crate::config::check_name(&b.vantage) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("vantage: {e}"),
        ));
    }
    let local = api.control.config().probe.vantage.clone();
    if b.vantage == local {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("vantage: \"{local}\" is this node's own prober; name the remote agent"),
        ));
    }
    let now = api.control.now().wall_ms;
    let vantage: Arc<str> = Arc::from(b.vantage.as_str());
    let mut results: Vec<Result<(), String>> = Vec::with_capacity(b.observations.len());
    let mut good = Vec::new();
    let mut slots = Vec::new();
    for o in &b.observations {
        if let Err(e) = crate::config::check_name(&o.target) {
            slots.push(false);
            results.push(Err(format!("target: {e}")));
            continue;
        }
        let level = Level::parse(&o.level);
        let r = match level {
            None => Err(format!(
                "level: \"{}\" is not one of dns, tcp, tls, http, content, cache, check",
                o.level
            )),
            Some(_) if !(0.0..=MAX_LATENCY_MS).contains(&o.latency_ms) => Err(format!(
                "latency_ms: must be between 0 and 3600000 (got {})",
                o.latency_ms
            )),
            Some(level) => {
                good.push(Observation {
                    target: Arc::from(o.target.as_str()),
                    level,
                    vantage: vantage.clone(),
                    at_ms: o.at_ms.unwrap_or(now),
                    ok: o.ok,
                    latency: Duration::from_secs_f64(o.latency_ms / 1000.0),
                    detail: o.detail.clone(),
                    cache: None,
                });
                Ok(())
            }
        };
        slots.push(r.is_ok());
        results.push(r);
    }
    let recorded = api.control.record_remote(&good);
    let mut it = recorded.into_iter();
    for (r, ok) in results.iter_mut().zip(slots) {
        if ok {
            *r = it.next().unwrap_or(Ok(()));
        }
    }
    Ok(batch_response(&results))
}

fn batch_response(results: &[Result<(), String>]) -> Response {
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let rejected: Vec<Value> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| json!({"index": i, "error": e})))
        .collect();
    let status = if accepted == 0 && !rejected.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    (
        status,
        Json(json!({"accepted": accepted, "rejected": rejected})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RumBody {
    beacons: Vec<BeaconBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BeaconBody {
    target: String,
    /// The client's address or subnet ("81.2.69.0/24"), located with the geo data ...
    client: Option<String>,
    /// ... or its country (ISO 3166-1 alpha-2).
    country: Option<String>,
    latency_ms: f64,
    ok: bool,
    /// Unix milliseconds (default: now).
    at_ms: Option<u64>,
}

async fn post_rum(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> ApiResult {
    let b: RumBody = parse_body(&body)?;
    let now = api.control.now().wall_ms;
    let cfg = api.control.config();
    let geo = api.control.geo();
    let mut results = Vec::with_capacity(b.beacons.len());
    let mut good = Vec::new();
    let mut slots = Vec::new();
    for x in &b.beacons {
        if let Err(e) = crate::config::check_name(&x.target) {
            slots.push(false);
            results.push(Err(format!("target: {e}")));
            continue;
        }
        let region: Result<Option<String>, String> = match (&x.client, &x.country) {
            (Some(_), Some(_)) => Err("set client or country, not both".into()),
            (None, None) => Err("set client (address or subnet) or country".into()),
            (Some(c), None) => c
                .parse::<crate::resolve::ClientSpec>()
                .map(|spec| {
                    let (loc, _) = geo.locate(spec.addr);
                    loc.continent.map(|_| loc.continent_str().to_string())
                })
                .map_err(|e| format!("client: {e}")),
            (None, Some(cc)) => {
                let b = cc.as_bytes();
                if b.len() != 2 {
                    Err(format!(
                        "country: \"{cc}\" is not an ISO 3166-1 alpha-2 code"
                    ))
                } else {
                    match cfg
                        .countries
                        .get([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
                    {
                        Some(info) => {
                            Ok(Some(String::from_utf8_lossy(&info.continent).into_owned()))
                        }
                        None => Err(format!("country: unknown country \"{cc}\"")),
                    }
                }
            }
        };
        let r = match region {
            Err(e) => Err(e),
            Ok(_) if !(0.0..=MAX_LATENCY_MS).contains(&x.latency_ms) => Err(format!(
                "latency_ms: must be between 0 and 3600000 (got {})",
                x.latency_ms
            )),
            Ok(region) => {
                good.push(RumBeacon {
                    target: x.target.clone(),
                    region,
                    latency: Duration::from_secs_f64(x.latency_ms / 1000.0),
                    ok: x.ok,
                    at_ms: x.at_ms.unwrap_or(now),
                });
                Ok(())
            }
        };
        slots.push(r.is_ok());
        results.push(r);
    }
    let recorded = api.control.record_rum(&good);
    let mut it = recorded.into_iter();
    for (r, ok) in results.iter_mut().zip(slots) {
        if ok {
            *r = it.next().unwrap_or(Ok(()));
        }
    }
    Ok(batch_response(&results))
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
        match crate::events::EventKind::parse(k) {
            Some(kind) => kinds.push(kind),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "kind: \"{k}\" is not an event kind ({})",
                        crate::events::EventKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
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
