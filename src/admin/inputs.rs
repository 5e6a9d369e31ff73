//! Pushed inputs: remote agents' observations (`/v1/observations`), real-user beacons
//! (`/v1/rum`), billing usage and cache metrics of a target (kept across restarts: answered
//! once saved).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, parse_body};
use super::{Api, MAX_UNIX_SECS};
use crate::control::{CacheReport, Control, RumBeacon};
use crate::health::{Level, Observation};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/v1/targets/{name}/usage",
            put(put_usage).delete(delete_usage),
        )
        .route("/v1/targets/{name}/cache-metrics", put(put_cache_metrics))
        .route("/v1/observations", post(post_observations))
        .route("/v1/rum", post(post_rum))
}

/// Largest latency accepted in pushed observations and beacons: one hour.
const MAX_LATENCY_MS: f64 = 3_600_000.0;

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
    let Some(saver) = api.persist.clone() else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || saver.save())
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

/// A batch of pushed items: each `check`ed (its target a name, then `check`), the good ones
/// `record`ed together; 202 with what was accepted and why each other item was rejected, or
/// 422 when nothing was.
fn batch<B, G>(
    items: &[B],
    target: impl Fn(&B) -> &str,
    mut check: impl FnMut(&B) -> Result<G, String>,
    record: impl FnOnce(&[G]) -> Vec<Result<(), String>>,
) -> Response {
    let mut results: Vec<Result<(), String>> = Vec::with_capacity(items.len());
    let mut good = Vec::new();
    for x in items {
        let r = crate::config::check_name(target(x))
            .map_err(|e| format!("target: {e}"))
            .and_then(|_| check(x));
        match r {
            Ok(g) => {
                good.push(g);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    // Every good item gets the outcome of recording it.
    let mut recorded = record(&good).into_iter();
    for r in results.iter_mut().filter(|r| r.is_ok()) {
        *r = recorded.next().unwrap_or(Ok(()));
    }
    batch_response(&results)
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

/// `latency_ms` of a pushed item, checked.
fn latency(ms: f64) -> Result<Duration, String> {
    if !(0.0..=MAX_LATENCY_MS).contains(&ms) {
        return Err(format!(
            "latency_ms: must be between 0 and 3600000 (got {ms})"
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
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

async fn post_observations(State(api): State<Arc<Api>>, body: Bytes) -> ApiResult {
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
    let check = |o: &ObservationBody| {
        let Some(level) = Level::parse(&o.level) else {
            return Err(format!(
                "level: \"{}\" is not one of dns, tcp, tls, http, content, cache, check",
                o.level
            ));
        };
        Ok(Observation {
            target: Arc::from(o.target.as_str()),
            level,
            vantage: vantage.clone(),
            at_ms: o.at_ms.unwrap_or(now),
            ok: o.ok,
            latency: latency(o.latency_ms)?,
            detail: o.detail.clone(),
            cache: None,
        })
    };
    Ok(batch(
        &b.observations,
        |o| &o.target,
        check,
        |good| api.control.record_remote(good),
    ))
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

async fn post_rum(State(api): State<Arc<Api>>, body: Bytes) -> ApiResult {
    let b: RumBody = parse_body(&body)?;
    let now = api.control.now().wall_ms;
    let cfg = api.control.config();
    let geo = api.control.geo();
    // The continent of the beacon's client.
    let region = |x: &BeaconBody| -> Result<Option<String>, String> {
        match (&x.client, &x.country) {
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
                    return Err(format!(
                        "country: \"{cc}\" is not an ISO 3166-1 alpha-2 code"
                    ));
                }
                match cfg
                    .countries
                    .get([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
                {
                    Some(info) => Ok(Some(String::from_utf8_lossy(&info.continent).into_owned())),
                    None => Err(format!("country: unknown country \"{cc}\"")),
                }
            }
        }
    };
    let check = |x: &BeaconBody| {
        let region = region(x)?;
        Ok(RumBeacon {
            target: x.target.clone(),
            region,
            latency: latency(x.latency_ms)?,
            ok: x.ok,
            at_ms: x.at_ms.unwrap_or(now),
        })
    };
    Ok(batch(
        &b.beacons,
        |x| &x.target,
        check,
        |good| api.control.record_rum(good),
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
    body: Bytes,
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
    body: Bytes,
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
