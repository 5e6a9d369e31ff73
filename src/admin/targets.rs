//! `/v1/targets`: the targets with their health, windows, RUM, cost and cache inputs, and
//! their configuration (a target still used by a service cannot be deleted; its overrides go
//! with it).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use toml_edit::DocumentMut;

use super::Api;
use super::doc::tables_mut;
use super::error::ApiResult;
use super::named::{Live, Named, ViewFn, delete_named, get_named, list_named, put_named};
use super::store::StoreError;
use super::views::target_json;
use crate::config::{Target, ValidConfig};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new().route("/v1/targets", get(list_targets)).route(
        "/v1/targets/{name}",
        get(get_target).put(put_target).delete(delete_target),
    )
}

struct Targets;

impl Named for Targets {
    const KIND: &'static str = "target";
    const TABLES: &'static str = "targets";
    const DNS: bool = false;

    /// Refused while services name the target (one issue naming them); its overrides go with it.
    fn on_delete(doc: &mut DocumentMut, name: &str) -> Result<(), StoreError> {
        let uses = target_uses(doc, name);
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
                        .filter(|t| t.get("target").and_then(|v| v.as_str()) == Some(name))
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
        if let Ok(o) = tables_mut(doc.as_table_mut(), "overrides", "overrides") {
            o.retain(|t| t.get("target").and_then(|v| v.as_str()) != Some(name));
        }
        Ok(())
    }
}

impl Live for Targets {
    type Item = Target;
    const VIEW: ViewFn<Target> = target_json;

    fn in_force(cfg: &ValidConfig) -> &[Target] {
        &cfg.targets
    }

    fn name_of(t: &Target) -> String {
        t.name.clone()
    }
}

async fn list_targets(api: State<Arc<Api>>) -> ApiResult {
    list_named::<Targets>(api).await
}

async fn get_target(api: State<Arc<Api>>, name: Path<String>) -> ApiResult {
    get_named::<Targets>(api, name).await
}

async fn put_target(api: State<Arc<Api>>, n: Path<String>, h: HeaderMap, b: Bytes) -> ApiResult {
    put_named::<Targets>(api, n, h, b).await
}

async fn delete_target(api: State<Arc<Api>>, name: Path<String>, h: HeaderMap) -> ApiResult {
    delete_named::<Targets>(api, name, h).await
}

/// Where the services of `doc` name the target `name`: (field, service name), in file order.
fn target_uses(doc: &DocumentMut, name: &str) -> Vec<(String, String)> {
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
