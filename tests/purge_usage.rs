//! Purge cost and the cache score's purge input (issue 14, items 10 and 11), end to end:
//! - a `steerd serve` process purges through stand-ins of CloudFront (10 paths free, then
//!   $0.005) and Cloudflare (free); `GET /v1/purges/usage` shows the billed items, API calls,
//!   spend, tier, free items left, the items dedupe folded away and the calls batching saved;
//!   after the process is killed and started again the counts are still there and go on;
//! - a purge confirmed on one CDN raises that CDN's `purge_ratio` (so lowers its cache score)
//!   in the target view, the other CDN's stays, and a pushed report still wins.

mod common;

use std::time::Duration;

use common::cdn_apis::ProviderKind;
use common::cdn_apis::{AWS_KEY_ID, AWS_SECRET, CF_DISTRIBUTION, CF_TOKEN, CF_ZONE, CdnApi};
use common::config::{failover, zone};
use common::http::Http;
use common::process::Steerd;
use common::{TestServer, config_file, wait_until};
use serde_json::{Value, json};

fn config(cloudfront: &CdnApi, cloudflare: &CdnApi) -> String {
    format!(
        r#"[server]
dns_listen = ["127.0.0.1:0"]

[geo]
database = ""

[purge]
store = "purges.redb"
# Wide enough that two purges sent one after the other are batched together.
batch_window = {{ normal = 3 }}
{zone}
[[targets]]
name = "cdn-a"
cname = "a.cdn.example.net"
[targets.purge]
provider = "cloudfront"
base_url = "{cf_url}"
distribution_id = "{CF_DISTRIBUTION}"
access_key_id_env = "STEERD_TEST_AWS_KEY_ID"
secret_access_key_env = "STEERD_TEST_AWS_SECRET"
pricing = [{{ up_to = 10, per_item = 0.0 }}, {{ per_item = 0.005 }}]

[[targets]]
name = "cdn-b"
cname = "b.cdn.example.net"
[targets.purge]
provider = "cloudflare"
base_url = "{cl_url}"
zone_id = "{CF_ZONE}"
token_env = "STEERD_TEST_CF_TOKEN"
{service}"#,
        zone = zone("example.com"),
        cf_url = cloudfront.base_url(),
        cl_url = cloudflare.base_url(),
        service = failover("www.example.com", &["cdn-a", "cdn-b"]),
    )
}

fn urls(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("https://www.example.com/assets/{i}.js"))
        .collect()
}

