//! The purger's Prometheus metrics (`steerd_purge_*`), in a registry of their own that
//! `GET /metrics` appends.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Upper bounds (seconds) of the time from acceptance to a CDN's confirmation, around the
/// SLAs (1, 10, 60, 300 s).
const COMPLETION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

pub struct PurgeMetrics {
    registry: Registry,
    pub accepted: IntCounterVec,
    pub api_calls: IntCounterVec,
    pub items: IntCounterVec,
    pub completion: HistogramVec,
    pub sla_missed: IntCounterVec,
    pub deduped: IntCounterVec,
    pub queued: IntGaugeVec,
}

impl Default for PurgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PurgeMetrics {
    pub fn new() -> PurgeMetrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let accepted = counter(
            "steerd_purges_accepted_total",
            "Purges accepted (stored), by priority.",
            &["priority"],
        );
        let api_calls = counter(
            "steerd_purge_api_calls_total",
            "Requests sent to a CDN's purge API (polls aside), by target and result.",
            &["target", "result"],
        );
        let items = counter(
            "steerd_purge_items_total",
            "Items of finished purges, by target and outcome (confirmed, failed).",
            &["target", "state"],
        );
        let sla_missed = counter(
            "steerd_purge_sla_missed_total",
            "Purges a CDN confirmed later than their priority's SLA.",
            &["target", "priority"],
        );
        let deduped = counter(
            "steerd_purge_deduplicated_items_total",
            "Items folded into one already queued for the same CDN (one purge sent for both).",
            &["target"],
        );
        let completion = HistogramVec::new(
            HistogramOpts::new(
                "steerd_purge_completion_seconds",
                "From a purge's acceptance to its confirmation by one CDN.",
            )
            .buckets(COMPLETION_BUCKETS.to_vec()),
            &["target", "priority"],
        )
        .expect("metric");
        registry
            .register(Box::new(completion.clone()))
            .expect("unique");
        let queued = IntGaugeVec::new(
            Opts::new(
                "steerd_purge_queued_items",
                "Items waiting in a CDN worker's queue (after dedupe).",
            ),
            &["target"],
        )
        .expect("metric");
        registry.register(Box::new(queued.clone())).expect("unique");
        PurgeMetrics {
            registry,
            accepted,
            api_calls,
            items,
            completion,
            sla_missed,
            deduped,
            queued,
        }
    }

    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}
