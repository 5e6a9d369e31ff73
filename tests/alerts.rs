//! Alert delivery to local HTTP receivers (real sockets on 127.0.0.1): one test per sink format
//! asserting the exact payload, retries after 500s and while the receiver is down, resolves on
//! recovery, queue overflow and expiry counted as drops, hot reconfiguration, validation errors
//! and the Prometheus collector.

mod common;

use std::time::{Duration, SystemTime};

use axum::http::Method;
use common::sinks::{
    HANG, HANG_FOR, Receiver, alerter, alerts, delivered, down, ids, receiver_and_alerter,
    settings, sink, stats, wait_for,
};
use serde_json::{Value, json};
use steerd::events::{Event, EventKind, Severity};

// ---------------------------------------------------------------------------------------------
// Events

const T0: u64 = 1_700_000_000_000;

fn event(id: u64, kind: EventKind, severity: Severity, at_ms: u64) -> Event {
    let (from, to) = match kind.action() {
        steerd::events::AlertAction::Trigger => ("healthy", "down"),
        _ => ("down", "healthy"),
    };
    Event {
        id,
        at_ms,
        kind,
        severity,
        subject_kind: "target",
        subject: "cdn-a".into(),
        summary: format!("cdn-a: {from} -> {to}: error rate 11.7 % > 5 % over 1m"),
        from: Some(from.into()),
        to: Some(to.into()),
    }
}

fn failover(id: u64) -> Event {
    event(id, EventKind::Failover, Severity::Critical, T0 + id * 1000)
}

fn recovery(id: u64) -> Event {
    event(id, EventKind::Recovery, Severity::Info, T0 + id * 1000)
}

fn config_changed(id: u64) -> Event {
    Event {
        id,
        at_ms: T0 + id * 1000,
        kind: EventKind::ConfigChanged,
        severity: Severity::Info,
        subject_kind: "config",
        subject: String::new(),
        summary: "configuration reloaded (version 3)".into(),
        from: None,
        to: None,
    }
}

// ---------------------------------------------------------------------------------------------
// One test per format

