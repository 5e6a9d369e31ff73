use std::time::Duration;

use serde::Deserialize;

use crate::config::issues::{ConfigIssue, Issues};
use crate::config::schema::AlertsConfig;
use crate::config::valid::{AlertSettings, PAGERDUTY_URL};
use crate::events::{EventKind, Severity};

/// `[alerts]` validated alone.
fn validate(a: &AlertsConfig) -> Result<AlertSettings, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    let settings = super::validate(a, &mut issues);
    if issues.is_empty() {
        Ok(settings)
    } else {
        Err(issues.into_vec())
    }
}

fn parse(text: &str) -> AlertsConfig {
    #[derive(Deserialize)]
    struct Wrap {
        alerts: AlertsConfig,
    }
    toml::from_str::<Wrap>(text).expect("toml").alerts
}

fn issues(text: &str) -> Vec<ConfigIssue> {
    validate(&parse(text)).expect_err("should be rejected")
}

fn has(issues: &[ConfigIssue], field: &str, needle: &str) -> bool {
    issues
        .iter()
        .any(|i| i.field == field && i.message.contains(needle))
}

/// A pagerduty sink whose routing key is read from PATH (always set: no need to change the
/// environment of the test process).
const PD_KEY_FROM_PATH: &str = r#"
[alerts]
[[alerts.sinks]]
name = "pd"
kind = "pagerduty"
routing_key_env = "PATH"
"#;

#[test]
fn defaults() {
    let s = validate(&AlertsConfig::default()).unwrap();
    assert_eq!(s.queue, 1000);
    assert_eq!(s.max_age, Duration::from_secs(3600));
    assert_eq!(s.retry_initial, Duration::from_millis(500));
    assert_eq!(s.retry_max, Duration::from_secs(60));
    assert!(!s.node.is_empty());
    assert!(s.sinks.is_empty());
    assert_eq!(AlertSettings::default(), s);
}

#[test]
fn full_sink_set() {
    let s = validate(&parse(
        r#"
[alerts]
node = "n1"
[[alerts.sinks]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/x"
headers = { Authorization = "Bearer abc" }
[[alerts.sinks]]
name = "pd"
kind = "pagerduty"
routing_key = "0123456789abcdef0123456789abcdef"
events = ["failover", "all_down"]
min_severity = "critical"
[[alerts.sinks]]
name = "am"
kind = "alertmanager"
url = "http://am:9093/"
"#,
    ))
    .unwrap();
    assert_eq!(s.node, "n1");
    let pd = &s.sinks[1];
    assert_eq!(pd.url, PAGERDUTY_URL);
    // Resolve kinds of the wanted triggers come along.
    assert_eq!(
        pd.events,
        vec![
            EventKind::Failover,
            EventKind::Recovery,
            EventKind::AllDown,
            EventKind::AllDownRecovered
        ]
    );
    assert!(pd.wants(EventKind::Recovery, Severity::Info));
    assert!(!pd.wants(EventKind::Failover, Severity::Warning));
    assert!(!format!("{pd:?}").contains("0123456789abcdef"));
    assert_eq!(s.sinks[2].url, "http://am:9093/api/v2/alerts");
    assert!(!s.sinks[2].wants(EventKind::ConfigChanged, Severity::Critical));
    assert!(s.sinks[0].wants(EventKind::ConfigChanged, Severity::Info));
    assert!(!format!("{:?}", s.sinks[0]).contains("abc"));
}

#[test]
fn rejects_with_field_paths() {
    let i = issues(
        r#"
[alerts]
queue = 0
retry_initial = 2
retry_max = 1
[[alerts.sinks]]
name = "a"
kind = "webhook"
url = "ftp://x/y"
[[alerts.sinks]]
name = "a"
kind = "pagerduty"
events = ["failover", "nope", "override"]
[[alerts.sinks]]
name = "b c"
kind = "teams"
[[alerts.sinks]]
name = "d"
kind = "slack"
routing_key = "k"
timeout = 0
headers = { "Bad Header" = "x" }
"#,
    );
    assert!(has(&i, "alerts.queue", "between 1 and"), "{i:?}");
    assert!(has(&i, "alerts.retry_max", "retry_initial"), "{i:?}");
    assert!(has(
        &i,
        "alerts.sinks[0].url",
        "scheme must be http or https"
    ));
    assert!(has(&i, "alerts.sinks[1].name", "duplicate sink name"));
    assert!(has(&i, "alerts.sinks[1].routing_key", "missing"));
    assert!(has(&i, "alerts.sinks[1].events[1]", "failover, recovery"));
    assert!(has(&i, "alerts.sinks[1].events[2]", "informational"));
    assert!(has(&i, "alerts.sinks[2].name", "not a valid sink name"));
    assert!(has(&i, "alerts.sinks[2].kind", "webhook, slack"));
    assert!(has(&i, "alerts.sinks[3].url", "missing"));
    assert!(has(&i, "alerts.sinks[3].routing_key", "only pagerduty"));
    assert!(has(&i, "alerts.sinks[3].timeout", "greater than 0"));
    assert!(has(&i, "alerts.sinks[3].headers.Bad Header", "header name"));
}

#[test]
fn env_secrets() {
    let path = std::env::var("PATH").unwrap();
    let s = validate(&parse(&format!(
        r#"{PD_KEY_FROM_PATH}
[[alerts.sinks]]
name = "sl"
kind = "slack"
url_env = "STEERD_TEST_ALERT_SURELY_UNSET_VAR"
"#
    )));
    let i = s.expect_err("unset env");
    assert!(has(&i, "alerts.sinks[1].url_env", "not set"), "{i:?}");
    assert_eq!(i.len(), 1, "{i:?}");
    let s = validate(&parse(PD_KEY_FROM_PATH)).unwrap();
    assert_eq!(s.sinks[0].routing_key.as_deref(), Some(path.trim()));
}
