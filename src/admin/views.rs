//! The JSON views of the admin API: a target's health, windows, RUM, cost and cache inputs, a
//! service's answers per cell, the configuration's JSON form, all built on a blocking thread
//! from one gathering of the control plane's inputs, and the ETag of a read.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::Api;
use super::error::{ApiError, ApiResult, etag_value};
use crate::config::ValidConfig;
use crate::health::{Level, WindowStats};

pub(super) fn rfc3339(ms: u64) -> String {
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

/// `r` with the configuration version `version` as its ETag.
pub(super) fn with_etag(mut r: Response, version: u64) -> Response {
    r.headers_mut().insert(header::ETAG, etag_value(version));
    r
}

/// The configuration's JSON form and its version, read together (a body and its ETag must
/// describe the same version, or If-Match could lose an update).
pub(super) fn config_json(api: &Api) -> (Value, u64) {
    let (text, version) = api.store.snapshot();
    let doc = text
        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        .map(|d| super::doc::to_json(&d))
        .unwrap_or(Value::Null);
    (doc, version)
}

/// What every view of one request reads from the control plane, gathered once (building the
/// policy inputs walks every target's windows).
pub(super) struct Views {
    inputs: crate::policy::PolicyInputs,
    geo: Arc<crate::geo::GeoData>,
    memory: crate::policy::chain::Memory,
}

impl Views {
    pub(super) fn now(api: &Api) -> Self {
        Views {
            inputs: api.control.inputs(),
            geo: api.control.geo(),
            memory: api.control.memory(),
        }
    }
}

/// Build a response on a blocking thread: views walk windows and run the policy chain, which
/// must not hold up the async threads (they serve TCP DNS and the rest of the API too).
pub(super) async fn view(
    api: &Arc<Api>,
    f: impl FnOnce(&Api) -> ApiResult + Send + 'static,
) -> ApiResult {
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

/// A target as `GET /v1/targets/{name}` shows it; `config`: its configuration form.
pub(super) fn target_json(
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
        "stale_content": api.control.stale(name).map(|(why, since)| json!({"reason": why, "since": rfc3339(since)})),
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
            "purge_ratio_from": c.purge_ratio_from,
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

/// A service as `GET /v1/services/{name}` shows it; `config`: its configuration form.
pub(super) fn service_json(
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
