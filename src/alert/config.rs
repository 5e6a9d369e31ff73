//! `[alerts]` in the configuration file. STUB.

use serde::Deserialize;

use crate::config::ConfigIssue;

/// `[alerts]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Webhook,
    Slack,
    PagerDuty,
    Alertmanager,
}

/// One validated sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
}

/// Validated `[alerts]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertSettings {
    pub sinks: Vec<SinkSpec>,
}

/// Check `[alerts]`; field paths start with `alerts.` (e.g. `alerts.sinks[1].url`).
pub fn validate(cfg: &AlertsConfig) -> Result<AlertSettings, Vec<ConfigIssue>> {
    let _ = cfg;
    Ok(AlertSettings::default())
}