#[tokio::test]
async fn webhook_gets_the_event_as_json() {
    let (rx, a) = receiver_and_alerter(
        &[],
        "ops",
        "webhook",
        "/hook",
        "headers = { Authorization = \"Bearer s3cret\", X-Team = \"edge\" }\n",
    )
    .await;
    a.send(&failover(1));
    a.send(&config_changed(2));
    wait_for("2 webhook posts", || rx.count() >= 2).await;
    let reqs = rx.reqs();
    let r = &reqs[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/hook");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["authorization"], "Bearer s3cret");
    assert_eq!(r.headers["x-team"], "edge");
    assert_eq!(
        r.body,
        json!({
            "id": 1,
            "time": "2023-11-14T22:13:21.000Z",
            "kind": "failover",
            "action": "trigger",
            "severity": "critical",
            "subject_kind": "target",
            "subject": "cdn-a",
            "summary": "cdn-a: healthy -> down: error rate 11.7 % > 5 % over 1m",
            "from": "healthy",
            "to": "down",
            "dedup_key": "steerd/target-health/target/cdn-a",
            "node": "steerd-test",
        })
    );
    // Informational events go to webhooks too.
    assert_eq!(reqs[1].body["kind"], "config_changed");
    assert_eq!(reqs[1].body["action"], "info");
    assert_eq!(reqs[1].body["from"], Value::Null);
    wait_for("delivered counted", || stats(&a, "ops").delivered == 2).await;
    let st = stats(&a, "ops");
    assert_eq!(
        (st.kind, st.failures, st.dropped, st.queued),
        ("webhook", 0, 0, 0)
    );
}

#[tokio::test]
async fn slack_gets_a_readable_line_per_event() {
    let (rx, a) = receiver_and_alerter(&[], "chat", "slack", "/services/T000/B000/XXXX", "").await;
    a.send(&failover(1));
    a.send(&recovery(2));
    wait_for("2 slack posts", || rx.count() >= 2).await;
    let reqs = rx.reqs();
    assert_eq!(reqs[0].path, "/services/T000/B000/XXXX");
    let text = reqs[0].body["text"].as_str().unwrap();
    assert_eq!(
        text,
        ":red_circle: *FAILOVER* target `cdn-a`: cdn-a: healthy -&gt; down: error rate 11.7 % \
         &gt; 5 % over 1m [steerd-test]"
    );
    let att = &reqs[0].body["attachments"][0];
    assert_eq!(att["color"], "#d32f2f");
    assert_eq!(att["ts"], 1_700_000_001);
    let fields: Vec<(&str, &str)> = att["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert!(fields.contains(&("Severity", "critical")), "{fields:?}");
    assert!(fields.contains(&("State", "healthy → down")), "{fields:?}");
    assert!(fields.contains(&("Dedup key", "steerd/target-health/target/cdn-a")));
    let text = reqs[1].body["text"].as_str().unwrap();
    assert!(
        text.starts_with(":large_green_circle: *RECOVERY* target `cdn-a`: "),
        "{text}"
    );
    assert_eq!(reqs[1].body["attachments"][0]["color"], "#2e7d32");
}

#[tokio::test]
async fn pagerduty_trigger_then_resolve_with_one_dedup_key() {
    let (rx, a) = receiver_and_alerter(
        &[202, 202],
        "pd",
        "pagerduty",
        "/v2/enqueue",
        "routing_key = \"R0UT1NGKEY0123456789abcdef012345\"\n",
    )
    .await;
    a.send(&failover(1));
    // Informational events are not sent to PagerDuty.
    a.send(&config_changed(2));
    a.send(&recovery(3));
    wait_for("2 pagerduty posts", || rx.count() >= 2).await;
    wait_for("delivered counted", || stats(&a, "pd").delivered == 2).await;
    let reqs = rx.reqs();
    assert_eq!(reqs[0].path, "/v2/enqueue");
    assert_eq!(
        reqs[0].body,
        json!({
            "routing_key": "R0UT1NGKEY0123456789abcdef012345",
            "event_action": "trigger",
            "dedup_key": "steerd/target-health/target/cdn-a",
            "client": "steerd",
            "payload": {
                "summary": "cdn-a: healthy -> down: error rate 11.7 % > 5 % over 1m",
                "source": "steerd-test",
                "severity": "critical",
                "timestamp": "2023-11-14T22:13:21.000Z",
                "component": "cdn-a",
                "group": "target",
                "class": "failover",
                "custom_details": {
                    "event_id": 1,
                    "kind": "failover",
                    "subject_kind": "target",
                    "subject": "cdn-a",
                    "from": "healthy",
                    "to": "down",
                    "summary": "cdn-a: healthy -> down: error rate 11.7 % > 5 % over 1m",
                    "node": "steerd-test",
                },
            },
        })
    );
    assert_eq!(
        reqs[1].body,
        json!({
            "routing_key": "R0UT1NGKEY0123456789abcdef012345",
            "event_action": "resolve",
            "dedup_key": "steerd/target-health/target/cdn-a",
        })
    );
    // Every event reached the sink in order: with its queue empty, nothing more can come.
    wait_for("queue drained", || stats(&a, "pd").queued == 0).await;
    assert_eq!(rx.count(), 2, "the informational event was sent");
}

#[tokio::test]
async fn alertmanager_starts_then_ends_the_same_alert() {
    // A base URL: the sink posts to /api/v2/alerts.
    let (rx, a) = receiver_and_alerter(&[], "am", "alertmanager", "/", "").await;
    a.send(&failover(1));
    a.send(&config_changed(2));
    a.send(&recovery(3));
    wait_for("2 alertmanager posts", || rx.count() >= 2).await;
    let reqs = rx.reqs();
    let labels = json!({
        "alertname": "SteerdTargetHealth",
        "severity": "critical",
        "target": "cdn-a",
        "node": "steerd-test",
    });
    assert!(reqs.iter().all(|r| r.path == "/api/v2/alerts"));
    let firing = reqs[0].body.as_array().unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["labels"], labels);
    assert_eq!(firing[0]["startsAt"], "2023-11-14T22:13:21.000Z");
    assert_eq!(
        firing[0]["annotations"]["summary"],
        "cdn-a: healthy -> down: error rate 11.7 % > 5 % over 1m"
    );
    assert!(
        firing[0]["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("failover of target cdn-a (healthy → down) on steerd-test")
    );
    // Firing: ends in the future (4 × resend), so Alertmanager keeps it until re-sent.
    let ends = humantime::parse_rfc3339(firing[0]["endsAt"].as_str().unwrap()).unwrap();
    assert!(ends > SystemTime::now() + Duration::from_secs(120));
    let resolved = reqs[1].body.as_array().unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["labels"], labels);
    assert_eq!(resolved[0]["startsAt"], "2023-11-14T22:13:21.000Z");
    assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:13:23.000Z");
    // Every event reached the sink in order: with its queue empty, nothing more can come.
    wait_for("queue drained", || stats(&a, "am").queued == 0).await;
    assert_eq!(rx.count(), 2, "the informational event was sent");
}

#[tokio::test]
async fn alertmanager_re_sends_firing_alerts() {
    let (rx, a) = receiver_and_alerter(&[], "am", "alertmanager", "", "resend = 0.05\n").await;
    a.send(&failover(1));
    wait_for("re-sends", || rx.count() >= 3).await;
    // The re-sends follow the delivery (same task), so it is counted by now.
    assert_eq!(stats(&a, "am").delivered, 1, "re-sends are not deliveries");
    let reqs = rx.reqs();
    for r in &reqs[..3] {
        assert_eq!(r.body[0]["labels"]["alertname"], "SteerdTargetHealth");
        assert_eq!(r.body[0]["startsAt"], "2023-11-14T22:13:21.000Z");
    }
    // Once resolved, nothing is re-sent.
    a.send(&recovery(2));
    wait_for("the resolve", || {
        rx.reqs()
            .iter()
            .any(|r| r.body[0]["endsAt"] == "2023-11-14T22:13:22.000Z")
    })
    .await;
    // Counted once the receiver's answer is back, a little after the receiver saw it.
    wait_for("the resolve counted", || stats(&a, "am").delivered == 2).await;
    // Re-sends come only from the firing set: nothing is firing after the resolve.
    wait_for("nothing firing", || stats(&a, "am").firing == 0).await;
    let n = rx.count();
    // A new alert is sent at once; nothing of the resolved one went before it.
    a.send(&failover(3));
    wait_for("the next alert", || stats(&a, "am").delivered == 3).await;
    let next = &rx.reqs()[n];
    assert_eq!(
        next.body[0]["startsAt"], "2023-11-14T22:13:23.000Z",
        "re-sent after the resolve: {:?}",
        next.body
    );
}

// ---------------------------------------------------------------------------------------------
// Retries, outages, drops

#[tokio::test]
async fn retries_after_500_in_order() {
    let (rx, a) = receiver_and_alerter(&[500, 500], "ops", "webhook", "/hook", "").await;
    a.send(&failover(1));
    a.send(&recovery(2));
    wait_for("both delivered", || stats(&a, "ops").delivered == 2).await;
    let st = stats(&a, "ops");
    assert_eq!((st.failures, st.dropped, st.queued), (2, 0, 0));
    // The trigger is retried until accepted; the resolve never overtakes it.
    assert_eq!(ids(&rx.reqs()), vec![1, 1, 1, 2]);
}

#[tokio::test]
async fn retry_after_500_then_delivered_once() {
    let (rx, a) = receiver_and_alerter(
        &[500, 500],
        "pd",
        "pagerduty",
        "/v2/enqueue",
        "routing_key = \"k\"\n",
    )
    .await;
    a.send(&failover(1));
    delivered(&a, "pd", 1).await;
    let st = stats(&a, "pd");
    assert_eq!((st.delivered, st.failures, st.dropped), (1, 2, 0));
    let reqs = rx.reqs();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
}

#[tokio::test]
async fn delivered_once_the_receiver_comes_up() {
    let down = down();
    let a = alerter("", &[sink("ops", "webhook", &down.url("/hook"), "")]);
    a.send(&failover(1));
    wait_for("failed attempts (connection refused)", || {
        stats(&a, "ops").failures >= 2
    })
    .await;
    assert_eq!(stats(&a, "ops").queued, 1);
    let rx = Receiver::start_on(down).await;
    delivered(&a, "ops", 1).await;
    assert_eq!(ids(&rx.reqs()), vec![1]);
    let st = stats(&a, "ops");
    assert_eq!((st.dropped, st.queued), (0, 0));
}

#[tokio::test]
async fn full_queue_drops_the_oldest_and_counts_it() {
    let down = down();
    let a = alerter(
        "queue = 2\n",
        &[sink("ops", "webhook", &down.url("/hook"), "")],
    );
    a.send(&failover(1));
    // Event 1 is being delivered (retried); 2 more fit in the queue.
    wait_for("first attempt", || stats(&a, "ops").failures >= 1).await;
    for id in 2..=5 {
        a.send(&failover(id));
    }
    let st = stats(&a, "ops");
    assert_eq!((st.dropped, st.queued), (2, 3));
    let rx = Receiver::start_on(down).await;
    delivered(&a, "ops", 3).await;
    assert_eq!(ids(&rx.reqs()), vec![1, 4, 5]);
    assert_eq!(stats(&a, "ops").dropped, 2);
}

#[tokio::test]
async fn events_older_than_max_age_are_dropped_and_counted() {
    let down = down();
    let a = alerter(
        "max_age = 2\n",
        &[sink("ops", "webhook", &down.url("/hook"), "")],
    );
    // Retried every 50 ms at most against a refused connection until 2 s old, then dropped.
    a.send(&failover(1));
    a.send(&failover(2));
    wait_for("both expired", || stats(&a, "ops").dropped == 2).await;
    let st = stats(&a, "ops");
    assert_eq!((st.delivered, st.queued), (0, 0));
    assert!(st.failures >= 2, "{st:?}");
    // The sink still works afterwards (event 3 is taken off the queue as soon as the task
    // runs: it only expires if that takes max_age).
    let rx = Receiver::start_on(down).await;
    a.send(&failover(3));
    delivered(&a, "ops", 1).await;
    assert_eq!(ids(&rx.reqs()), vec![3]);
    let st = stats(&a, "ops");
    assert_eq!((st.dropped, st.queued), (2, 0), "{st:?}");
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let (rx, a) = receiver_and_alerter(&[HANG], "ops", "webhook", "/hook", "timeout = 1\n").await;
    let t = std::time::Instant::now();
    a.send(&failover(1));
    delivered(&a, "ops", 1).await;
    // Delivered well before the hanging answer would have come: the attempt timed out.
    let elapsed = t.elapsed();
    assert!(elapsed < HANG_FOR, "delivered after {elapsed:?}");
    let st = stats(&a, "ops");
    // 1 timeout, more if an attempt after it also took longer than 1 s on a busy machine.
    assert!(st.failures >= 1, "{st:?}");
    assert_eq!((st.dropped, st.queued), (0, 0), "{st:?}");
    // The hanging attempt and at least one retry, all of the same event.
    let ids = ids(&rx.reqs());
    assert!(ids.len() >= 2 && ids.iter().all(|&id| id == 1), "{ids:?}");
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let (rx, a) = receiver_and_alerter(&[400], "ops", "webhook", "/hook", "").await;
    a.send(&failover(1));
    a.send(&failover(2));
    wait_for("second delivered", || stats(&a, "ops").delivered == 1).await;
    let st = stats(&a, "ops");
    assert_eq!((st.failures, st.dropped), (1, 1));
    assert_eq!(ids(&rx.reqs()), vec![1, 2]);
}

#[tokio::test]
async fn filters_by_kind_and_severity_but_resolves_pass() {
    let (rx, a) = receiver_and_alerter(
        &[],
        "ops",
        "webhook",
        "/hook",
        "events = [\"failover\", \"degraded\"]\nmin_severity = \"critical\"\n",
    )
    .await;
    a.send(&event(1, EventKind::Degraded, Severity::Warning, T0));
    a.send(&config_changed(2));
    a.send(&failover(3));
    // Recovery comes with failover (its resolve), whatever its severity.
    a.send(&recovery(4));
    wait_for("2 posts", || rx.count() >= 2).await;
    // Every event reached the sink in order: with its queue empty, nothing more can come.
    wait_for("queue drained", || stats(&a, "ops").queued == 0).await;
    assert_eq!(ids(&rx.reqs()), vec![3, 4]);
}

// ---------------------------------------------------------------------------------------------
// Hot reconfiguration and stop

#[tokio::test]
async fn apply_keeps_queues_and_retargets() {
    let down = down();
    let rx = Receiver::start(&[]).await;
    let ops = |url: &str| sink("ops", "webhook", url, "");
    let refused = ops(&down.url("/hook"));
    let a = alerter("", std::slice::from_ref(&refused));
    a.send(&failover(1));
    wait_for("a failed attempt", || stats(&a, "ops").failures >= 1).await;

    // Same sink, plus another: the queue is kept.
    let other = sink("chat", "slack", &rx.url("/slack"), "");
    a.apply(&alerts("", &[refused.clone(), other.clone()]));
    assert_eq!(stats(&a, "ops").queued, 1);
    assert_eq!(a.stats().len(), 2);

    // The URL fixed: the queued event goes to the new one.
    a.apply(&alerts("", &[ops(&rx.url("/fixed")), other]));
    wait_for("delivered to the new URL", || {
        stats(&a, "ops").delivered == 1
    })
    .await;
    assert!(
        rx.reqs()
            .iter()
            .any(|r| r.path == "/fixed" && r.body["id"] == 1)
    );

    // A removed sink's undelivered events are counted as dropped; it is gone from the stats.
    a.apply(&alerts("", std::slice::from_ref(&refused)));
    a.send(&failover(2));
    wait_for("failing again", || stats(&a, "ops").failures >= 2).await;
    a.apply(&alerts("", &[]));
    assert!(a.stats().is_empty());

    // Stop: queued events are abandoned (counted), later sends do nothing.
    a.apply(&alerts("", &[refused]));
    a.send(&failover(3));
    a.stop();
    let st = stats(&a, "ops");
    assert_eq!((st.queued, st.dropped), (0, 1));
    a.send(&failover(4));
    assert_eq!(stats(&a, "ops").queued, 0);
}

#[tokio::test]
async fn send_never_blocks_without_a_receiver() {
    let down = down();
    let a = alerter(
        "queue = 100\n",
        &[sink("ops", "webhook", &down.url("/hook"), "")],
    );
    let t = std::time::Instant::now();
    let lock = std::sync::Mutex::new(());
    for id in 1..=10_000 {
        let _held = lock.lock().unwrap();
        a.send(&failover(id));
    }
    // Typically tens of milliseconds: a generous bound for a loaded machine.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let st = stats(&a, "ops");
    assert!(st.queued <= 101, "{st:?}");
    assert_eq!(st.queued + st.dropped, 10_000);
}

// ---------------------------------------------------------------------------------------------
// Configuration and metrics

fn issues(alerts: &str) -> Vec<steerd::config::ConfigIssue> {
    match steerd::config::parse(&format!("[alerts]\n{alerts}"), "test.toml") {
        Ok(_) => panic!("should be rejected:\n{alerts}"),
        Err(e) => e.issues,
    }
}

fn has_issue(all: &[steerd::config::ConfigIssue], field: &str, needle: &str, line: usize) {
    let hit = all
        .iter()
        .find(|i| i.field == field)
        .unwrap_or_else(|| panic!("no issue on {field}: {all:#?}"));
    assert!(
        hit.message.contains(needle),
        "message for {field} should mention {needle:?}: {:?}",
        hit.message
    );
    assert_eq!(hit.line, Some(line), "line of {field}: {hit:?}");
}

#[test]
fn config_errors_name_the_field_and_the_reason() {
    let all = issues(
        r#"max_age = -1
[[alerts.sinks]]
name = "ops"
kind = "webhook"
url = "ftp://example.com/hook"
[[alerts.sinks]]
name = "ops"
kind = "pagerduty"
[[alerts.sinks]]
name = "am"
kind = "alertmanager"
url = "http://am:9093"
events = ["failover", "fail_over"]
[[alerts.sinks]]
name = "x"
kind = "msteams"
url = "http://x/"
[[alerts.sinks]]
name = "chat"
kind = "slack"
url = "https://hooks.slack.com/services/T/B/C"
min_severity = "high"
resend = 10
"#,
    );
    has_issue(&all, "alerts.max_age", "greater than 0", 2);
    has_issue(
        &all,
        "alerts.sinks[0].url",
        "scheme must be http or https",
        6,
    );
    has_issue(
        &all,
        "alerts.sinks[1].name",
        "duplicate sink name \"ops\"",
        8,
    );
    has_issue(
        &all,
        "alerts.sinks[1].routing_key",
        "needs `routing_key`",
        7,
    );
    has_issue(
        &all,
        "alerts.sinks[2].events[1]",
        "unknown event kind \"fail_over\": must be one of failover, recovery, degraded, \
         all_down, all_down_recovered, cost_cap, cost_cap_cleared, cert_expiring, cert_ok, \
         override, config_changed",
        14,
    );
    has_issue(
        &all,
        "alerts.sinks[3].kind",
        "unknown sink kind \"msteams\"",
        17,
    );
    has_issue(
        &all,
        "alerts.sinks[4].min_severity",
        "info, warning, critical",
        23,
    );
    has_issue(&all, "alerts.sinks[4].resend", "only alertmanager", 24);
    assert_eq!(all.len(), 8, "{all:#?}");

    // Unknown keys are rejected by the schema.
    let all = issues("[[alerts.sinks]]\nname = \"a\"\nkind = \"webhook\"\nurll = \"http://x\"\n");
    assert!(all[0].message.contains("unknown field `urll`"), "{all:?}");
}

#[test]
fn config_defaults() {
    let s =
        settings("[[alerts.sinks]]\nname = \"pd\"\nkind = \"pagerduty\"\nrouting_key = \"k\"\n");
    assert_eq!(s.queue, 1000);
    assert_eq!(s.max_age, Duration::from_secs(3600));
    assert_eq!(s.retry_initial, Duration::from_millis(500));
    assert_eq!(s.retry_max, Duration::from_secs(60));
    let pd = &s.sinks[0];
    assert_eq!(pd.url, "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(pd.timeout, Duration::from_secs(5));
    assert_eq!(pd.min_severity, Severity::Info);
    // PagerDuty takes the alerts that open and close, not the informational events.
    assert!(!pd.events.contains(&EventKind::ConfigChanged));
    assert_eq!(pd.events.len(), EventKind::ALL.len() - 2);
    // No [alerts] at all: no sinks.
    let cfg = steerd::config::parse("", "empty.toml").expect("empty config");
    assert!(cfg.alerts.sinks.is_empty());
}

#[tokio::test]
async fn prometheus_collector_reports_every_sink() {
    let (_rx, a) = receiver_and_alerter(&[500], "ops", "webhook", "/hook", "").await;
    let registry = prometheus::Registry::new();
    registry.register(a.collector()).unwrap();
    a.send(&failover(1));
    delivered(&a, "ops", 1).await;
    let mut buf = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut buf,
    )
    .unwrap();
    let out = String::from_utf8(buf).unwrap();
    for line in [
        "steerd_alert_deliveries_total{kind=\"webhook\",sink=\"ops\"} 1",
        "steerd_alert_failures_total{kind=\"webhook\",sink=\"ops\"} 1",
        "steerd_alert_dropped_total{kind=\"webhook\",sink=\"ops\"} 0",
        "steerd_alert_queue_depth{kind=\"webhook\",sink=\"ops\"} 0",
        "# TYPE steerd_alert_deliveries_total counter",
        "# TYPE steerd_alert_queue_depth gauge",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}
