//! `steerd_cdn_stale{target}` and `steerd_cdn_version_behind_seconds{target}`, in a registry
//! that `GET /metrics` appends.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct FreshMetrics {
    registry: Registry,
    pub stale: IntGaugeVec,
    pub behind: GaugeVec,
    pub verifications: IntCounterVec,
}

impl FreshMetrics {
    pub fn new() -> FreshMetrics {
        let registry = Registry::new();
        let stale = IntGaugeVec::new(
            Opts::new(
                "steerd_cdn_stale",
                "1 while a CDN serves an older canary version than the latest past purge.stale_grace.",
            ),
            &["target"],
        )
        .expect("metric");
        let behind = GaugeVec::new(
            Opts::new(
                "steerd_cdn_version_behind_seconds",
                "How long a CDN's oldest canary has been behind the latest version (0: current).",
            ),
            &["target"],
        )
        .expect("metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "steerd_purge_verifications_total",
                "Canaries fetched through a CDN after it confirmed a purge, by result.",
            ),
            &["target", "result"],
        )
        .expect("metric");
        registry.register(Box::new(stale.clone())).expect("unique");
        registry.register(Box::new(behind.clone())).expect("unique");
        registry
            .register(Box::new(verifications.clone()))
            .expect("unique");
        FreshMetrics {
            registry,
            stale,
            behind,
            verifications,
        }
    }

    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}
