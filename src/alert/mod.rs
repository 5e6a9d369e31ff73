//! Alert sinks: every event goes to the configured sinks (generic JSON webhook, Slack incoming
//! webhook, PagerDuty Events API v2, Alertmanager v2) through a bounded queue per sink with
//! retries and exponential backoff. STUB: interface fixed, implementation pending.

pub mod config;

pub use config::{AlertSettings, AlertsConfig, SinkKind, SinkSpec, validate};

use crate::events::Event;

/// Delivery counters of one sink.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SinkStats {
    pub sink: String,
    pub kind: &'static str,
    /// Events delivered (2xx).
    pub delivered: u64,
    /// Failed delivery attempts (each retry that failed counts once).
    pub failures: u64,
    /// Events given up on (queue full, or retried past `max_age`).
    pub dropped: u64,
    /// Events waiting now.
    pub queued: u64,
}

/// The running sinks. Cheap to clone; `send` never blocks.
#[derive(Clone)]
pub struct Alerter {}

impl Alerter {
    /// Start one delivery task per sink. Must be called inside a tokio runtime.
    pub fn start(settings: &AlertSettings) -> Alerter {
        let _ = settings;
        Alerter {}
    }

    /// Replace the sinks (a config change). Queued events of a sink whose spec is unchanged
    /// (same name and settings) are kept.
    pub fn apply(&self, settings: &AlertSettings) {
        let _ = settings;
    }

    /// Queue an event for every sink that wants it.
    pub fn send(&self, event: &Event) {
        let _ = event;
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        Vec::new()
    }

    /// Stop the delivery tasks (queued events are abandoned and counted as dropped).
    pub fn stop(&self) {}
}
