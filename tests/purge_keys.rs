//! Surrogate keys end to end (issue 14, item 8): keys registered through `/v1/purges/keys`,
//! a purge of a hierarchical key expanded into URLs for CloudFront and an `http` edge with
//! `key_method = "urls"`, and into the key and its registered descendants for Fastly; the
//! purge's item confirmed only when every expanded URL is, a key with no URLs failed on
//! CloudFront alone, and a refused path failing the key item.

mod common;

use std::time::Duration;

use common::cdn_apis::{CdnApi, ProviderKind, http_target};
use common::config::{failover, zone};
use common::http::{Body, Http};
use common::{TestServer, config_file, wait_until};
use serde_json::{Value, json};
use steerd::config::purge::{EdgeMethod, ProviderConfig, PurgeTarget};

fn base_config() -> String {
    let mut s = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n{}",
        zone("example.com")
    );
    for t in ["cdn-a", "cdn-b", "cdn-c"] {
        s += &format!("\n[[targets]]\nname = \"{t}\"\ncname = \"{t}.example.net\"\n");
    }
    s += &failover("www.example.com", &["cdn-a", "cdn-b"]);
    s
}

struct Rig {
    http: Http,
    _srv: TestServer,
    _dir: tempfile::TempDir,
}

fn rig(
    targets: Vec<(&'static str, PurgeTarget)>,
    tune: impl Fn(&mut steerd::config::purge::PurgeSettings) + Send + Sync + 'static,
) -> Rig {
    rig_with(&base_config(), targets, tune)
}

fn rig_with(
    config: &str,
    targets: Vec<(&'static str, PurgeTarget)>,
    tune: impl Fn(&mut steerd::config::purge::PurgeSettings) + Send + Sync + 'static,
) -> Rig {
    let (dir, path) = config_file(config);
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

fn finished(v: &Value) -> bool {
    v["cdns"]
        .as_object()
        .unwrap()
        .values()
        .all(|c| c["state"] == "confirmed" || c["state"] == "failed")
}

fn u(path: &str) -> String {
    format!("https://www.example.com{path}")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// An `http` target whose edges have no tags: keys go as the registry's URLs.
fn url_edge(edges: &[CdnApi]) -> PurgeTarget {
    let mut t = http_target(edges);
    if let ProviderConfig::Http { key_method, .. } = &mut t.provider {
        *key_method = EdgeMethod::Urls;
    }
    t
}

/// site:acme → /, site:acme:blog → /blog/1, /blog/2 (+ /blog/3 added), site:acmex → /x
/// (not below site:acme), product:12345 → /blog/2.
fn register(http: &Http) {
    let put = |key: &str, urls: &[String]| {
        http.put(&format!("/v1/purges/keys/{key}"), json!({ "urls": urls }))
            .expect(200)
            .json()
    };
    put("site:acme", &[u("/")]);
    put("site:acme:blog", &[u("/blog/1"), u("/blog/2")]);
    let v = http
        .post(
            "/v1/purges/keys/site:acme:blog",
            json!({"urls": [u("/blog/3")]}),
        )
        .expect(200)
        .json();
    assert_eq!(v["urls"].as_array().unwrap().len(), 3, "{v}");
    put("site:acmex", &[u("/x")]);
    put("product:12345", &[u("/blog/2")]);
}

#[test]
fn the_registry_api_stores_lists_and_checks_keys() {
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let r = rig(vec![("cdn-b", fastly.target())], |_| {});
    register(&r.http);
    // Not captured by /v1/purges/{id}.
    let list = r.http.get("/v1/purges/keys").expect(200).json();
    let keys: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["product:12345", "site:acme", "site:acme:blog", "site:acmex"]
    );
    assert_eq!(list["registered_urls"], 5, "{list}");
    let list = r
        .http
        .get("/v1/purges/keys?prefix=site:acme:&limit=1")
        .expect(200)
        .json();
    assert_eq!(
        list["keys"],
        json!([{"key": "site:acme:blog", "urls": 3}]),
        "{list}"
    );
    assert_eq!(list["next_after"], "site:acme:blog");
    let v = r.http.get("/v1/purges/keys/site:acme").expect(200).json();
    assert_eq!(v, json!({"key": "site:acme", "urls": [u("/")]}));
    let v = r
        .http
        .get("/v1/purges/keys/site:acme?descendants=true")
        .expect(200)
        .json();
    assert_eq!(
        v["descendants"],
        json!({"site:acme:blog": [u("/blog/1"), u("/blog/2"), u("/blog/3")]}),
        "site:acmex is not below site:acme: {v}"
    );
    // PUT replaces.
    let v = r
        .http
        .put("/v1/purges/keys/site:acmex", json!({"urls": [u("/y")]}))
        .expect(200)
        .json();
    assert_eq!(v["urls"], json!([u("/y")]));
    r.http.delete("/v1/purges/keys/site:acmex").expect(204);
    let e = r.http.get("/v1/purges/keys/site:acmex").expect(404).error();
    assert!(e.contains("no URLs registered for surrogate key"), "{e}");
    r.http.delete("/v1/purges/keys/site:acmex").expect(404);
    // Bad input names the field and the reason.
    let e = r
        .http
        .put(
            "/v1/purges/keys/site:acme",
            json!({"urls": [u("/"), "ftp://www.example.com/"]}),
        )
        .expect(400)
        .error();
    assert_eq!(
        e,
        "urls[1]: \"ftp://www.example.com/\" is not an absolute http(s) URL"
    );
    let e = r
        .http
        .put("/v1/purges/keys/site%20acme", json!({"urls": [u("/")]}))
        .expect(400)
        .error();
    assert!(e.starts_with("key: \"site acme\""), "{e}");
    let e = r
        .http
        .put("/v1/purges/keys/site:", json!({"urls": [u("/")]}))
        .expect(400)
        .error();
    assert!(e.contains("':'"), "{e}");
    let e = r
        .http
        .send(
            "PUT",
            "/v1/purges/keys/k",
            Body::Json(json!({"url": [u("/")]})),
            &[],
        )
        .expect(400)
        .error();
    assert!(e.contains("url"), "{e}");
    // Nothing refused was kept.
    let v = r.http.get("/v1/purges/keys/site:acme").expect(200).json();
    assert_eq!(v["urls"], json!([u("/")]));
    // The purge ids are still the purges'.
    r.http.get("/v1/purges/999").expect(404);
}

#[test]
fn a_hierarchical_key_is_expanded_for_cloudfront_and_url_edges_and_fastly_gets_its_descendants() {
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let edges = CdnApi::start_edges(1);
    cloudfront.set_in_progress_polls(1);
    let r = rig(
        vec![
            ("cdn-a", cloudfront.target()),
            ("cdn-b", fastly.target()),
            ("cdn-c", url_edge(&edges)),
        ],
        |p| p.batch_window[3] = Duration::from_millis(1500),
    );
    register(&r.http);
    // Two purges in one batching window: a URL of the second is also one of the first's key.
    let a = r
        .http
        .post(
            "/v1/purges",
            json!({"keys": ["site:acme"], "priority": "low"}),
        )
        .expect(202)
        .json();
    let b = r
        .http
        .post(
            "/v1/purges",
            json!({"keys": ["product:12345"], "urls": [u("/blog/1")], "priority": "low"}),
        )
        .expect(202)
        .json();
    let mut views = Vec::new();
    for v in [&a, &b] {
        let id = v["id"].as_str().unwrap();
        views.push(wait_purge(&r.http, id, Duration::from_secs(30), |v| {
            v["state"] == "confirmed"
        }));
    }
    let va = &views[0];
    for t in ["cdn-a", "cdn-b", "cdn-c"] {
        assert_eq!(va["cdns"][t]["confirmed"], 1, "{t}: {va:#}");
        assert_eq!(va["cdns"][t]["open"], 0, "{t}: {va:#}");
    }
    // CloudFront: the paths of every URL under site:acme and its descendants, each once,
    // in one invalidation with the second purge's (site:acmex's /x is not below it).
    let reqs = cloudfront.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(
        sorted(cloudfront.purged()),
        ["/", "/blog/1", "/blog/2", "/blog/3"]
    );
    assert!(cloudfront.polls() >= 1);
    assert!(
        !va["cdns"]["cdn-a"]["provider_ids"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{va:#}"
    );
    // The URL edge: the same URLs, each purged once.
    assert_eq!(
        sorted(edges[0].purged()),
        [
            "www.example.com/",
            "www.example.com/blog/1",
            "www.example.com/blog/2",
            "www.example.com/blog/3"
        ]
    );
    // Fastly purges by key: the key and its registered descendant, plus the other key, and
    // the URL.
    let got = sorted(fastly.purged());
    assert_eq!(
        got,
        [
            "product:12345",
            "site:acme",
            "site:acme:blog",
            "www.example.com/blog/1"
        ]
    );
}

#[test]
fn a_key_without_urls_fails_on_cloudfront_only_and_a_refused_path_fails_the_key() {
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let r = rig(
        vec![("cdn-a", cloudfront.target()), ("cdn-b", fastly.target())],
        |p| {
            p.retry_base = Duration::from_millis(100);
            p.retry_max = Duration::from_millis(300);
        },
    );
    register(&r.http);
    // No URLs for the key: CloudFront fails it at once, saying so; Fastly purges the key.
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"keys": ["site:other"], "priority": "high"}),
        )
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_purge(&r.http, &id, Duration::from_secs(20), finished);
    assert_eq!(v["cdns"]["cdn-a"]["state"], "failed", "{v:#}");
    assert_eq!(v["cdns"]["cdn-b"]["state"], "confirmed", "{v:#}");
    let errors = v["cdns"]["cdn-a"]["errors"].to_string();
    assert!(
        errors.contains("no URLs registered for surrogate key \\\"site:other\\\""),
        "{errors}"
    );
    assert_eq!(fastly.purged(), ["site:other"]);
    // A 503 first: the expanded paths are retried, the key then confirmed.
    cloudfront.fail_next(503, 1, None);
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"keys": ["site:acme:blog"], "priority": "high"}),
        )
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_purge(&r.http, &id, Duration::from_secs(20), finished);
    assert_eq!(v["state"], "confirmed", "{v:#}");
    assert!(
        v["cdns"]["cdn-a"]["attempts"].as_u64().unwrap() >= 2,
        "{v:#}"
    );
    assert!(
        v["cdns"]["cdn-a"]["errors"].to_string().contains("503"),
        "{v:#}"
    );
    // One path refused for good: the key item fails on CloudFront (with the stand-in's
    // reason), while Fastly confirms it.
    cloudfront.fail_items(&["/blog/2"]);
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"keys": ["site:acme"], "urls": [u("/z")], "priority": "critical"}),
        )
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_purge(&r.http, &id, Duration::from_secs(20), finished);
    let cf = &v["cdns"]["cdn-a"];
    assert_eq!(cf["state"], "failed", "{v:#}");
    assert!(
        cf["errors"].to_string().contains("/blog/2"),
        "the stand-in's refusal: {v:#}"
    );
    assert!(cf["failed"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(cf["open"], 0, "{v:#}");
    assert_eq!(v["cdns"]["cdn-b"]["state"], "confirmed", "{v:#}");
    assert_eq!(v["cdns"]["cdn-b"]["confirmed"], 2, "{v:#}");
}

#[test]
fn keys_registered_survive_a_restart_and_open_key_items_are_expanded_again() {
    let cloudfront = CdnApi::start(ProviderKind::Cloudfront);
    cloudfront.set_down(true);
    let (dir, path) = config_file(&base_config());
    let store = dir.path().join("purges.redb");
    let target = cloudfront.target();
    let start = || {
        let (store, target) = (store.clone(), target.clone());
        TestServer::start_file_with(&path, false, move |cfg| {
            let t = cfg.targets.iter_mut().find(|t| t.name == "cdn-a").unwrap();
            t.purge = Some(target.clone());
            cfg.purge.store = store.clone();
            cfg.purge.retry_base = Duration::from_millis(100);
            cfg.purge.retry_max = Duration::from_millis(300);
        })
    };
    let srv = start();
    let http = Http::new(srv.admin.unwrap());
    register(&http);
    let v = http
        .post(
            "/v1/purges",
            json!({"keys": ["site:acme:blog"], "priority": "high"}),
        )
        .expect(202)
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    wait_purge(&http, &id, Duration::from_secs(20), |v| {
        v["cdns"]["cdn-a"]["state"] == "retrying"
    });
    drop(http);
    drop(srv);
    cloudfront.set_down(false);
    let srv = start();
    let http = Http::new(srv.admin.unwrap());
    let v = wait_purge(&http, &id, Duration::from_secs(20), finished);
    assert_eq!(v["state"], "confirmed", "{v:#}");
    assert_eq!(
        sorted(cloudfront.purged()),
        ["/blog/1", "/blog/2", "/blog/3"]
    );
    let v = http
        .get("/v1/purges/keys/site:acme?descendants=true")
        .expect(200)
        .json();
    assert_eq!(
        v["descendants"]["site:acme:blog"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn writes_need_an_admin_token_reads_a_read_token() {
    const READ: &str = "read-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let config = format!(
        "{}\n[admin]\ntokens = [{{ token = \"{READ}\", scope = \"read\" }}, {{ token = \"{ADMIN}\", scope = \"admin\" }}]\n",
        base_config()
    );
    let r = rig_with(&config, vec![("cdn-b", fastly.target())], |_| {});
    let addr = r._srv.admin.unwrap();
    let (read, admin) = (Http::with_token(addr, READ), Http::with_token(addr, ADMIN));
    let body = json!({"urls": [u("/")]});
    r.http.get("/v1/purges/keys").expect(401);
    r.http
        .put("/v1/purges/keys/site:acme", body.clone())
        .expect(401);
    read.put("/v1/purges/keys/site:acme", body.clone())
        .expect(403);
    read.post("/v1/purges/keys/site:acme", body.clone())
        .expect(403);
    read.delete("/v1/purges/keys/site:acme").expect(403);
    admin.put("/v1/purges/keys/site:acme", body).expect(200);
    read.get("/v1/purges/keys/site:acme").expect(200);
    assert_eq!(
        read.get("/v1/purges/keys").expect(200).json()["registered_urls"],
        1
    );
    admin.delete("/v1/purges/keys/site:acme").expect(204);
}
