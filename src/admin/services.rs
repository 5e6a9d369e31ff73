//! `/v1/services`: the services with the answer of every cell, and their configuration.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;

use super::Api;
use super::error::ApiResult;
use super::named::{Live, Named, ViewFn, delete_named, get_named, list_named, put_named};
use super::views::service_json;
use crate::config::{Service, ValidConfig};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/services", get(list_services))
        .route(
            "/v1/services/{name}",
            get(get_service).put(put_service).delete(delete_service),
        )
}

struct Services;

impl Named for Services {
    const KIND: &'static str = "service";
    const TABLES: &'static str = "services";
    const DNS: bool = true;
}

impl Live for Services {
    type Item = Service;
    const VIEW: ViewFn<Service> = service_json;

    fn in_force(cfg: &ValidConfig) -> &[Service] {
        &cfg.services
    }

    fn name_of(s: &Service) -> String {
        s.name.to_string()
    }
}

async fn list_services(api: State<Arc<Api>>) -> ApiResult {
    list_named::<Services>(api).await
}

async fn get_service(api: State<Arc<Api>>, name: Path<String>) -> ApiResult {
    get_named::<Services>(api, name).await
}

async fn put_service(api: State<Arc<Api>>, n: Path<String>, h: HeaderMap, b: Bytes) -> ApiResult {
    put_named::<Services>(api, n, h, b).await
}

async fn delete_service(api: State<Arc<Api>>, name: Path<String>, h: HeaderMap) -> ApiResult {
    delete_named::<Services>(api, name, h).await
}
