//! The done-when, end to end on the shipped demo configuration: two local CDN edges,
//! steerd started from the demo file (prober, admin API, the demo's webhook sink pointed at a
//! local receiver); kill CDN A → the webhook receives the failover event, `/metrics` and
//! `/v1/events` show it, and the DNS answer has moved.

mod common;

use std::time::Duration;

use common::fakecdn::{CdnOptions, http_cdn};
use common::http::Http;
use common::sinks::Receiver;
use common::{DEMO, TestServer, query, udp, wait_until};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

fn cname(server: &TestServer, name: &str) -> Option<String> {
    let m = udp(server.udp, &query(name, RecordType::A, None));
    m.answers.first().and_then(|r| match &r.data {
        RData::CNAME(c) => Some(c.0.to_string()),
        _ => None,
    })
}

/// A sample's value in Prometheus text (None when absent).
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
fn a_failover_in_the_demo_setup_sends_a_webhook_and_moves_the_metrics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(http_cdn(CdnOptions::default()));
    let b = rt.block_on(http_cdn(CdnOptions::default()));

    // The receiver: records every request (the demo's sink posts to /hook).
    let rx = rt.block_on(Receiver::start(&[]));
    let hook = rx.addr;

    // The demo configuration with the stand-ins' real ports.
    assert!(DEMO.contains("127.0.0.1:8081") && DEMO.contains("127.0.0.1:9099"));
    let text = DEMO
        .replace("127.0.0.1:8081", &a.addr().to_string())
        .replace("127.0.0.1:8082", &b.addr().to_string())
        .replace("127.0.0.1:9099", &hook.to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    let server = TestServer::start_file(&path, true);
    let admin = server.admin.expect("admin API");
    let client = Http::new(admin);
    let http = |path: &str| client.get(path).expect(200).text;

    wait_until(Duration::from_secs(10), || a.hits() > 0 && b.hits() > 0).expect("both checked");
    wait_until(Duration::from_secs(5), || {
        cname(&server, "assets.example.com").as_deref() == Some("example.global.cdn-a.net.")
    })
    .expect("assets answers cdn-a while it is healthy");
    let before = http("/metrics");
    assert_eq!(
        sample(&before, "steerd_target_up{role=\"edge\",target=\"cdn-a\"}"),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "steerd_events_total{kind=\"failover\"}"),
        None
    );

    // CDN A dies.
    std::thread::sleep(Duration::from_millis(1100)); // the kept connection ages (watch)
    rt.block_on(a.kill());
    wait_until(Duration::from_secs(10), || {
        cname(&server, "assets.example.com").as_deref() == Some("example.b-cdn.example.net.")
    })
    .expect("assets fails over to cdn-b");

    // The webhook receives the failover event.
    let failover = || {
        rx.reqs()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/hook")
            .map(|r| r.body)
            .find(|e| e["kind"] == "failover" && e["subject"] == "cdn-a")
    };
    wait_until(Duration::from_secs(10), || failover().is_some())
        .expect("the webhook receives the failover");
    let ev = failover().unwrap();
    assert_eq!(ev["action"], "trigger", "{ev}");
    assert_eq!(ev["severity"], "critical", "{ev}");
    assert_eq!(ev["to"], "down", "{ev}");
    assert_eq!(ev["dedup_key"], "steerd/target-health/target/cdn-a", "{ev}");

    // The metrics moved. The receiver records the body before it answers, and the sink counts
    // the delivery once it has read that answer: wait for the count.
    wait_until(Duration::from_secs(10), || {
        sample(
            &http("/metrics"),
            "steerd_alert_deliveries_total{kind=\"webhook\",sink=\"demo-webhook\"}",
        )
        .is_some_and(|v| v >= 1.0)
    })
    .expect("the delivery is counted");
    let after = http("/metrics");
    assert_eq!(
        sample(&after, "steerd_target_up{role=\"edge\",target=\"cdn-a\"}"),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "steerd_target_state{state=\"down\",target=\"cdn-a\"}"
        ),
        Some(1.0)
    );
    assert!(sample(&after, "steerd_events_total{kind=\"failover\"}").unwrap() >= 1.0);
    assert!(
        sample(
            &after,
            "steerd_target_transitions_total{from=\"healthy\",target=\"cdn-a\",to=\"down\"}"
        )
        .unwrap()
            >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "steerd_alert_deliveries_total{kind=\"webhook\",sink=\"demo-webhook\"}"
        )
        .unwrap()
            >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "steerd_table_swaps_total").unwrap()
            > sample(&before, "steerd_table_swaps_total").unwrap()
    );

    // DNS query counters and the latency histogram are there too.
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("steerd_dns_queries_total{") && l.contains("assets.example.com")),
        "{after}"
    );
    assert!(after.contains("steerd_dns_response_duration_seconds_bucket{"));

    // And the events API lists it.
    let events: Value = serde_json::from_str(&http("/v1/events?kind=failover")).unwrap();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "cdn-a" && e["to"] == "down"),
        "{events}"
    );
}
