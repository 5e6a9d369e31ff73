//! `[alerts]`: the node name, queue and retry settings, and each sink (kind, URL, secrets,
//! headers, the events it takes). Field paths start with `alerts.` (`alerts.sinks[1].url`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::issues::{Issues, env_secret};
use crate::config::schema::{AlertsConfig, SinkConfig};
use crate::config::valid::{
    ALERTMANAGER_PATH, AlertSettings, DEFAULT_MAX_AGE, DEFAULT_QUEUE, DEFAULT_RESEND,
    DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX, DEFAULT_SINK_TIMEOUT, PAGERDUTY_URL, SinkKind,
    SinkSpec, hostname, redact_url,
};
use crate::events::{AlertAction, EventKind, Severity};

const MAX_QUEUE: usize = 1_000_000;
const MAX_SINK_TIMEOUT: f64 = 120.0;

/// `[alerts]`.
pub(super) fn validate(a: &AlertsConfig, issues: &mut Issues) -> AlertSettings {
    let node = match &a.node {
        Some(n) if n.trim().is_empty() => {
            issues.push("alerts.node", "is empty (omit it to use the host name)");
            hostname()
        }
        Some(n) => n.trim().to_string(),
        None => hostname(),
    };
    let queue = match a.queue {
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
    let max_age = seconds(issues, "alerts.max_age", a.max_age, DEFAULT_MAX_AGE, None);
    let retry_initial = seconds(
        issues,
        "alerts.retry_initial",
        a.retry_initial,
        DEFAULT_RETRY_INITIAL,
        Some(3600.0),
    );
    let retry_max = seconds(
        issues,
        "alerts.retry_max",
        a.retry_max,
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

    let mut sinks = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in a.sinks.iter().enumerate() {
        if let Some(sink) = sink(i, s, &mut names, issues) {
            sinks.push(sink);
        }
    }
    AlertSettings {
        node,
        queue,
        max_age,
        retry_initial,
        retry_max,
        sinks,
    }
}

/// `alerts.sinks[i]`, its name unique among `names`; None when it has issues.
fn sink<'a>(
    i: usize,
    s: &'a SinkConfig,
    names: &mut BTreeMap<&'a str, usize>,
    issues: &mut Issues,
) -> Option<SinkSpec> {
    let f = format!("alerts.sinks[{i}]");
    let f = f.as_str();
    let before = issues.len();
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
    let url = url(s, f, kind, issues);
    let routing_key = routing_key(s, f, kind, issues);
    let headers = headers(s, f, issues);
    let events = events(s, f, kind, issues);
    let min_severity = match &s.min_severity {
        None => Severity::Info,
        Some(v) => Severity::parse(v).unwrap_or_else(|| {
            issues.push(
                format!("{f}.min_severity"),
                format!("unknown severity \"{v}\": must be one of info, warning, critical"),
            );
            Severity::Info
        }),
    };
    let timeout = seconds(
        issues,
        &format!("{f}.timeout"),
        s.timeout,
        DEFAULT_SINK_TIMEOUT,
        Some(MAX_SINK_TIMEOUT),
    );
    let resend = if s.resend.is_some() && kind.is_some_and(|k| k != SinkKind::Alertmanager) {
        issues.push(
            format!("{f}.resend"),
            "only alertmanager sinks re-send firing alerts",
        );
        Duration::from_secs_f64(DEFAULT_RESEND)
    } else {
        seconds(
            issues,
            &format!("{f}.resend"),
            s.resend,
            DEFAULT_RESEND,
            Some(86400.0),
        )
    };
    let kind = kind.filter(|_| issues.len() == before)?;
    Some(SinkSpec {
        name: s.name.clone(),
        kind,
        url,
        routing_key: routing_key.filter(|_| kind == SinkKind::PagerDuty),
        headers,
        events,
        min_severity,
        timeout,
        resend,
    })
}

/// A number of seconds in `(0, max]` (`max` None: unbounded); `default` when unset or wrong.
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

/// A literal secret (`key`) or one read from an environment variable (`key_env`).
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
        (None, Some(var)) => env_secret(var, format!("{f}.{key}_env"), issues),
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

/// The URL every request goes to (Alertmanager: with its alerts path; PagerDuty: its
/// default endpoint when none is set).
fn url(s: &SinkConfig, f: &str, kind: Option<SinkKind>, issues: &mut Issues) -> String {
    let url = secret(issues, f, "url", &s.url, &s.url_env);
    let url_field = if s.url_env.is_some() && s.url.is_none() {
        format!("{f}.url_env")
    } else {
        format!("{f}.url")
    };
    match (url, kind) {
        (Some(u), Some(k)) => {
            if !check_url(issues, &url_field, &u) {
                String::new()
            } else if k == SinkKind::Alertmanager {
                let base = u.trim_end_matches('/');
                if base.ends_with(ALERTMANAGER_PATH) {
                    base.to_string()
                } else {
                    format!("{base}{ALERTMANAGER_PATH}")
                }
            } else {
                u
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
    }
}

/// The PagerDuty integration key: needed by pagerduty sinks, taken by no other.
fn routing_key(
    s: &SinkConfig,
    f: &str,
    kind: Option<SinkKind>,
    issues: &mut Issues,
) -> Option<String> {
    let routing_key = secret(issues, f, "routing_key", &s.routing_key, &s.routing_key_env);
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
    routing_key
}

/// Extra headers: valid, and none that steerd sets itself.
fn headers(s: &SinkConfig, f: &str, issues: &mut Issues) -> Vec<(String, String)> {
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
    headers
}

/// The event kinds the sink takes (default: every kind it can take); a trigger brings the
/// resolves of its alert family.
fn events(s: &SinkConfig, f: &str, kind: Option<SinkKind>, issues: &mut Issues) -> Vec<EventKind> {
    let Some(list) = &s.events else {
        return EventKind::ALL
            .into_iter()
            .filter(|e| kind.is_none_or(|k| k.takes_info()) || e.action() != AlertAction::Info)
            .collect();
    };
    if list.is_empty() {
        issues.push(
            format!("{f}.events"),
            "is empty: omit `events` to get every kind",
        );
        return Vec::new();
    }
    let mut events: Vec<EventKind> = Vec::new();
    for (j, name) in list.iter().enumerate() {
        match EventKind::parse(name) {
            None => issues.push(
                format!("{f}.events[{j}]"),
                format!(
                    "unknown event kind \"{name}\": must be one of {}",
                    EventKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(ek)
                if ek.action() == AlertAction::Info && kind.is_some_and(|k| !k.takes_info()) =>
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
    // A trigger brings the resolves of its alert family, so what was opened is closed.
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
    events
}

#[cfg(test)]
mod tests;
