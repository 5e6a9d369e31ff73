//! Purges end to end (issue 14): a running steerd with purge targets pointed at local
//! stand-ins of the providers' APIs (`common::cdn_apis`), driven through `/v1/purges`: fan-out
//! to every CDN in parallel within the SLA, batching and dedupe, retries honouring 429 and
//! `Retry-After`, a provider down then back, give-up with an event, idempotency, bad input,
//! and credentials that never reach the API's output.

mod common;

use std::time::{Duration, Instant};

use common::cdn_apis::{CdnApi, ProviderKind, http_target, secrets};
use common::config::{failover, zone};
use common::http::Http;
use common::{TestServer, config_file, wait_until};
use serde_json::{Value, json};
use steerd::config::purge::PurgeTarget;

/// Targets cdn-a … cdn-d (answers only; no service needs them) in one zone.
fn base_config() -> String {
    let mut s = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n{}",
        zone("example.com")
    );
    for t in ["cdn-a", "cdn-b", "cdn-c", "cdn-d"] {
        s += &format!("\n[[targets]]\nname = \"{t}\"\ncname = \"{t}.example.net\"\n");
    }
    s += &failover("www.example.com", &["cdn-a", "cdn-b"]);
    s
}

/// A server whose targets purge through `targets` (name, config); `tune` adjusts `[purge]`.
struct Rig {
    http: Http,
    _srv: TestServer,
    _dir: tempfile::TempDir,
}

