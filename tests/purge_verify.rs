//! Canaries across the CDNs end to end (issue 14, items 6 and 7): a real steerd whose purge
//! targets point at local stand-ins of the providers' APIs, a local origin and two local
//! "CDNs" serving a canary object with an ETag and a cache status that the test changes.
//! (a) After a purge both CDNs confirm, the one that now shows a miss or the origin's ETag is
//! `verified`, the one still serving the old ETag is not, with the reason. (b) A CDN serving
//! the old version past the grace is stale: an event in the admin API, the metric, the DNS
//! answer moves to the fresh CDN (demote_stale) and the explain names the reason; once it
//! serves the current version it is fresh and the answer returns.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use hickory_proto::rr::{RData, RecordType};
use parking_lot::Mutex;
use serde_json::{Value, json};

use common::cdn_apis::{CdnApi, ProviderKind};
use common::config::{failover, zone};
use common::http::Http;
use common::{TestServer, config_file, query, udp, wait_until};

/// An HTTP server answering every GET with its current ETag and cache status.
struct Versioned {
    addr: SocketAddr,
    state: Arc<Mutex<(String, String)>>,
    _rt: tokio::runtime::Runtime,
}

async fn serve(State(st): State<Arc<Mutex<(String, String)>>>) -> (HeaderMap, &'static str) {
    let (etag, cache) = st.lock().clone();
    let mut h = HeaderMap::new();
    h.insert("etag", etag.parse().unwrap());
    if !cache.is_empty() {
        h.insert("x-cache", cache.parse().unwrap());
    }
    h.insert("surrogate-key", "site:acme:static".parse().unwrap());
    (h, "body { color: red }")
}

impl Versioned {
    fn start(etag: &str, cache: &str) -> Versioned {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new((etag.to_string(), cache.to_string())));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new().fallback(serve).with_state(state.clone());
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let _ = axum::serve(l, app).await;
        });
        Versioned {
            addr,
            state,
            _rt: rt,
        }
    }

    fn set(&self, etag: &str, cache: &str) {
        *self.state.lock() = (etag.to_string(), cache.to_string());
    }
}

struct Rig {
    http: Http,
    srv: TestServer,
    origin: Versioned,
    a: Versioned,
    b: Versioned,
    _apis: (CdnApi, CdnApi),
    _dir: tempfile::TempDir,
}

/// cdn-a and cdn-b (failover www.example.com: cdn-a first), purged through Cloudflare and
/// Fastly stand-ins; one canary at the origin and through each CDN; `purge` is the rest of
/// `[purge]`.
fn rig(purge: &str, origin: Versioned, a: Versioned, b: Versioned) -> Rig {
    let mut s = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n{}",
        zone("example.com")
    );
    for t in ["cdn-a", "cdn-b"] {
        s += &format!("\n[[targets]]\nname = \"{t}\"\ncname = \"{t}.example.net\"\n");
    }
    s += &failover("www.example.com", &["cdn-a", "cdn-b"]);
    s += &format!(
        "\n[purge]\n{purge}\n[[purge.canaries]]\nurl = \"http://www.example.com/app.css\"\n\
         origin = \"http://{}\"\nversion = \"etag\"\nvia = {{ cdn-a = \"{}\", cdn-b = \"{}\" }}\n",
        origin.addr, a.addr, b.addr
    );
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    let fastly = CdnApi::start(ProviderKind::Fastly);
    let (ta, tb) = (cf.target(), fastly.target());
    let (dir, path) = config_file(&s);
    let store = dir.path().join("purges.redb");
    let srv = TestServer::start_file_with(&path, false, move |cfg| {
        cfg.targets[0].purge = Some(ta.clone());
        cfg.targets[1].purge = Some(tb.clone());
        cfg.purge.store = store.clone();
    });
    Rig {
        http: Http::new(srv.admin.unwrap()),
        srv,
        origin,
        a,
        b,
        _apis: (cf, fastly),
        _dir: dir,
    }
}

/// The CNAME www.example.com is answered with.
fn answer(srv: &TestServer) -> String {
    let m = udp(srv.udp, &query("www.example.com.", RecordType::A, None));
    match m.answers.first().map(|r| &r.data) {
        Some(RData::CNAME(c)) => c.0.to_string(),
        other => panic!("no CNAME answer: {other:?}"),
    }
}

