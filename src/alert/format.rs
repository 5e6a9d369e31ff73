//! Payloads of the four sink formats, built from one [`Event`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::events::{AlertAction, Event, Severity};

fn action_str(a: AlertAction) -> &'static str {
    match a {
        AlertAction::Trigger => "trigger",
        AlertAction::Resolve => "resolve",
        AlertAction::Info => "info",
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Cut `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The event's summary, or a stand-in when it has none.
fn summary(ev: &Event) -> String {
    if ev.summary.trim().is_empty() {
        if ev.subject.is_empty() {
            ev.kind.as_str().to_string()
        } else {
            format!("{}: {}", ev.subject, ev.kind)
        }
    } else {
        ev.summary.clone()
    }
}

/// "healthy → down", when the event is a change of state.
fn transition(ev: &Event) -> Option<String> {
    match (&ev.from, &ev.to) {
        (Some(f), Some(t)) => Some(format!("{f} → {t}")),
        (None, Some(t)) => Some(format!("→ {t}")),
        (Some(f), None) => Some(format!("{f} →")),
        (None, None) => None,
    }
}

/// Generic webhook: the event as one JSON object.
pub fn webhook(ev: &Event, node: &str) -> Value {
    json!({
        "id": ev.id,
        "time": ev.time_rfc3339(),
        "kind": ev.kind.as_str(),
        "action": action_str(ev.kind.action()),
        "severity": ev.severity.as_str(),
        "subject_kind": ev.subject_kind,
        "subject": ev.subject,
        "summary": ev.summary,
        "from": ev.from,
        "to": ev.to,
        "dedup_key": ev.dedup_key(),
        "node": node,
    })
}

/// Slack's mrkdwn escapes.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Emoji and attachment colour of an event.
fn slack_style(ev: &Event) -> (&'static str, &'static str) {
    match (ev.kind.action(), ev.severity) {
        (AlertAction::Trigger, Severity::Critical) => (":red_circle:", "#d32f2f"),
        (AlertAction::Trigger, Severity::Warning) => (":large_orange_circle:", "#f57c00"),
        (AlertAction::Trigger, Severity::Info) => (":large_yellow_circle:", "#fbc02d"),
        (AlertAction::Resolve, _) => (":large_green_circle:", "#2e7d32"),
        (AlertAction::Info, _) => (":information_source:", "#1976d2"),
    }
}

/// Slack incoming webhook (also taken by Mattermost and Rocket.Chat): a `text` line with an
/// emoji per action and severity, and one attachment, coloured the same way, with the details.
pub fn slack(ev: &Event, node: &str) -> Value {
    let (emoji, color) = slack_style(ev);
    let kind = ev.kind.as_str().to_uppercase().replace('_', " ");
    let subject = if ev.subject.is_empty() {
        String::new()
    } else {
        format!(" {} `{}`", ev.subject_kind, slack_escape(&ev.subject))
    };
    let text = format!(
        "{emoji} *{kind}*{subject}: {} [{}]",
        slack_escape(&summary(ev)),
        slack_escape(node)
    );
    let mut fields = vec![
        json!({"title": "Severity", "value": ev.severity.as_str(), "short": true}),
        json!({"title": "Node", "value": slack_escape(node), "short": true}),
    ];
    if let Some(t) = transition(ev) {
        fields.push(json!({"title": "State", "value": slack_escape(&t), "short": true}));
    }
    fields.push(json!({"title": "Time", "value": ev.time_rfc3339(), "short": true}));
    if ev.kind.action() != AlertAction::Info {
        fields.push(
            json!({"title": "Dedup key", "value": slack_escape(&ev.dedup_key()), "short": false}),
        );
    }
    json!({
        "text": text,
        "attachments": [{
            "color": color,
            "fallback": format!("{kind}{}: {}", subject.replace('`', ""), summary(ev)),
            "fields": fields,
            "footer": "steerd",
            "ts": ev.at_ms / 1000,
        }],
    })
}

/// PagerDuty Events API v2. Triggers carry the payload; resolves only the routing key, the
/// action and the dedup key. Informational events are not sent (None).
pub fn pagerduty(ev: &Event, node: &str, routing_key: &str) -> Option<Value> {
    let dedup_key = ev.dedup_key();
    let dedup_key = truncate(&dedup_key, 255);
    match ev.kind.action() {
        AlertAction::Info => None,
        AlertAction::Resolve => Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })),
        AlertAction::Trigger => Some(json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "steerd",
            "payload": {
                "summary": truncate(&summary(ev), 1024),
                "source": node,
                "severity": ev.severity.as_str(),
                "timestamp": ev.time_rfc3339(),
                "component": ev.subject,
                "group": ev.subject_kind,
                "class": ev.kind.as_str(),
                "custom_details": {
                    "event_id": ev.id,
                    "kind": ev.kind.as_str(),
                    "subject_kind": ev.subject_kind,
                    "subject": ev.subject,
                    "from": ev.from,
                    "to": ev.to,
                    "summary": ev.summary,
                    "node": node,
                },
            },
        })),
    }
}