fn rig(
    targets: Vec<(&'static str, PurgeTarget)>,
    tune: impl Fn(&mut steerd::config::purge::PurgeSettings) + Send + Sync + 'static,
) -> Rig {
    let (dir, path) = config_file(&base_config());
    let store = dir.path().join("purges.redb");
    let srv = TestServer::start_file_with(&path, false, move |cfg| {
        for (name, pt) in &targets {
            let t = cfg.targets.iter_mut().find(|t| t.name == *name).unwrap();
            t.purge = Some(pt.clone());
        }
        cfg.purge.store = store.clone();
        tune(&mut cfg.purge);
    });
    let http = Http::new(srv.admin.unwrap());
    Rig {
        http,
        _srv: srv,
        _dir: dir,
    }
}

/// Polls a purge until `want` holds of it (or panics after `within`).
#[track_caller]
fn wait_purge(http: &Http, id: &str, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(within, || {
        last = http.get(&format!("/v1/purges/{id}")).expect(200).json();
        want(&last)
    });
    assert!(ok.is_some(), "purge {id} never got there: {last:#}");
    last
}

fn cdn_state(v: &Value, t: &str) -> String {
    v["cdns"][t]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_key_purge_reaches_four_providers_in_parallel_within_the_critical_sla() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let akamai = CdnApi::start(ProviderKind::Akamai);
    let edges = CdnApi::start_edges(2);
    // Each provider takes 300 ms to answer: in sequence that would be 1.2 s.
    for api in [&cf, &fastly, &akamai].into_iter().chain(edges.iter()) {
        api.set_delay(Duration::from_millis(300));
    }
    let r = rig(
        vec![
            ("cdn-a", cf.target()),
            ("cdn-b", fastly.target()),
            ("cdn-c", akamai.target()),
            ("cdn-d", http_target(&edges)),
        ],
        |p| p.sla[0] = Duration::from_secs(5),
    );
    let keys = ["site:acme:blog", "product:12345:reviews"];
    let t0 = Instant::now();
    let resp = r
        .http
        .post("/v1/purges", json!({"keys": keys, "priority": "critical"}));
    let took = t0.elapsed();
    let v = resp.expect(200).json();
    assert_eq!(v["state"], "confirmed", "{v:#}");
    for t in ["cdn-a", "cdn-b", "cdn-c", "cdn-d"] {
        assert_eq!(cdn_state(&v, t), "confirmed", "{t}: {v:#}");
        assert_eq!(v["cdns"][t]["confirmed"], 2);
        assert!(v["cdns"][t]["seconds_to_confirm"].as_f64().unwrap() < 5.0);
    }
    assert!(
        took < Duration::from_millis(1200),
        "sent in parallel: {took:?}"
    );
    let mut got = cf.purged();
    got.sort();
    assert_eq!(got, ["product:12345:reviews", "site:acme:blog"]);
    assert_eq!(cf.requests().len(), 1, "both keys in one request");
    assert_eq!(fastly.requests().len(), 1);
    assert_eq!(akamai.requests().len(), 1);
    for e in &edges {
        let mut got = e.purged();
        got.sort();
        assert_eq!(got, ["product:12345:reviews", "site:acme:blog"]);
    }
    // Provider ids are kept; the histogram has the confirmations.
    assert!(
        !v["cdns"]["cdn-a"]["provider_ids"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let metrics = r.http.get("/metrics").expect(200).text;
    assert!(
        metrics.contains(
            "steerd_purge_completion_seconds_count{priority=\"critical\",target=\"cdn-a\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn a_provider_down_gets_the_purge_after_it_returns_and_429_is_honoured() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let fastly = CdnApi::start(ProviderKind::Fastly);
    fastly.set_down(true);
    cf.fail_next(429, 1, Some(1));
    let r = rig(
        vec![("cdn-a", cf.target()), ("cdn-b", fastly.target())],
        |p| {
            p.retry_base = Duration::from_millis(100);
            p.retry_max = Duration::from_millis(400);
        },
    );
    let t0 = Instant::now();
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": ["https://www.example.com/a.css"], "priority": "high"}),
        )
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    // Cloudflare answered 429 with Retry-After: 1 first: not confirmed before that second.
    let v = wait_purge(&r.http, &id, Duration::from_secs(20), |v| {
        cdn_state(v, "cdn-a") == "confirmed" && cdn_state(v, "cdn-b") == "retrying"
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(v["cdns"]["cdn-a"]["attempts"], 2, "{v:#}");
    assert!(
        v["cdns"]["cdn-b"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("503"),
        "{v:#}"
    );
    let calls_down = fastly.calls();
    assert!(
        wait_until(Duration::from_secs(10), || fastly.calls() >= calls_down + 2).is_some(),
        "retried while down"
    );
    assert!(fastly.purged().is_empty());
    fastly.set_down(false);
    let v = wait_purge(&r.http, &id, Duration::from_secs(20), |v| {
        v["state"] == "confirmed"
    });
    assert_eq!(fastly.purged(), ["www.example.com/a.css"], "{v:#}");
    assert!(v["cdns"]["cdn-b"]["attempts"].as_u64().unwrap() >= 3);
    // Listing by state finds it.
    let list = r.http.get("/v1/purges?state=confirmed").expect(200).json();
    assert_eq!(list["purges"][0]["id"], id.as_str());
    let list = r.http.get("/v1/purges?state=failed").expect(200).json();
    assert!(list["purges"].as_array().unwrap().is_empty());
}

#[test]
fn purges_within_a_window_are_batched_and_deduplicated() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let r = rig(vec![("cdn-a", cf.target())], |p| {
        p.batch_window[3] = Duration::from_millis(1500);
    });
    let u = |s: &str| format!("https://www.example.com/{s}");
    let a = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": [u("1"), u("2")], "priority": "low"}),
        )
        .expect(202)
        .json();
    let b = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": [u("2"), u("3")], "priority": "low"}),
        )
        .expect(202)
        .json();
    for v in [&a, &b] {
        let id = v["id"].as_str().unwrap();
        wait_purge(&r.http, id, Duration::from_secs(20), |v| {
            v["state"] == "confirmed"
        });
    }
    let reqs = cf.requests();
    assert_eq!(reqs.len(), 1, "one request for both purges: {reqs:#?}");
    let mut items = reqs[0].items.clone();
    items.sort();
    assert_eq!(items, [u("1"), u("2"), u("3")], "the shared URL sent once");
    let metrics = r.http.get("/metrics").expect(200).text;
    assert!(
        metrics.contains("steerd_purge_deduplicated_items_total{target=\"cdn-a\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("steerd_purge_api_calls_total{result=\"ok\",target=\"cdn-a\"} 1"));
}

#[test]
fn a_purge_not_confirmed_by_its_give_up_age_fails_with_an_event() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    cf.set_down(true);
    let r = rig(
        vec![("cdn-a", cf.target()), ("cdn-b", cloudfront.target())],
        |p| {
            p.give_up = Duration::from_secs(2);
            p.sla = [Duration::from_secs(1); 4];
            p.retry_base = Duration::from_millis(100);
            p.retry_max = Duration::from_millis(300);
        },
    );
    let v = r
        .http
        .post("/v1/purges", json!({"hosts": ["www.example.com"]}))
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_purge(&r.http, &id, Duration::from_secs(30), |v| {
        cdn_state(v, "cdn-a") == "failed" && cdn_state(v, "cdn-b") == "failed"
    });
    assert_eq!(v["state"], "failed");
    assert!(
        v["cdns"]["cdn-a"]["errors"].to_string().contains("give_up"),
        "{v:#}"
    );
    // CloudFront cannot purge by host: failed at once, saying why.
    assert!(
        v["cdns"]["cdn-b"]["errors"]
            .to_string()
            .contains("cannot purge by host"),
        "{v:#}"
    );
    let events = r
        .http
        .get("/v1/events?kind=purge_failed")
        .expect(200)
        .json();
    let subjects: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"cdn-a") && subjects.contains(&"cdn-b"),
        "{events:#}"
    );
}

#[test]
fn cloudfront_invalidations_are_polled_until_completed_and_miss_their_sla() {
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    cloudfront.set_in_progress_polls(1);
    let r = rig(vec![("cdn-a", cloudfront.target())], |p| {
        p.sla[1] = Duration::from_millis(500);
    });
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": ["https://www.example.com/x.js?v=2"], "prefixes": ["www.example.com/img/"], "priority": "high"}),
        )
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_purge(&r.http, &id, Duration::from_secs(30), |v| {
        v["state"] == "confirmed"
    });
    assert!(cloudfront.polls() >= 2, "polled until Completed");
    assert!(
        !v["cdns"]["cdn-a"]["provider_ids"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let mut paths = cloudfront.purged();
    paths.sort();
    assert_eq!(paths, ["/img/*", "/x.js?v=2"]);
    // Polled once a second: past the 0.5 s SLA, an event says so.
    let events = r
        .http
        .get("/v1/events?kind=purge_sla_missed")
        .expect(200)
        .json();
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events:#}");
}

#[test]
fn idempotency_keys_bad_input_and_no_credentials_in_output() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let akamai = CdnApi::start(ProviderKind::Akamai);
    let r = rig(
        vec![("cdn-a", cf.target()), ("cdn-c", akamai.target())],
        |_| {},
    );
    let body = json!({"urls": ["https://www.example.com/"], "idempotency_key": "deploy-42"});
    let a = r.http.post("/v1/purges", body.clone()).json();
    let b = r.http.post("/v1/purges", body).json();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["duplicate"], true);
    let c = r.http.send(
        "POST",
        "/v1/purges",
        common::http::Body::Json(json!({"keys": ["k"]})),
        &[("Idempotency-Key", "deploy-42")],
    );
    assert_eq!(c.json()["id"], a["id"], "the header works like the field");
    for (body, field) in [
        (json!({"urls": ["ftp://x/y"]}), "urls[0]"),
        (json!({"keys": ["a b"]}), "keys[0]"),
        (json!({"prefixes": ["www.example.com"]}), "prefixes[0]"),
        (json!({"hosts": ["bad host"]}), "hosts[0]"),
        (json!({"everything": true, "keys": ["k"]}), "everything"),
        (json!({"keys": ["k"], "priority": "urgent"}), "priority"),
        (json!({"keys": ["k"], "targets": ["cdn-z"]}), "targets"),
        (json!({}), "nothing to purge"),
        (json!({"keys": ["k"], "colour": "red"}), "colour"),
    ] {
        let e = r.http.post("/v1/purges", body.clone()).expect(400).error();
        assert!(e.contains(field), "{body} → {e}");
    }
    r.http.get("/v1/purges/999").expect(404);
    r.http.get("/v1/purges/abc").expect(400);
    // A refused credential: the purge fails, and nothing shows a secret.
    let first = a["id"].as_str().unwrap();
    wait_purge(&r.http, first, Duration::from_secs(20), |v| {
        v["state"] == "confirmed"
    });
    akamai.fail_next(401, 1, None);
    let v = r
        .http
        .post("/v1/purges", json!({"keys": ["k2"], "targets": ["cdn-c"]}))
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap();
    wait_purge(&r.http, id, Duration::from_secs(20), |v| {
        v["state"] == "failed"
    });
    let mut seen = String::new();
    for p in [
        "/v1/purges",
        "/v1/config",
        "/v1/targets",
        "/metrics",
        "/v1/events",
    ] {
        seen += &r.http.get(p).expect(200).text;
    }
    seen += &r.http.get(&format!("/v1/purges/{id}?items=true")).text;
    for s in secrets() {
        assert!(!seen.contains(s), "{s} shown");
    }
}
