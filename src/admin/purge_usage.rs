//! `GET /v1/purges/usage`: what purging cost this month (or `?month=YYYY-MM`, UTC), per CDN
//! target and in total: the items the provider bills, the API calls, the spend under the
//! target's tiered `pricing`, the tier reached and the free items left, and what dedupe and
//! batching saved (`purge::usage`).

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
use super::purges::purger;
use crate::config::purge::PriceTier;
use crate::purge::usage::{self, Counters};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new().route("/v1/purges/usage", get(usage_view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    month: Option<String>,
}

/// Dollars to the micro-dollar (sums of tiers are not exact in binary).
fn dollars(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

async fn usage_view(State(api): State<Arc<Api>>, Query(q): Query<UsageQuery>) -> ApiResult {
    let p = purger(&api)?;
    let month = match q.month {
        Some(m) if usage::valid_month(&m) => m,
        Some(m) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("month: {m:?} is not a month: use YYYY-MM (UTC), e.g. 2026-12"),
            ));
        }
        None => usage::month_of(crate::clock::wall_ms()),
    };
    let mut counts = p.usage(&month);
    let cfg = api.control.config();
    // Every purge target of the configuration in force, then any the month counted that has
    // left it (no provider, no pricing).
    let mut rows: Vec<(String, Option<&'static str>, Vec<PriceTier>, Counters)> = Vec::new();
    for t in &cfg.targets {
        if let Some(pc) = &t.purge {
            let c = counts.remove(&t.name).unwrap_or_default();
            rows.push((
                t.name.clone(),
                Some(pc.provider.name()),
                pc.pricing.clone(),
                c,
            ));
        }
    }
    rows.extend(counts.into_iter().map(|(t, c)| (t, None, Vec::new(), c)));
    let mut total = Counters::default();
    let (mut spend_total, mut savings_total) = (0.0, 0.0);
    let mut targets = serde_json::Map::new();
    for (name, provider, pricing, c) in rows {
        let spend = usage::price(&pricing, c.items);
        let savings = usage::savings(&pricing, &c);
        spend_total += spend;
        savings_total += savings;
        total.items += c.items;
        total.api_calls += c.api_calls;
        total.deduplicated += c.deduplicated;
        total.calls_saved += c.calls_saved;
        let tier = (!pricing.is_empty()).then(|| {
            let i = usage::tier_of(&pricing, c.items);
            json!({"index": i, "up_to": pricing[i].up_to, "per_item": pricing[i].per_item})
        });
        let free = if pricing.is_empty() {
            Some(0)
        } else {
            usage::free_remaining(&pricing, c.items)
        };
        targets.insert(
            name,
            json!({
                "provider": provider,
                "month": month,
                "items": c.items,
                "api_calls": c.api_calls,
                "spend": dollars(spend),
                "tier": tier,
                "free_remaining": free,
                "deduplicated": c.deduplicated,
                "calls_saved": c.calls_saved,
                "savings_dollars": dollars(savings),
                "pricing": pricing
                    .iter()
                    .map(|t| json!({"up_to": t.up_to, "per_item": t.per_item}))
                    .collect::<Vec<Value>>(),
            }),
        );
    }
    Ok(Json(json!({
        "month": month,
        "targets": targets,
        "totals": {
            "items": total.items,
            "api_calls": total.api_calls,
            "spend": dollars(spend_total),
            "deduplicated": total.deduplicated,
            "calls_saved": total.calls_saved,
            "savings_dollars": dollars(savings_total),
        },
    }))
    .into_response())
}