fn events(http: &Http, kind: &str) -> Vec<Value> {
    let v = http
        .get(&format!("/v1/events?kind={kind}"))
        .expect(200)
        .json();
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_purge_is_verified_on_the_cdn_that_dropped_the_object_and_not_on_the_other() {
    let r = rig(
        "verify = true\nstale_grace = 3600\ncheck_every = 3600\n",
        Versioned::start("\"v2\"", ""),
        // cdn-a: the purge made it fetch again (a miss with the new version)...
        Versioned::start("\"v2\"", "MISS"),
        // ...cdn-b still serves the old object from its cache.
        Versioned::start("\"v1\"", "HIT"),
    );
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": ["http://www.example.com/app.css"], "priority": "critical"}),
        )
        .json();
    let id = v["id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    let done = wait_until(Duration::from_secs(10), || {
        last = r.http.get(&format!("/v1/purges/{id}")).expect(200).json();
        ["cdn-a", "cdn-b"]
            .iter()
            .all(|t| !last["cdns"][t]["verified"].is_null())
    });
    assert!(done.is_some(), "never verified: {last:#}");
    let a = &last["cdns"]["cdn-a"];
    let b = &last["cdns"]["cdn-b"];
    assert_eq!(a["state"], "confirmed", "{last:#}");
    assert_eq!(a["verified"], true, "{last:#}");
    assert!(
        a["verification"]["canaries"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("MISS"),
        "{last:#}"
    );
    assert_eq!(b["state"], "confirmed", "{last:#}");
    assert_eq!(b["verified"], false, "{last:#}");
    let why = b["verification"]["canaries"][0]["detail"].as_str().unwrap();
    assert_eq!(
        why, "HIT; etag \"v1\" differs from the origin's \"v2\"",
        "{last:#}"
    );
    assert_eq!(
        b["verification"]["canaries"][0]["url"],
        "http://www.example.com/app.css"
    );
    // A purge that covers no canary is not verified.
    let v = r
        .http
        .post(
            "/v1/purges",
            json!({"urls": ["http://www.example.com/other.css"], "priority": "critical"}),
        )
        .json();
    assert_eq!(v["state"], "confirmed", "{v:#}");
    assert!(v["cdns"]["cdn-a"]["verified"].is_null(), "{v:#}");
    let metrics = r.http.get("/metrics").expect(200).text;
    assert!(
        metrics
            .contains("steerd_purge_verifications_total{result=\"unverified\",target=\"cdn-b\"} 1"),
        "{metrics}"
    );
    let _ = (&r.origin, &r.a, &r.b);
}

#[test]
fn a_cdn_serving_the_old_version_past_the_grace_is_stale_demoted_and_explained() {
    let r = rig(
        "stale_grace = 1\ncheck_every = 0.2\ndemote_stale = true\n",
        Versioned::start("\"v2\"", ""),
        Versioned::start("\"v1\"", "HIT"),
        Versioned::start("\"v2\"", "HIT"),
    );
    // Within the grace cdn-a still answers.
    assert_eq!(answer(&r.srv), "cdn-a.example.net.");
    let stale = wait_until(Duration::from_secs(10), || {
        !events(&r.http, "cdn_stale").is_empty()
    });
    assert!(stale.is_some(), "no cdn_stale event");
    let ev = &events(&r.http, "cdn_stale")[0];
    assert_eq!(ev["subject"], "cdn-a", "{ev:#}");
    let summary = ev["summary"].as_str().unwrap();
    assert!(
        summary.contains("stale content: /app.css etag \"v1\" vs origin \"v2\""),
        "{summary}"
    );
    let metrics = r.http.get("/metrics").expect(200).text;
    assert!(
        metrics.contains("steerd_cdn_stale{target=\"cdn-a\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steerd_cdn_stale{target=\"cdn-b\"} 0"),
        "{metrics}"
    );
    // The answer moves to the fresh CDN, and explain says why.
    let moved = wait_until(Duration::from_secs(5), || {
        answer(&r.srv) == "cdn-b.example.net."
    });
    assert!(moved.is_some(), "answer stayed on {}", answer(&r.srv));
    let v = r
        .http
        .get("/v1/resolve?name=www.example.com&client=192.0.2.1")
        .expect(200)
        .json();
    let text = v["explain"]["text"].as_str().unwrap();
    assert!(
        text.contains("cdn-a behind: stale content: /app.css etag \"v1\" vs origin \"v2\" for "),
        "{text}"
    );
    let t = r.http.get("/v1/targets/cdn-a").expect(200).json();
    assert!(
        t["stale_content"]["reason"]
            .as_str()
            .is_some_and(|w| w.contains("etag \"v1\" vs origin \"v2\"")),
        "{t:#}"
    );
    // cdn-a serves the current version: fresh, and the answer returns.
    r.a.set("\"v2\"", "MISS");
    let fresh = wait_until(Duration::from_secs(10), || {
        !events(&r.http, "cdn_fresh").is_empty()
    });
    assert!(fresh.is_some(), "no cdn_fresh event");
    let back = wait_until(Duration::from_secs(5), || {
        answer(&r.srv) == "cdn-a.example.net."
    });
    assert!(back.is_some(), "answer stayed on {}", answer(&r.srv));
    let metrics = r.http.get("/metrics").expect(200).text;
    assert!(
        metrics.contains("steerd_cdn_stale{target=\"cdn-a\"} 0"),
        "{metrics}"
    );
    let t = r.http.get("/v1/targets/cdn-a").expect(200).json();
    assert!(t["stale_content"].is_null(), "{t:#}");
    let _ = (&r.origin, &r.b);
}
