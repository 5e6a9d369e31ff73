//! The admin HTTP API (axum): the shared state, and the router assembled from one router per
//! resource. Every write is validated like the configuration file, applied (a new table
//! swapped in) and persisted atomically; see `docs/operations.md` and `docs/openapi.json`.

mod auth;
pub mod doc;
mod edit;
mod error;
mod events;
mod inputs;
mod listen;
mod named;
mod ops;
mod overrides;
mod purge_keys;
mod purge_usage;
mod purges;
mod services;
pub mod store;
mod targets;
mod views;
mod zones;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tracing::{info, warn};

use crate::config::{Token, ValidConfig};
use crate::control::{Control, now_ms};
use store::ConfigStore;

pub use ops::reload_file;

/// The OpenAPI document (also kept in `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// A source of extra metric families (the DNS path, the alert sinks).
pub type MetricsSource = Arc<dyn Fn() -> Vec<prometheus::proto::MetricFamily> + Send + Sync>;

/// Applies a validated configuration to the running server; returns the table generation.
pub type Apply = Arc<dyn Fn(ValidConfig) -> Result<u64, String> + Send + Sync>;

/// The bearer tokens of the configuration in force, updated by every apply (API write,
/// `POST /v1/reload`, SIGHUP).
pub type Tokens = Arc<ArcSwap<Vec<Token>>>;

/// Latest Unix time (seconds) accepted anywhere: year 9999.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// What the handlers share.
pub struct Api {
    pub control: Control,
    pub store: Arc<ConfigStore>,
    pub apply: Apply,
    pub started_ms: u64,
    pub metrics_sources: Vec<MetricsSource>,
    /// Tokens from the configuration in force plus the environment's.
    keys: auth::Keys,
    /// Where pushed usage and cache metrics are kept across restarts (None: not kept).
    persist: Option<Arc<crate::control::Saver>>,
    /// The purger (None until a configuration has a purge target).
    purger: crate::purge::PurgerSlot,
}

impl Api {
    pub fn new(
        control: Control,
        store: Arc<ConfigStore>,
        apply: Apply,
        metrics_sources: Vec<MetricsSource>,
        tokens: Tokens,
        persist: Option<Arc<crate::control::Saver>>,
        purger: crate::purge::PurgerSlot,
    ) -> Arc<Self> {
        Arc::new(Self {
            control,
            store,
            apply,
            started_ms: now_ms(),
            metrics_sources,
            keys: auth::Keys::new(tokens),
            persist,
            purger,
        })
    }

    /// Apply a configuration (its tokens come with it).
    fn apply_config(&self, cfg: ValidConfig) -> Result<u64, String> {
        (self.apply)(cfg)
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
        if !api.keys.enabled() {
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

/// Every route: the resources' routers, behind the token check and the body limit.
pub fn router(api: Arc<Api>) -> Router {
    let max_body = api.control.config().admin.max_body;
    Router::new()
        .merge(ops::router())
        .merge(targets::router())
        .merge(overrides::router())
        .merge(inputs::router())
        .merge(services::router())
        .merge(zones::router())
        .merge(events::router())
        .merge(purge_usage::router())
        .merge(purges::router(max_body))
        .merge(purge_keys::router())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::auth,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}