/// Alertmanager `alertname` of an event's alert family.
pub fn alertname(ev: &Event) -> &'static str {
    match ev.kind.family() {
        "target-health" => "SteerdTargetHealth",
        "all-down" => "SteerdAllDown",
        "cost-cap" => "SteerdCostCap",
        "cert" => "SteerdCert",
        "cdn-stale" => "SteerdCdnStale",
        _ => "SteerdInfo",
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// One alert as Alertmanager knows it: the labels identify it.
#[derive(Debug, Clone, PartialEq)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
}

impl AmAlert {
    fn from_event(ev: &Event, node: &str, severity: Severity) -> AmAlert {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), alertname(ev).to_string());
        labels.insert("severity".to_string(), severity.as_str().to_string());
        labels.insert("node".to_string(), node.to_string());
        if !ev.subject.is_empty() && valid_label_name(ev.subject_kind) {
            labels.insert(ev.subject_kind.to_string(), ev.subject.clone());
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), summary(ev));
        let mut description = format!("{} of {} {}", ev.kind, ev.subject_kind, ev.subject);
        if let Some(t) = transition(ev) {
            description.push_str(&format!(" ({t})"));
        }
        description.push_str(&format!(" on {node} at {}", ev.time_rfc3339()));
        annotations.insert("description".to_string(), description);
        annotations.insert("dedup_key".to_string(), ev.dedup_key());
        AmAlert {
            labels,
            annotations,
            starts_at: ev.time_rfc3339(),
        }
    }

    /// The alert as posted, ending at `ends_at`: firing while that is ahead.
    fn firing(&self, ends_at: &str) -> Value {
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": ends_at,
        })
    }

    /// The alert ended at `ends_at` (not before it started: Alertmanager rejects that).
    fn resolved(&self, ends_at: &str) -> Value {
        self.firing(ends_at.max(self.starts_at.as_str()))
    }
}

/// What to change in [`AmState`] once a post was accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum AmChange {
    Set(String, AmAlert),
    Remove(String),
}

/// The alerts a sink has open in Alertmanager, by dedup key: a resolve ends exactly the alert
/// (labels) its trigger opened, and the firing alerts are re-sent every `resend` (Alertmanager
/// resolves an alert that is not re-sent before its `endsAt`).
#[derive(Debug, Default)]
pub struct AmState {
    active: HashMap<String, AmAlert>,
}

impl AmState {
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Alerts firing.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// The body to post for `ev` and the change to make once it is accepted; None for
    /// informational events.
    pub fn render(
        &self,
        ev: &Event,
        node: &str,
        now: SystemTime,
        resend: Duration,
    ) -> Option<(Value, AmChange)> {
        let key = ev.dedup_key();
        let ev_time = ev.time_rfc3339();
        match ev.kind.action() {
            AlertAction::Info => None,
            AlertAction::Trigger => {
                let mut alert = AmAlert::from_event(ev, node, ev.severity);
                let mut body = Vec::new();
                match self.active.get(&key) {
                    // Still the same alert: keep when it started.
                    Some(open) if open.labels == alert.labels => {
                        alert.starts_at = open.starts_at.clone();
                    }
                    // Another severity (another alert for Alertmanager): end the old one.
                    Some(open) => body.push(open.resolved(&ev_time)),
                    None => {}
                }
                body.insert(0, alert.firing(&rfc3339(now + resend * 4)));
                Some((Value::Array(body), AmChange::Set(key, alert)))
            }
            AlertAction::Resolve => {
                let body = match self.active.get(&key) {
                    Some(open) => vec![open.resolved(&ev_time)],
                    // Not opened by this process (restarted?): end it at every severity.
                    None => [Severity::Info, Severity::Warning, Severity::Critical]
                        .into_iter()
                        .map(|sev| {
                            let mut a = AmAlert::from_event(ev, node, sev);
                            a.starts_at = ev_time.clone();
                            a.resolved(&ev_time)
                        })
                        .collect(),
                };
                Some((Value::Array(body), AmChange::Remove(key)))
            }
        }
    }

