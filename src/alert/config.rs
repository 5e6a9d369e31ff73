//! `[alerts]` in the configuration file: the raw schema ([`AlertsConfig`]), its validation
//! ([`validate`]) and the validated form ([`AlertSettings`]) the [`super::Alerter`] runs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigIssue;
use crate::events::{AlertAction, EventKind, Severity};

/// Default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Path Alertmanager v2 takes alerts on, appended to a sink's base URL.
pub const ALERTMANAGER_PATH: &str = "/api/v2/alerts";

pub const DEFAULT_QUEUE: usize = 1000;
pub const MAX_QUEUE: usize = 1_000_000;
pub const DEFAULT_MAX_AGE: f64 = 3600.0;
pub const DEFAULT_RETRY_INITIAL: f64 = 0.5;
pub const DEFAULT_RETRY_MAX: f64 = 60.0;
pub const DEFAULT_TIMEOUT: f64 = 5.0;
pub const MAX_TIMEOUT: f64 = 120.0;
pub const DEFAULT_RESEND: f64 = 60.0;

/// `[alerts]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Name of this node in every payload (default: the host name).
    pub node: Option<String>,
    /// Events waiting per sink before the oldest is dropped (default 1000).
    pub queue: Option<usize>,
    /// Seconds an undelivered event keeps being retried before it is dropped (default 3600).
    pub max_age: Option<f64>,
    /// First retry delay, seconds (default 0.5); doubles after every failed attempt.
    pub retry_initial: Option<f64>,
    /// Longest retry delay, seconds (default 60).
    pub retry_max: Option<f64>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// `[[alerts.sinks]]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(default)]
    pub name: String,
    /// "webhook", "slack", "pagerduty" or "alertmanager".
    #[serde(default)]
    pub kind: String,
    pub url: Option<String>,
    /// Read the URL from this environment variable instead (Slack webhook URLs are secrets).
    pub url_env: Option<String>,
    /// PagerDuty integration key.
    pub routing_key: Option<String>,
    pub routing_key_env: Option<String>,
    /// Extra HTTP headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Event kinds this sink gets (default: every kind it can take).
    pub events: Option<Vec<String>>,
    /// Least severity of a trigger or informational event sent (default "info"). Resolves
    /// always pass.
    pub min_severity: Option<String>,
    /// Seconds one delivery attempt may take (default 5).
    pub timeout: Option<f64>,
    /// Alertmanager only: seconds between two re-sends of the firing alerts (default 60).
    pub resend: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkKind {
    Webhook,
    Slack,
    PagerDuty,
    Alertmanager,
}

impl SinkKind {
    pub const ALL: [SinkKind; 4] = [
        SinkKind::Webhook,
        SinkKind::Slack,
        SinkKind::PagerDuty,
        SinkKind::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::PagerDuty => "pagerduty",
            SinkKind::Alertmanager => "alertmanager",
        }
    }

    pub fn parse(s: &str) -> Option<SinkKind> {
        SinkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the sink takes informational events (override, config_changed): PagerDuty and
    /// Alertmanager only take alerts that open and close.
    pub fn takes_info(self) -> bool {
        matches!(self, SinkKind::Webhook | SinkKind::Slack)
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated sink.
#[derive(Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    /// The URL every request is POSTed to (Alertmanager: with `/api/v2/alerts`).
    pub url: String,
    /// PagerDuty integration key (None for the other kinds).
    pub routing_key: Option<String>,
    /// Extra headers, validated as HTTP header names and values.
    pub headers: Vec<(String, String)>,
    /// Kinds this sink gets, resolve kinds of every wanted trigger included.
    pub events: Vec<EventKind>,
    pub min_severity: Severity,
    pub timeout: Duration,
    /// Alertmanager: interval of the re-sends of firing alerts; firing alerts carry
    /// `endsAt` = now + 4 × this.
    pub resend: Duration,
}

impl SinkSpec {
    /// Whether this sink gets `kind` at `severity`.
    pub fn wants(&self, kind: EventKind, severity: Severity) -> bool {
        let action = kind.action();
        if action == AlertAction::Info && !self.kind.takes_info() {
            return false;
        }
        if !self.events.contains(&kind) {
            return false;
        }
        action == AlertAction::Resolve || severity >= self.min_severity
    }

    /// The URL without credentials, query or (for Slack, whose path is the secret) path.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url, self.kind == SinkKind::Slack)
    }
}

