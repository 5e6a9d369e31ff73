//! Events, tokens and versions at the edges: one all-down event per episode, no failover event
//! between two unusable states, certificate warnings per vantage point, remote observations of
//! a target this node does not probe, SIGHUP-reloaded tokens, a version that never goes back,
//! far-future expiries refused, and no open admin API on a public address.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::{Body, Http};
use common::{DEMO, TestServer, wait_until};
use steerd::events::EventKind;
use steerd::health::machine::{Override, OverrideKind};

fn count(server: &TestServer, kind: EventKind, subject: &str) -> usize {
    let c = server.server.as_ref().unwrap().control();
    c.event_page(0, 1000, &[kind], Some(subject)).0.len()
}

/// A blocking HTTP call to the admin API at `admin`: (status, body).
fn http(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let h = match token {
        Some(t) => Http::with_token(admin, t),
        None => Http::new(admin),
    };
    let body = body.map_or(Body::None, |b| Body::Raw(b.as_bytes().to_vec()));
    let r = h.send(method, path, body, &[]);
    (r.status, r.text)
}

#[test]
fn all_down_is_one_event_per_episode_and_unusable_to_unusable_is_no_failover() {
    let cfg = DEMO.to_string()
        + r#"
[[services]]
name = "solo.example.com"
policy = "failover"
targets = [{ target = "origin" }]
"#;
    let server = TestServer::start(&cfg);
    let control = server.server.as_ref().unwrap().control().clone();
    let now = steerd::control::now_ms();
    let o = |kind, secs: u64| Override {
        kind,
        until_ms: Some(now + secs * 1000),
        reason: "test".into(),
        set_at_ms: now,
    };
    control
        .set_override("origin", Some(o(OverrideKind::ForcedDown, 5)))
        .unwrap();
    // down → drained: both unusable, no second failover.
    control
        .set_override("origin", Some(o(OverrideKind::Drained, 5)))
        .unwrap();
    assert!(
        control
            .table()
            .load()
            .all_down
            .contains(&"solo.example.com.".to_string())
    );
    // The override expires after 5 s.
    assert!(
        wait_until(Duration::from_secs(15), || control
            .table()
            .load()
            .all_down
            .is_empty())
        .is_some()
    );
    // More ticks after the recovery add nothing (stepped here, not waited for).
    for _ in 0..5 {
        control.tick();
    }
    assert_eq!(count(&server, EventKind::AllDown, "solo.example.com."), 1);
    assert_eq!(
        count(&server, EventKind::AllDownRecovered, "solo.example.com."),
        1,
        "exactly one recovery event, not one per tick"
    );
    assert_eq!(count(&server, EventKind::Failover, "origin"), 1);
    assert_eq!(count(&server, EventKind::Recovery, "origin"), 1);
}

#[test]
fn certificate_warnings_are_per_vantage_and_remote_observations_count() {
    let (_dir, path) = common::config_file(DEMO);
    let server = TestServer::start_file(&path, false);
    let admin = server.admin.unwrap();
    let obs = |vantage: &str, detail: &str| {
        format!(
            r#"{{"vantage": "{vantage}", "observations": [{{"target": "cdn-a", "level": "tls", "ok": true, "latency_ms": 5, "detail": "{detail}"}}]}}"#
        )
    };
    let warn = "TLS 1.3; certificate valid, expires in 3 d (2026-11-25): fewer than 14 days left";
    for _ in 0..3 {
        let (s, b) = http(
            admin,
            "POST",
            "/v1/observations",
            None,
            Some(&obs("fra1", warn)),
        );
        assert_eq!(s, 202, "{b}");
        let (s, b) = http(
            admin,
            "POST",
            "/v1/observations",
            None,
            Some(&obs("nyc1", "TLS 1.3; certificate valid, expires in 80 d")),
        );
        assert_eq!(s, 202, "{b}");
    }
    assert_eq!(
        count(&server, EventKind::CertExpiring, "cdn-a"),
        1,
        "no flapping between vantage points"
    );
    assert_eq!(count(&server, EventKind::CertOk, "cdn-a"), 0);
    let (s, _) = http(
        admin,
        "POST",
        "/v1/observations",
        None,
        Some(&obs("fra1", "TLS 1.3; certificate valid, expires in 90 d")),
    );
    assert_eq!(s, 202);
    assert_eq!(count(&server, EventKind::CertOk, "cdn-a"), 1);

    // `origin` has no local check; a remote agent's failures still move its state.
    let now = steerd::control::now_ms();
    let items: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"target": "origin", "level": "check", "ok": false, "latency_ms": 3, "at_ms": {}}}"#,
                now - 40_000 + i * 1000
            )
        })
        .collect();
    let body = format!(
        r#"{{"vantage": "fra1", "observations": [{}]}}"#,
        items.join(",")
    );
    let (s, b) = http(admin, "POST", "/v1/observations", None, Some(&body));
    assert_eq!(s, 202, "{b}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (_, b) = http(admin, "GET", "/v1/targets/origin", None, None);
            b.contains("\"state\":\"down\"")
        })
        .is_some(),
        "remote failures of an unprobed target take it down"
    );
}

#[test]
fn reload_takes_new_tokens_and_the_version_never_goes_back() {
    let with =
        |t: &str| format!("{DEMO}\n[admin]\ntokens = [{{ token = \"{t}\", scope = \"admin\" }}]\n");
    let (_dir, path) = common::config_file(&with("old-token-0123456789"));
    let server = TestServer::start_file(&path, false);
    let admin = server.admin.unwrap();
    let put = |token: &str| {
        http(
            admin,
            "PUT",
            "/v1/targets/cdn-a/cache-metrics",
            Some(token),
            Some(r#"{"hit_ratio": 0.9}"#),
        )
        .0
    };
    assert_eq!(put("old-token-0123456789"), 200);
    // Two API writes: version 2.
    for _ in 0..2 {
        let (s, b) = http(
            admin,
            "PUT",
            "/v1/zones/example.com/records/api/A",
            Some("old-token-0123456789"),
            Some(r#"{"data": "192.0.2.1"}"#),
        );
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    // Restore the backup (version 0, old token changed to a new one) and SIGHUP.
    std::fs::write(&path, with("new-token-0123456789")).unwrap();
    let v = server.server.as_ref().unwrap().reload().unwrap();
    assert_eq!(v, 3, "a restored backup gets the next version, not 0");
    assert_eq!(
        put("old-token-0123456789"),
        401,
        "the revoked token is refused"
    );
    assert_eq!(put("new-token-0123456789"), 200);
    let (_, status) = http(
        admin,
        "GET",
        "/v1/status",
        Some("new-token-0123456789"),
        None,
    );
    assert!(status.contains("\"config_version\":3"), "{status}");
}

#[test]
fn far_future_expiries_are_refused_with_the_field() {
    let cfg = format!(
        "{DEMO}\n[[overrides]]\ntarget = \"cdn-a\"\nstate = \"drained\"\nuntil = 300000000000\n"
    );
    let e = steerd::config::parse(&cfg, "t").unwrap_err();
    assert!(
        e.issues
            .iter()
            .any(|i| i.field == "overrides[0].until" && i.message.contains("milliseconds")),
        "{e}"
    );
}

#[test]
fn an_admin_api_on_a_public_address_needs_tokens() {
    let mut cfg = steerd::config::parse(DEMO, "t").unwrap();
    for t in &mut cfg.targets {
        t.check = None;
    }
    cfg.geo.database = None;
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.admin_listen = Some("0.0.0.0:0".parse().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(steerd::Server::start(cfg))
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("without tokens"), "{err:#}");
}