/// Waits until every purge in `ids` is confirmed on every CDN.
#[track_caller]
fn wait_confirmed(http: &Http, ids: &[String]) {
    for id in ids {
        let mut last = Value::Null;
        let ok = wait_until(Duration::from_secs(30), || {
            last = http.get(&format!("/v1/purges/{id}")).expect(200).json();
            last["state"] == "confirmed"
        });
        assert!(ok.is_some(), "purge {id} not confirmed: {last:#}");
    }
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn usage_counts_spend_and_savings_and_survives_a_restart() {
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    let cloudflare = CdnApi::start(ProviderKind::Cloudflare);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, config(&cloudfront, &cloudflare)).unwrap();
    let env = [
        ("STEERD_TEST_AWS_KEY_ID", AWS_KEY_ID),
        ("STEERD_TEST_AWS_SECRET", AWS_SECRET),
        ("STEERD_TEST_CF_TOKEN", CF_TOKEN),
    ];
    let first = Steerd::spawn(&path, dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let http = Http::new(first.admin);

    // Nothing purged yet: every purge target, at zero; the route is not taken for an id.
    let v = http.get("/v1/purges/usage").expect(200).json();
    assert_eq!(v["targets"]["cdn-a"]["items"], 0, "{v:#}");
    assert_eq!(v["targets"]["cdn-a"]["provider"], "cloudfront");
    assert_eq!(v["targets"]["cdn-a"]["free_remaining"], 10);
    assert_eq!(v["targets"]["cdn-b"]["free_remaining"], Value::Null);
    http.get("/v1/purges/usage?month=2026-13").expect(400);
    http.get("/v1/purges/usage?bogus=1").expect(400);

    // 15 URLs, then 10 more of which 5 are already queued: 20 sent, 5 deduplicated, one
    // request per CDN (19 calls saved each).
    let mut ids = Vec::new();
    for batch in [urls(0..15), urls(10..20)] {
        let v = http
            .post("/v1/purges", json!({"urls": batch}))
            .expect(202)
            .json();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    wait_confirmed(&http, &ids);
    let want_first = |v: &Value| {
        let a = &v["targets"]["cdn-a"];
        let b = &v["targets"]["cdn-b"];
        assert_eq!(a["items"], 20, "{v:#}");
        assert_eq!(a["api_calls"], 1, "{v:#}");
        assert_eq!(a["deduplicated"], 5, "{v:#}");
        assert_eq!(a["calls_saved"], 19, "{v:#}");
        // 10 free, 10 × $0.005; the 5 deduplicated would have cost $0.025 more.
        assert!(close(&a["spend"], 0.05), "{v:#}");
        assert!(close(&a["savings_dollars"], 0.025), "{v:#}");
        assert_eq!(a["free_remaining"], 0, "{v:#}");
        assert_eq!(a["tier"]["index"], 1, "{v:#}");
        assert_eq!(b["items"], 20, "{v:#}");
        assert_eq!(b["api_calls"], 1, "{v:#}");
        assert_eq!(b["deduplicated"], 5, "{v:#}");
        assert!(close(&b["spend"], 0.0), "{v:#}");
        assert_eq!(v["totals"]["items"], 40, "{v:#}");
        assert_eq!(v["totals"]["calls_saved"], 38, "{v:#}");
        assert!(close(&v["totals"]["spend"], 0.05), "{v:#}");
    };
    let v = http.get("/v1/purges/usage").expect(200).json();
    want_first(&v);
    let month = v["month"].as_str().unwrap().to_string();
    assert_eq!(
        http.get(&format!("/v1/purges/usage?month={month}"))
            .expect(200)
            .json(),
        v
    );
    let other = http
        .get("/v1/purges/usage?month=1999-01")
        .expect(200)
        .json();
    assert_eq!(other["totals"]["items"], 0, "{other:#}");
    let metrics = http.get("/metrics").expect(200).text;
    for line in [
        "steerd_purge_month_items{target=\"cdn-a\"} 20",
        "steerd_purge_month_spend_dollars{target=\"cdn-a\"} 0.05",
        "steerd_purge_api_calls_saved_total{target=\"cdn-a\"} 19",
        "steerd_purge_month_deduplicated_items{target=\"cdn-b\"} 5",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
    // The stand-ins saw what was billed: 20 paths, 20 files.
    assert_eq!(cloudfront.purged().len(), 20);
    assert_eq!(cloudflare.purged().len(), 20);

    // Killed and started again on the same store: the month's counts are still there.
    drop(first);
    let second = Steerd::spawn(&path, dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let http = Http::new(second.admin);
    want_first(&http.get("/v1/purges/usage").expect(200).json());
    // And go on from there: 3 more paths, all paid.
    let v = http
        .post(
            "/v1/purges",
            json!({"urls": urls(100..103), "priority": "high"}),
        )
        .expect(202)
        .json();
    wait_confirmed(&http, &[v["id"].as_str().unwrap().to_string()]);
    let v = http.get("/v1/purges/usage").expect(200).json();
    let a = &v["targets"]["cdn-a"];
    assert_eq!(a["items"], 23, "{v:#}");
    assert_eq!(a["api_calls"], 2, "{v:#}");
    assert_eq!(a["calls_saved"], 21, "{v:#}");
    assert!(close(&a["spend"], 0.065), "{v:#}");
    let metrics = http.get("/metrics").expect(200).text;
    assert!(
        metrics.contains("steerd_purge_month_items{target=\"cdn-a\"} 23"),
        "{metrics}"
    );
}

/// Targets cdn-a and cdn-b, purged through Cloudflare stand-ins, in one zone.
fn cache_rig(a: &CdnApi, b: &CdnApi) -> (Http, TestServer, tempfile::TempDir) {
    let (dir, path) = config_file(&format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n{}\n[[targets]]\nname = \"cdn-a\"\ncname = \"a.cdn.example.net\"\n\n[[targets]]\nname = \"cdn-b\"\ncname = \"b.cdn.example.net\"\n{}",
        zone("example.com"),
        failover("www.example.com", &["cdn-a", "cdn-b"])
    ));
    let store = dir.path().join("purges.redb");
    let (ta, mut tb) = (a.target(), b.target());
    // Two objects in 5 minutes make cdn-b's ratio 0.5.
    tb.purge_ratio_half = 2.0;
    let srv = TestServer::start_file_with(&path, false, move |cfg| {
        for (name, pt) in [("cdn-a", &ta), ("cdn-b", &tb)] {
            let t = cfg.targets.iter_mut().find(|t| t.name == name).unwrap();
            t.purge = Some(pt.clone());
        }
        cfg.purge.store = store.clone();
    });
    (Http::new(srv.admin.unwrap()), srv, dir)
}

fn cache_inputs(http: &Http, target: &str) -> Value {
    http.get(&format!("/v1/targets/{target}"))
        .expect(200)
        .json()["cache"]["inputs"]
        .clone()
}

#[test]
fn a_confirmed_purge_lowers_that_cdns_cache_score_only() {
    let a = CdnApi::start(ProviderKind::Cloudflare);
    let b = CdnApi::start(ProviderKind::Cloudflare);
    let (http, _srv, _dir) = cache_rig(&a, &b);
    for t in ["cdn-a", "cdn-b"] {
        let c = cache_inputs(&http, t);
        assert_eq!(c["purge_ratio"], 0.0, "{t}: {c:#}");
        assert_eq!(c["purge_ratio_from"], "default", "{t}: {c:#}");
        assert!(close(&c["score"], 2.0 / 3.0), "{t}: {c:#}");
    }

    // Everything purged on cdn-a: its cache is empty, ratio 1, score (0.5 + 0.5 + 0) / 3.
    let v = http
        .post(
            "/v1/purges",
            json!({"everything": true, "targets": ["cdn-a"], "priority": "critical"}),
        )
        .expect(200)
        .json();
    assert_eq!(v["state"], "confirmed", "{v:#}");
    let c = cache_inputs(&http, "cdn-a");
    assert_eq!(c["purge_ratio"], 1.0, "{c:#}");
    assert_eq!(c["purge_ratio_from"], "purges", "{c:#}");
    assert!(close(&c["score"], 1.0 / 3.0), "{c:#}");
    let c = cache_inputs(&http, "cdn-b");
    assert_eq!(c["purge_ratio_from"], "default", "cdn-b untouched: {c:#}");
    assert!(close(&c["score"], 2.0 / 3.0), "{c:#}");

    // Two URLs on cdn-b (purge_ratio_half = 2): 2 / (2 + 2) = 0.5.
    let v = http
        .post(
            "/v1/purges",
            json!({"urls": urls(0..2), "targets": ["cdn-b"], "priority": "critical"}),
        )
        .expect(200)
        .json();
    assert_eq!(v["state"], "confirmed", "{v:#}");
    let c = cache_inputs(&http, "cdn-b");
    assert_eq!(c["purge_ratio"], 0.5, "{c:#}");
    assert_eq!(c["purge_ratio_from"], "purges", "{c:#}");
    assert!(close(&c["score"], 0.5), "{c:#}");

    // A pushed report still wins over steerd's own purges (on that CDN only).
    http.put(
        "/v1/targets/cdn-a/cache-metrics",
        json!({"purge_ratio": 0.1}),
    )
    .expect(200);
    let c = cache_inputs(&http, "cdn-a");
    assert_eq!(c["purge_ratio"], 0.1, "{c:#}");
    assert_eq!(c["purge_ratio_from"], "report", "{c:#}");
    let c = cache_inputs(&http, "cdn-b");
    assert_eq!(c["purge_ratio_from"], "purges", "{c:#}");
}
