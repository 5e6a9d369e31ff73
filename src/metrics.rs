//! Prometheus metrics. Counters and histograms that events update as they happen live in
//! [`Metrics`] (one per server); gauges that describe the current state (target health,
//! windows, spend, all-down services) are built from the control plane at scrape time.
//! `GET /metrics` concatenates these with the DNS path's and the alert sinks' collectors.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Counters and histograms updated by the control plane as things happen.
pub struct Metrics {
    registry: Registry,
    pub probe_checks: IntCounterVec,
    pub probe_duration: HistogramVec,
    pub transitions: IntCounterVec,
    pub events: IntCounterVec,
    pub table_swaps: IntCounter,
    pub compile_duration: Histogram,
    pub config_reloads: IntCounterVec,
    pub rum_beacons: IntCounterVec,
    pub observations: IntCounterVec,
    pub admin_requests: IntCounterVec,
    pub observations_refused: IntCounter,
    pub task_panics: IntCounterVec,
}

/// At most this many distinct values of a label that comes from outside (a remote agent's
/// vantage name): later values are counted under [`OTHER`].
pub const MAX_LABEL_VALUES: usize = 64;

/// The label value counted in place of a new one once [`MAX_LABEL_VALUES`] are in use.
pub const OTHER: &str = "other";

/// A label whose values come from untrusted input: the first [`MAX_LABEL_VALUES`] distinct
/// values of accepted items are kept, every later one (and every rejected item's) counts as
/// [`OTHER`], so no input can grow the metric without bound.
#[derive(Default)]
pub struct BoundedLabel {
    seen: parking_lot::Mutex<rustc_hash::FxHashSet<String>>,
}

impl BoundedLabel {
    /// The label value to count `value` under; `accepted` items may claim a new value.
    pub fn label(&self, value: &str, accepted: bool) -> String {
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value.to_string();
        }
        if accepted && seen.len() < MAX_LABEL_VALUES {
            seen.insert(value.to_string());
            return value.to_string();
        }
        OTHER.to_string()
    }
}

/// An HTTP method as a label: the methods the admin API serves, else [`OTHER`].
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => OTHER,
    }
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let probe_checks = counter_vec(
            &registry,
            "steerd_probe_checks_total",
            "Health-check results per target and level (level check = a run's verdict).",
            &["target", "level", "result"],
        );
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "steerd_probe_duration_seconds",
                "Health-check latency per target and level.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
            ]),
            &["target", "level"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(probe_duration.clone()))
            .expect("unique metric");
        let transitions = counter_vec(
            &registry,
            "steerd_target_transitions_total",
            "Changes of a target's effective health state.",
            &["target", "from", "to"],
        );
        let events = counter_vec(
            &registry,
            "steerd_events_total",
            "Events by kind (failover, recovery, all_down, cost_cap, cert_expiring, ...).",
            &["kind"],
        );
        let table_swaps = IntCounter::new(
            "steerd_table_swaps_total",
            "Routing tables swapped in under the DNS path.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(table_swaps.clone()))
            .expect("unique metric");
        let compile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "steerd_compile_duration_seconds",
                "Time to compile a routing table.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(compile_duration.clone()))
            .expect("unique metric");
        let config_reloads = counter_vec(
            &registry,
            "steerd_config_reloads_total",
            "Configuration loads and API writes applied (ok) or rejected (error).",
            &["result"],
        );
        let rum_beacons = counter_vec(
            &registry,
            "steerd_rum_beacons_total",
            "Real-user beacons accepted per target and result.",
            &["target", "result"],
        );
        let observations = counter_vec(
            &registry,
            "steerd_remote_observations_total",
            "Observations pushed by remote probe agents, per vantage point.",
            &["vantage", "result"],
        );
        let admin_requests = counter_vec(
            &registry,
            "steerd_admin_requests_total",
            "Admin API requests per route, method and status.",
            &["route", "method", "status"],
        );
        let observations_refused = IntCounter::new(
            "steerd_observations_refused_total",
            "Observations not recorded because they were older than the health windows keep.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(observations_refused.clone()))
            .expect("unique metric");
        let task_panics = counter_vec(
            &registry,
            "steerd_task_panics_total",
            "Control-plane tasks that panicked (logged; the next run goes on).",
            &["task"],
        );
        Self {
            registry,
            observations_refused,
            task_panics,
            probe_checks,
            probe_duration,
            transitions,
            events,
            table_swaps,
            compile_duration,
            config_reloads,
            rum_beacons,
            observations,
            admin_requests,
        }
    }

    /// The families of the counters and histograms above.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A set of gauges built for one scrape.
pub struct Gauges {
    families: Vec<GaugeVec>,
}

impl Gauges {
    pub fn new() -> Self {
        Self {
            families: Vec::new(),
        }
    }

    /// Start a gauge family; returns its index for [`Gauges::set`].
    pub fn family(&mut self, name: &str, help: &str, labels: &[&str]) -> usize {
        self.families
            .push(GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"));
        self.families.len() - 1
    }

    pub fn set(&self, family: usize, labels: &[&str], value: f64) {
        self.families[family].with_label_values(labels).set(value);
    }

    pub fn collect(&self) -> Vec<MetricFamily> {
        self.families
            .iter()
            .flat_map(|f| f.collect())
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

impl Default for Gauges {
    fn default() -> Self {
        Self::new()
    }
}

/// Prometheus text exposition of `families`.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = Vec::new();
    for f in families.iter().filter(|f| !f.get_metric().is_empty()) {
        if let Err(e) = prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            std::slice::from_ref(f),
            &mut out,
        ) {
            tracing::warn!(family = f.name(), "metric family not encoded: {e}");
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_encode() {
        let m = Metrics::new();
        m.events.with_label_values(&["failover"]).inc();
        m.compile_duration.observe(0.002);
        let mut g = Gauges::new();
        let up = g.family("steerd_target_up", "1 when usable", &["target", "role"]);
        g.set(up, &["cdn-a", "edge"], 1.0);
        let mut fams = m.gather();
        fams.extend(g.collect());
        let text = encode(&fams);
        assert!(text.contains("steerd_events_total{kind=\"failover\"} 1"));
        assert!(text.contains("steerd_target_up{role=\"edge\",target=\"cdn-a\"} 1"));
        assert!(text.contains("steerd_compile_duration_seconds_count 1"));
    }
}