/// Secrets (routing key, header values, Slack webhook path) are not printed.
impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.redacted_url())
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<secret>"),
            )
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| format!("{k}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .field("min_severity", &self.min_severity)
            .field("timeout", &self.timeout)
            .field("resend", &self.resend)
            .finish()
    }
}

pub(crate) fn redact_url(url: &str, hide_path: bool) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(p) = u.port() {
                out.push_str(&format!(":{p}"));
            }
            if hide_path {
                out.push_str("/…");
            } else {
                out.push_str(u.path());
            }
            out
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Validated `[alerts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// This node's name in every payload.
    pub node: String,
    /// Events waiting per sink (besides the one being delivered) before the oldest is dropped.
    pub queue: usize,
    /// How long an undelivered event keeps being retried, from when it was queued.
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub sinks: Vec<SinkSpec>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            node: hostname(),
            queue: DEFAULT_QUEUE,
            max_age: Duration::from_secs_f64(DEFAULT_MAX_AGE),
            retry_initial: Duration::from_secs_f64(DEFAULT_RETRY_INITIAL),
            retry_max: Duration::from_secs_f64(DEFAULT_RETRY_MAX),
            sinks: Vec::new(),
        }
    }
}

/// The host name, or "steerd" when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !name.is_empty() {
            return name;
        }
    }
    "steerd".into()
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            field: field.into(),
            line: None,
            message: message.into(),
        });
    }
}

/// A number of seconds in `(0, max]` (`max` None: unbounded).
fn seconds(
    issues: &mut Issues,
    field: &str,
    value: Option<f64>,
    default: f64,
    max: Option<f64>,
) -> Duration {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 {
        issues.push(
            field,
            format!("must be a number of seconds greater than 0 (got {v})"),
        );
        return Duration::from_secs_f64(default);
    }
    if let Some(max) = max
        && v > max
    {
        issues.push(field, format!("must be at most {max} seconds (got {v})"));
        return Duration::from_secs_f64(default);
    }
    // Bounded so Duration arithmetic never overflows (about 31 years).
    Duration::from_secs_f64(v.min(1e9))
}

/// A literal secret or one read from an environment variable.
fn secret(
    issues: &mut Issues,
    f: &str,
    key: &str,
    literal: &Option<String>,
    env: &Option<String>,
) -> Option<String> {
    match (literal, env) {
        (Some(v), None) => {
            if v.trim().is_empty() {
                issues.push(format!("{f}.{key}"), "is empty");
                None
            } else {
                Some(v.trim().to_string())
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => {
                issues.push(
                    format!("{f}.{key}_env"),
                    format!("environment variable {var} is not set (or empty)"),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            issues.push(
                f.to_string(),
                format!("set only one of `{key}` and `{key}_env`"),
            );
            None
        }
        (None, None) => None,
    }
}

fn check_url(issues: &mut Issues, field: &str, url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
            issues.push(
                field,
                format!(
                    "URL scheme must be http or https (got \"{}\" in \"{}\")",
                    u.scheme(),
                    redact_url(url, true)
                ),
            );
            false
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            issues.push(field, "URL has no host");
            false
        }
        Ok(_) => true,
        Err(e) => {
            issues.push(field, format!("not a valid URL: {e}"));
            false
        }
    }
}

fn valid_sink_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Check `[alerts]`; field paths start with `alerts.` (e.g. `alerts.sinks[1].url`).
pub fn validate(cfg: &AlertsConfig) -> Result<AlertSettings, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());

    let node = match &cfg.node {
        Some(n) if n.trim().is_empty() => {
            issues.push("alerts.node", "is empty (omit it to use the host name)");
            hostname()
        }
        Some(n) => n.trim().to_string(),
        None => hostname(),
    };
    let queue = match cfg.queue {
        None => DEFAULT_QUEUE,
        Some(q) if (1..=MAX_QUEUE).contains(&q) => q,
        Some(q) => {
            issues.push(
                "alerts.queue",
                format!("must be between 1 and {MAX_QUEUE} events (got {q})"),
            );
            DEFAULT_QUEUE
        }
    };
    let max_age = seconds(
        &mut issues,
        "alerts.max_age",
        cfg.max_age,
        DEFAULT_MAX_AGE,
        None,
    );
    let retry_initial = seconds(
        &mut issues,
        "alerts.retry_initial",
        cfg.retry_initial,
        DEFAULT_RETRY_INITIAL,
        Some(3600.0),
    );
    let retry_max = seconds(
        &mut issues,
        "alerts.retry_max",
        cfg.retry_max,
        DEFAULT_RETRY_MAX.max(retry_initial.as_secs_f64()),
        Some(86400.0),
    );
    if retry_max < retry_initial {
        issues.push(
            "alerts.retry_max",
            format!(
                "must not be less than retry_initial ({} s < {} s)",
                retry_max.as_secs_f64(),
                retry_initial.as_secs_f64()
            ),
        );
    }

    let valid_kinds = || {
        EventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let mut sinks = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in cfg.sinks.iter().enumerate() {
        let f = format!("alerts.sinks[{i}]");
        let before = issues.0.len();

        if !valid_sink_name(&s.name) {
            issues.push(
                format!("{f}.name"),
                format!(
                    "\"{}\" is not a valid sink name: 1 to 64 letters, digits, '_', '-' or '.'",
                    s.name
                ),
            );
        } else if let Some(first) = names.insert(s.name.as_str(), i) {
            issues.push(
                format!("{f}.name"),
                format!(
                    "duplicate sink name \"{}\" (also alerts.sinks[{first}])",
                    s.name
                ),
            );
        }

        let kind = SinkKind::parse(&s.kind);
        if kind.is_none() {
            issues.push(
                format!("{f}.kind"),
                format!(
                    "unknown sink kind \"{}\": must be one of webhook, slack, pagerduty, \
                     alertmanager",
                    s.kind
                ),
            );
        }

        // URL.
        let url = secret(&mut issues, &f, "url", &s.url, &s.url_env);
        let url_field = if s.url_env.is_some() && s.url.is_none() {
            format!("{f}.url_env")
        } else {
            format!("{f}.url")
        };
        let url = match (url, kind) {
            (Some(u), Some(k)) => {
                if check_url(&mut issues, &url_field, &u) {
                    if k == SinkKind::Alertmanager {
                        let base = u.trim_end_matches('/');
                        if base.ends_with(ALERTMANAGER_PATH) {
                            base.to_string()
                        } else {
                            format!("{base}{ALERTMANAGER_PATH}")
                        }
                    } else {
                        u
                    }
                } else {
                    String::new()
                }
            }
            (None, Some(SinkKind::PagerDuty)) => PAGERDUTY_URL.to_string(),
            (None, Some(k)) => {
                if s.url_env.is_none() {
                    issues.push(
                        format!("{f}.url"),
                        format!("missing: a {k} sink needs `url` (or `url_env`)"),
                    );
                }
                String::new()
            }
            (_, None) => String::new(),
        };

        // Routing key.
        let routing_key = secret(
            &mut issues,
            &f,
            "routing_key",
            &s.routing_key,
            &s.routing_key_env,
        );
        match kind {
            Some(SinkKind::PagerDuty) => {
                let missing = s.routing_key.is_none() && s.routing_key_env.is_none();
                if missing {
                    issues.push(
                        format!("{f}.routing_key"),
                        "missing: a pagerduty sink needs `routing_key` (or `routing_key_env`), \
                         the integration key of an Events API v2 integration",
                    );
                }
            }
            Some(k) if s.routing_key.is_some() || s.routing_key_env.is_some() => {
                let key = if s.routing_key.is_some() {
                    "routing_key"
                } else {
                    "routing_key_env"
                };
                issues.push(
                    format!("{f}.{key}"),
                    format!("only pagerduty sinks take a routing key (this one is {k})"),
                );
            }
            _ => {}
        }

        // Headers.
        let mut headers = Vec::new();
        for (name, value) in &s.headers {
            let hf = format!("{f}.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                issues.push(&hf, format!("\"{name}\" is not a valid HTTP header name"));
                continue;
            }
            if name.eq_ignore_ascii_case("content-type")
                || name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("host")
            {
                issues.push(&hf, format!("{name} is set by steerd"));
                continue;
            }
            if http::HeaderValue::from_str(value).is_err() {
                issues.push(
                    &hf,
                    "not a valid HTTP header value (control characters or non-ASCII)",
                );
                continue;
            }
            headers.push((name.clone(), value.clone()));
        }

        // Events.
        let mut events: Vec<EventKind> = Vec::new();
        match &s.events {
            None => {
                events = EventKind::ALL
                    .into_iter()
                    .filter(|e| {
                        kind.is_none_or(|k| k.takes_info()) || e.action() != AlertAction::Info
                    })
                    .collect();
            }
            Some(list) if list.is_empty() => {
                issues.push(
                    format!("{f}.events"),
                    "is empty: omit `events` to get every kind",
                );
            }
            Some(list) => {
                for (j, name) in list.iter().enumerate() {
                    match EventKind::parse(name) {
                        None => issues.push(
                            format!("{f}.events[{j}]"),
                            format!(
                                "unknown event kind \"{name}\": must be one of {}",
                                valid_kinds()
                            ),
                        ),
                        Some(ek)
                            if ek.action() == AlertAction::Info
                                && kind.is_some_and(|k| !k.takes_info()) =>
                        {
                            issues.push(
                                format!("{f}.events[{j}]"),
                                format!(
                                    "{} sinks do not take informational events ({name}): \
                                     only alerts that open and close",
                                    kind.map(|k| k.as_str()).unwrap_or("")
                                ),
                            )
                        }
                        Some(ek) => {
                            if !events.contains(&ek) {
                                events.push(ek);
                            }
                        }
                    }
                }
                // A trigger brings the resolves of its alert family, so what was opened is
                // closed.
                let families: Vec<&str> = events
                    .iter()
                    .filter(|e| e.action() == AlertAction::Trigger)
                    .map(|e| e.family())
                    .collect();
                for ek in EventKind::ALL {
                    if ek.action() == AlertAction::Resolve
                        && families.contains(&ek.family())
                        && !events.contains(&ek)
                    {
                        events.push(ek);
                    }
                }
                events.sort_by_key(|e| EventKind::ALL.iter().position(|x| x == e));
            }
        }

        let min_severity = match &s.min_severity {
            None => Severity::Info,
            Some(v) => match Severity::parse(v) {
                Some(sev) => sev,
                None => {
                    issues.push(
                        format!("{f}.min_severity"),
                        format!("unknown severity \"{v}\": must be one of info, warning, critical"),
                    );
                    Severity::Info
                }
            },
        };

        let timeout = seconds(
            &mut issues,
            &format!("{f}.timeout"),
            s.timeout,
            DEFAULT_TIMEOUT,
            Some(MAX_TIMEOUT),
        );
        let resend = if s.resend.is_some() && kind.is_some_and(|k| k != SinkKind::Alertmanager) {
            issues.push(
                format!("{f}.resend"),
                "only alertmanager sinks re-send firing alerts",
            );
            Duration::from_secs_f64(DEFAULT_RESEND)
        } else {
            seconds(
                &mut issues,
                &format!("{f}.resend"),
                s.resend,
                DEFAULT_RESEND,
                Some(86400.0),
            )
        };

        if issues.0.len() == before
            && let Some(kind) = kind
        {
            sinks.push(SinkSpec {
                name: s.name.clone(),
                kind,
                url,
                routing_key: if kind == SinkKind::PagerDuty {
                    routing_key
                } else {
                    None
                },
                headers,
                events,
                min_severity,
                timeout,
                resend,
            });
        }
    }

    if issues.0.is_empty() {
        Ok(AlertSettings {
            node,
            queue,
            max_age,
            retry_initial,
            retry_max,
            sinks,
        })
    } else {
        Err(issues.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // PATH is always set: no need to change the environment of the test process.
        let path = std::env::var("PATH").unwrap();
        let s = validate(&parse(
            r#"
[alerts]
[[alerts.sinks]]
name = "pd"
kind = "pagerduty"
routing_key_env = "PATH"
[[alerts.sinks]]
name = "sl"
kind = "slack"
url_env = "STEERD_TEST_ALERT_SURELY_UNSET_VAR"
"#,
        ));
        let i = s.expect_err("unset env");
        assert!(has(&i, "alerts.sinks[1].url_env", "not set"), "{i:?}");
        assert_eq!(i.len(), 1, "{i:?}");
        let s = validate(&parse(
            r#"
[alerts]
[[alerts.sinks]]
name = "pd"
kind = "pagerduty"
routing_key_env = "PATH"
"#,
        ))
        .unwrap();
        assert_eq!(s.sinks[0].routing_key.as_deref(), Some(path.trim()));
    }
}