    pub fn apply(&mut self, change: AmChange) {
        match change {
            AmChange::Set(k, a) => {
                self.active.insert(k, a);
            }
            AmChange::Remove(k) => {
                self.active.remove(&k);
            }
        }
    }

    /// Every open alert, firing until now + 4 × `resend`.
    pub fn refresh(&self, now: SystemTime, resend: Duration) -> Value {
        let ends_at = rfc3339(now + resend * 4);
        let mut keys: Vec<&String> = self.active.keys().collect();
        keys.sort();
        Value::Array(
            keys.into_iter()
                .map(|k| self.active[k].firing(&ends_at))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn ev(kind: EventKind, severity: Severity, at_ms: u64) -> Event {
        Event {
            id: 7,
            at_ms,
            kind,
            severity,
            subject_kind: "target",
            subject: "cdn-a".into(),
            summary: "cdn-a: healthy -> down <x> & y".into(),
            from: Some("healthy".into()),
            to: Some("down".into()),
        }
    }

    #[test]
    fn webhook_fields() {
        let v = webhook(
            &ev(EventKind::Failover, Severity::Critical, 1_700_000_000_000),
            "n1",
        );
        assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["action"], "trigger");
        assert_eq!(v["dedup_key"], "steerd/target-health/target/cdn-a");
        assert_eq!(v["node"], "n1");
        assert_eq!(v["from"], "healthy");
    }

    #[test]
    fn slack_escapes_and_styles() {
        let v = slack(&ev(EventKind::Failover, Severity::Critical, 0), "n1");
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with(":red_circle: *FAILOVER* target `cdn-a`: "));
        assert!(text.contains("&lt;x&gt; &amp; y"), "{text}");
        let v = slack(&ev(EventKind::Recovery, Severity::Info, 0), "n1");
        assert_eq!(v["attachments"][0]["color"], "#2e7d32");
    }

    #[test]
    fn pagerduty_shapes() {
        let t = pagerduty(&ev(EventKind::Degraded, Severity::Warning, 0), "n1", "rk").unwrap();
        assert_eq!(t["payload"]["severity"], "warning");
        assert_eq!(t["payload"]["source"], "n1");
        let r = pagerduty(&ev(EventKind::Recovery, Severity::Info, 0), "n1", "rk").unwrap();
        assert_eq!(r.as_object().unwrap().len(), 3);
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert!(pagerduty(&ev(EventKind::Override, Severity::Info, 0), "n1", "rk").is_none());
    }

    #[test]
    fn alertmanager_tracks_open_alerts() {
        let mut st = AmState::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let resend = Duration::from_secs(60);
        // Event times: T0 is 2023-11-14T22:13:20Z.
        const T0: u64 = 1_700_000_000_000;
        let render = |st: &AmState, kind, severity, at_ms| {
            st.render(&ev(kind, severity, at_ms), "n1", now, resend)
                .unwrap()
        };
        // Degraded (warning), then failover (critical): the warning alert is ended.
        let (b1, c1) = render(&st, EventKind::Degraded, Severity::Warning, T0);
        assert_eq!(b1.as_array().unwrap().len(), 1);
        assert_eq!(b1[0]["labels"]["severity"], "warning");
        assert_eq!(b1[0]["endsAt"], "2023-11-14T22:19:00.000Z");
        st.apply(c1);
        let (b2, c2) = render(&st, EventKind::Failover, Severity::Critical, T0 + 50_000);
        assert_eq!(b2.as_array().unwrap().len(), 2);
        assert_eq!(b2[0]["labels"]["severity"], "critical");
        assert_eq!(b2[1]["labels"]["severity"], "warning");
        assert_eq!(b2[1]["endsAt"], "2023-11-14T22:14:10.000Z");
        st.apply(c2);
        assert_eq!(st.refresh(now, resend).as_array().unwrap().len(), 1);
        // The resolve ends the critical one, with its labels.
        let (b3, c3) = render(&st, EventKind::Recovery, Severity::Info, T0 + 90_000);
        assert_eq!(b3.as_array().unwrap().len(), 1);
        assert_eq!(b3[0]["labels"], b2[0]["labels"]);
        assert_eq!(b3[0]["startsAt"], "2023-11-14T22:14:10.000Z");
        assert_eq!(b3[0]["endsAt"], "2023-11-14T22:14:50.000Z");
        st.apply(c3);
        assert!(st.is_empty());
        // A resolve of an alert this process did not open ends every severity.
        let (b4, _) = render(&st, EventKind::Recovery, Severity::Info, T0 + 90_000);
        assert_eq!(b4.as_array().unwrap().len(), 3);
    }
}
