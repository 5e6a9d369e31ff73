//! Admin HTTP API contract tests over real HTTP (issue 6): every route with its status codes and
//! key fields, auth, validation errors naming the field, If-Match, the file edited behind the
//! server's back, RUM / usage / cache metrics changing decisions, events, `/metrics`. After a
//! write the effect is checked end to end with real DNS queries (UDP and TCP) to the server.
//!
//! Every test starts its own server from a configuration FILE in a temporary directory
//! (`TestServer::start_file`): the demo configuration plus two networks placed by `[[geo.nets]]`
//! (there is no GeoIP database in these tests): 198.51.100.0/24 in DE (EU) and 203.0.113.0/24
//! in the US (NA).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::admin::FileServer as Fixture;
use common::config::{EU_NET, NO_GEODB, US_NET, demo_with_nets, zone_ns1};
use common::http::{Body, Http, Resp};
use common::{TestServer, dns};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

const READ_TOKEN: &str = "read-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Poll `f` every 50 ms until it gives Some, for at most `secs` seconds.
#[track_caller]
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many items the listing at `path` holds under `key`.
fn listed(h: &Http, path: &str, key: &str) -> usize {
    h.get(path).expect(200).json()[key]
        .as_array()
        .unwrap()
        .len()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

/// The answer section's data as text, sorted.
fn rdata(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// What `name` answers (A query) over UDP and TCP — both must agree: the target when it is a
/// steered answer ("cdn-a", "cdn-b", "origin"), else the rcode or the data.
#[track_caller]
fn answer(srv: &TestServer, name: &str, ecs: Option<&str>) -> String {
    let (a, b) = answers(srv, name, ecs);
    assert_eq!(a, b, "{name} (ecs {ecs:?}): UDP and TCP answers differ");
    a
}

/// What `name` answers over UDP and over TCP, in that order (see [`answer`]). The two can
/// differ only while a table swap lands between the two queries.
#[track_caller]
fn answers(srv: &TestServer, name: &str, ecs: Option<&str>) -> (String, String) {
    let u = dns(srv, name, RecordType::A, ecs, false);
    let t = dns(srv, name, RecordType::A, ecs, true);
    let show = |m: &Message| -> String {
        if m.metadata.response_code != ResponseCode::NoError {
            return format!("{:?}", m.metadata.response_code);
        }
        let d = rdata(m);
        match d.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["example.global.cdn-a.net."] => "cdn-a".into(),
            ["example.b-cdn.example.net."] => "cdn-b".into(),
            ["192.0.2.80"] => "origin".into(),
            _ => d.join(" "),
        }
    };
    (show(&u), show(&t))
}

/// Wait until `name` answers `want` for `ecs` over both UDP and TCP (the control loop may need
/// a tick, and its swap may land between the UDP and the TCP query of one round).
#[track_caller]
fn wait_answer(srv: &TestServer, name: &str, ecs: Option<&str>, want: &str) {
    let mut last = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        last = answers(srv, name, ecs);
        if last.0 == want && last.1 == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} (ecs {ecs:?}): expected {want}, still {last:?} (UDP, TCP)");
}

// ---------------------------------------------------------------------------------------------
// check-config, for comparing validation messages
// ---------------------------------------------------------------------------------------------

/// What `steerd check-config FILE` prints for `text`: one "FIELD: message" per problem (the
/// "FILE:LINE: " prefix removed).
fn check_config(dir: &Path, text: &str) -> Vec<String> {
    let p = dir.join("candidate.toml");
    std::fs::write(&p, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerd"))
        .arg("check-config")
        .arg(&p)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "check-config accepted the invalid file:\n{text}"
    );
    let prefix = format!("{}:", p.display());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            // LINE: FIELD: message (the line number may be missing)
            match rest.split_once(": ") {
                Some((line, tail)) if line.chars().all(|c| c.is_ascii_digit()) => tail.to_string(),
                _ => rest.trim_start().to_string(),
            }
        })
        .collect()
}

/// The API's 422 issues as "FIELD: message".
fn issues(r: &Resp) -> Vec<String> {
    let j = r.json();
    j["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no issues array in {j}", r.what))
        .iter()
        .map(|i| {
            format!(
                "{}: {}",
                i["field"].as_str().unwrap(),
                i["message"].as_str().unwrap()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metrics text
// ---------------------------------------------------------------------------------------------

/// A parsed Prometheus text exposition: (name, labels) → value.
#[derive(Debug, Default)]
struct Metrics {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Metrics {
    /// Parse strictly: every sample line is `name{labels} value`, with a float value, and its
    /// family has `# HELP` and `# TYPE` lines before it; no series twice.
    fn parse(text: &str) -> Metrics {
        let mut help = std::collections::BTreeSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Metrics::default();
        for (n, line) in text.lines().enumerate() {
            let ln = n + 1;
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(help.insert(name.to_string()), "line {ln}: second HELP");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("line {ln}: TYPE without a type"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "line {ln}: unknown type {t}"
                );
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "line {ln}: second TYPE"
                );
                continue;
            }
            assert!(!line.starts_with('#'), "line {ln}: stray comment {line:?}");
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("line {ln}: no value: {line:?}"));
            let name = &line[..name_end];
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && !name.starts_with(|c: char| c.is_ascii_digit()),
                "line {ln}: bad metric name {name:?}"
            );
            let mut rest = &line[name_end..];
            let mut labels = BTreeMap::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                let mut end = None;
                while let Some(&(i, c)) = chars.peek() {
                    if c == '}' {
                        end = Some(i);
                        break;
                    }
                    if c == ',' {
                        chars.next();
                        continue;
                    }
                    let start = i;
                    while let Some(&(_, c)) = chars.peek() {
                        if c == '=' {
                            break;
                        }
                        chars.next();
                    }
                    let (eq, _) = chars
                        .next()
                        .unwrap_or_else(|| panic!("line {ln}: label without ="));
                    let key = &r[start..eq];
                    assert!(
                        !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "line {ln}: bad label name {key:?}"
                    );
                    assert_eq!(
                        chars.next().map(|x| x.1),
                        Some('"'),
                        "line {ln}: label value not quoted"
                    );
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c @ ('\\' | '"'))) => value.push(c),
                                other => panic!("line {ln}: bad escape {other:?}"),
                            },
                            Some((_, c)) => value.push(c),
                            None => panic!("line {ln}: unterminated label value"),
                        }
                    }
                    assert!(
                        labels.insert(key.to_string(), value).is_none(),
                        "line {ln}: label {key} twice"
                    );
                }
                let end = end.unwrap_or_else(|| panic!("line {ln}: no closing brace"));
                rest = &r[end + 1..];
            }
            let value = rest
                .strip_prefix(' ')
                .unwrap_or_else(|| panic!("line {ln}: no space before the value: {line:?}"));
            let value = value.split(' ').next().unwrap();
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                s => s
                    .parse()
                    .unwrap_or_else(|_| panic!("line {ln}: value {s:?} is not a float")),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|base| {
                            matches!(
                                types.get(*base).map(String::as_str),
                                Some("histogram" | "summary")
                            )
                        })
                        .map(str::to_string)
                })
                .unwrap_or_else(|| name.to_string());
            assert!(
                types.contains_key(&family),
                "line {ln}: {name} has no # TYPE"
            );
            assert!(help.contains(&family), "line {ln}: {name} has no # HELP");
            assert!(
                out.samples.insert((name.to_string(), labels), v).is_none(),
                "line {ln}: series twice: {line}"
            );
        }
        out
    }

    /// The value of the series with exactly these labels (None when absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), want)).copied()
    }

    /// A counter (0 when the series does not exist yet).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn scrape(http: &Http) -> Metrics {
    let r = http.get("/metrics").expect(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "metrics content type {ct}");
    Metrics::parse(&r.text)
}

// ---------------------------------------------------------------------------------------------
// 1. Every route, happy path
// ---------------------------------------------------------------------------------------------

#[test]
fn status_config_openapi_and_unknown_routes() {
    let f = Fixture::start(&demo_with_nets());
    let r = f.http.get("/v1/status").expect(200);
    let s = r.json();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["config_version"], 0, "the demo has no version key: 0");
    assert_eq!(r.etag(), 0);
    assert!(s["generation"].as_u64().is_some(), "{s}");
    assert!(s["uptime_seconds"].as_u64().is_some_and(|u| u < 60), "{s}");
    assert_eq!(s["zones"], 1);
    assert_eq!(s["targets"], 3);
    assert_eq!(s["services"], 4);
    assert_eq!(s["auth"], false);
    assert_eq!(
        s["config_file"].as_str(),
        Some(f.path.display().to_string().as_str())
    );

    // The configuration text, exactly as in the file, with its version as ETag.
    let r = f.http.get("/v1/config").expect(200);
    assert_eq!(r.text, f.file());
    assert_eq!(r.etag(), 0);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/toml"),
        "{:?}",
        r.header("content-type")
    );

    let r = f.http.get("/v1/openapi.json").expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some(), "{doc}");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );

    // Unknown routes: 404 with a JSON error; a known path with another method is not a 200.
    for p in ["/v1/nope", "/", "/v1/targets/cdn-a/nope", "/v2/status"] {
        let r = f.http.get(p).expect(404);
        assert!(r.error().contains("no such route"), "{p}: {}", r.text);
    }
    let r = f.http.post("/v1/status", json!({}));
    assert_eq!(r.status, 405, "{}", r.text);
    // Unknown resources are 404 too.
    for p in [
        "/v1/targets/nope",
        "/v1/services/nope.example.com",
        "/v1/zones/nope.example",
        "/v1/zones/nope.example/records",
        "/v1/zones/example.com/records/nope/A",
    ] {
        let r = f.http.get(p).expect(404);
        assert!(r.error().contains("nope"), "{p}: {}", r.text);
    }
}

/// The OpenAPI document describes every route of the API.
#[test]
fn openapi_documents_every_route() {
    let f = Fixture::start(&demo_with_nets());
    let doc = f.http.get("/v1/openapi.json").expect(200).json();
    let paths = doc["paths"].as_object().expect("paths object");
    for (p, methods) in [
        ("/v1/status", &["get"][..]),
        ("/v1/config", &["get"]),
        ("/v1/targets", &["get"]),
        ("/v1/targets/{name}", &["get", "put", "delete"]),
        ("/v1/targets/{name}/override", &["put", "delete"]),
        ("/v1/overrides", &["get"]),
        ("/v1/targets/{name}/usage", &["put", "delete"]),
        ("/v1/targets/{name}/cache-metrics", &["put"]),
        ("/v1/services", &["get"]),
        ("/v1/services/{name}", &["get", "put", "delete"]),
        ("/v1/zones", &["get"]),
        ("/v1/zones/{zone}", &["get", "put", "delete"]),
        ("/v1/zones/{zone}/records", &["get"]),
        (
            "/v1/zones/{zone}/records/{name}/{type}",
            &["get", "put", "delete"],
        ),
        ("/v1/resolve", &["get"]),
        ("/v1/observations", &["post"]),
        ("/v1/rum", &["post"]),
        ("/v1/events", &["get"]),
        ("/v1/reload", &["post"]),
        ("/metrics", &["get"]),
    ] {
        // Path parameters may be named differently ({rtype} for {type}).
        let norm = |s: &str| {
            s.split('/')
                .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
                .collect::<Vec<_>>()
                .join("/")
        };
        let entry = paths
            .iter()
            .find(|(k, _)| norm(k) == norm(p))
            .map(|(_, v)| v)
            .unwrap_or_else(|| {
                panic!(
                    "{p} is not in the OpenAPI document (paths: {:?})",
                    paths.keys().collect::<Vec<_>>()
                )
            });
        for m in methods {
            assert!(entry.get(*m).is_some(), "{p}: no {m} operation in {entry}");
        }
    }
}

#[test]
fn targets_crud_with_etags_and_dns_effect() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    let gen0 = h.get("/v1/status").expect(200).json()["generation"]
        .as_u64()
        .unwrap();
    let r = h.get("/v1/targets").expect(200);
    assert_eq!(r.etag(), 0);
    let list = r.json();
    let names: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cdn-a", "cdn-b", "origin"]);

    let a = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(a["name"], "cdn-a");
    assert_eq!(a["state"], "healthy");
    assert_eq!(a["config"]["cname"], "example.global.cdn-a.net");
    assert_eq!(
        a["config"]["check"]["url"], "http://www.example.com/health",
        "the config form keeps the check table: {a}"
    );
    assert_eq!(a["override"], Value::Null);

    // Create: 201, version 1.
    let r = h
        .put("/v1/targets/cdn-c", json!({"a": ["192.0.2.99"]}))
        .expect(201);
    assert_eq!(r.etag(), 1);
    let b = r.json();
    assert_eq!(b["version"], 1);
    assert_eq!(b["created"], true);
    assert_eq!(b["persisted"], true);
    assert_eq!(b["target"], "cdn-c");
    // The write swapped a new routing table in: the generation the status reports.
    let generation = b["generation"].as_u64().unwrap();
    assert!(generation > gen0, "generation {generation} after {gen0}");
    assert_eq!(
        h.get("/v1/status").expect(200).json()["generation"],
        generation
    );
    let file = f.file();
    assert!(file.contains("name = \"cdn-c\""), "{file}");
    assert!(file.contains("version = 1"), "{file}");
    let c = h.get("/v1/targets/cdn-c").expect(200);
    assert_eq!(c.etag(), 1);
    assert_eq!(
        c.json()["config"],
        json!({"name": "cdn-c", "a": ["192.0.2.99"]})
    );

    // Replace: 200, version 2; the body's name may repeat the path's, not differ.
    let r = h
        .put(
            "/v1/targets/cdn-c",
            json!({"name": "cdn-c", "a": ["192.0.2.98", "192.0.2.99"]}),
        )
        .expect(200);
    assert_eq!(r.etag(), 2);
    assert_eq!(r.json()["created"], false);
    assert_eq!(
        h.get("/v1/targets/cdn-c").expect(200).json()["config"]["a"],
        json!(["192.0.2.98", "192.0.2.99"])
    );
    let r = h
        .put(
            "/v1/targets/cdn-c",
            json!({"name": "cdn-d", "a": ["192.0.2.1"]}),
        )
        .expect(400);
    assert!(r.error().contains("cdn-d"), "{}", r.text);

    // A service using it answers over DNS.
    let r = h
        .put(
            "/v1/services/c.example.com",
            json!({"policy": "failover", "targets": [{"target": "cdn-c"}]}),
        )
        .expect(201);
    assert_eq!(r.etag(), 3);
    assert_eq!(
        answer(&f.srv, "c.example.com", None),
        "192.0.2.98 192.0.2.99"
    );

    // Deleting a target a service still uses is refused, naming the service's field.
    let r = h.delete("/v1/targets/cdn-c").expect(422);
    let is = issues(&r);
    assert!(
        is.iter()
            .any(|i| i.starts_with("services[4].targets[0].target:") && i.contains("cdn-c")),
        "{is:?}"
    );
    assert_eq!(f.version(), 3);

    h.delete("/v1/services/c.example.com").expect(200);
    assert_eq!(answer(&f.srv, "c.example.com", None), "NXDomain");
    // An override of it goes with it.
    h.put(
        "/v1/targets/cdn-c/override",
        json!({"state": "drained", "reason": "going away"}),
    )
    .expect(200);
    let r = h.delete("/v1/targets/cdn-c").expect(200);
    assert_eq!(r.etag(), 6);
    assert!(listed(h, "/v1/overrides", "overrides") == 0);
    assert_eq!(r.json()["deleted"], "cdn-c");
    h.get("/v1/targets/cdn-c").expect(404);
    h.delete("/v1/targets/cdn-c").expect(404);
    assert!(!f.file().contains("cdn-c"));
    assert_eq!(f.version(), 6);
}

#[test]
fn services_crud_with_answers_per_cell() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    let r = h.get("/v1/services").expect(200);
    assert_eq!(r.etag(), 0);
    let list = r.json();
    let svcs = list["services"].as_array().unwrap();
    let names: Vec<&str> = svcs.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "www.example.com.",
            "split.example.com.",
            "near.example.com.",
            "assets.example.com."
        ]
    );
    let policies: Vec<&str> = svcs.iter().map(|s| s["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["geo", "weighted", "proximity", "failover"]);

    let a = h.get("/v1/services/assets.example.com").expect(200).json();
    assert_eq!(a["policy"], "failover");
    assert_eq!(a["all_down"], false);
    assert_eq!(
        a["answers"],
        json!([{"cell": "all clients", "regions": ["all"], "kind": "targets",
                "targets": [["cdn-a", null]], "ttl": 30, "all_down": false}]),
        "{a}"
    );
    assert_eq!(a["config"]["policy"], "failover");
    // Names are matched like DNS names: case and trailing dot do not matter.
    h.get("/v1/services/ASSETS.example.com.").expect(200);

    // www: EU → cdn-b, NA → cdn-a, a weighted default.
    let w = h.get("/v1/services/www.example.com").expect(200).json();
    let cells = w["answers"].as_array().unwrap();
    let cell_of = |region: &str| {
        cells
            .iter()
            .find(|c| {
                c["regions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_str().unwrap_or("").starts_with(region))
            })
            .unwrap_or_else(|| panic!("no cell for {region} in {w}"))
    };
    assert_eq!(cell_of("EU")["targets"][0][0], "cdn-b", "{w}");
    assert_eq!(cell_of("NA")["targets"][0][0], "cdn-a", "{w}");

    // Create a geo service: answered per region over DNS.
    let r = h
        .put(
            "/v1/services/shop.example.com",
            json!({
                "policy": "geo",
                "ttl": 20,
                "geo": {"EU": ["cdn-a", "cdn-b"], "default": ["cdn-b", "origin"]}
            }),
        )
        .expect(201);
    assert_eq!(r.etag(), 1);
    assert_eq!(r.json()["service"], "shop.example.com");
    assert_eq!(answer(&f.srv, "shop.example.com", Some(EU_NET)), "cdn-a");
    assert_eq!(answer(&f.srv, "shop.example.com", Some(US_NET)), "cdn-b");
    assert_eq!(answer(&f.srv, "shop.example.com", None), "cdn-b");
    let m = dns(&f.srv, "shop.example.com", RecordType::A, None, false);
    assert_eq!(m.answers[0].ttl, 20);
    let s = h.get("/v1/services/shop.example.com").expect(200).json();
    assert_eq!(s["ttl"], 20);
    assert_eq!(s["config"]["geo"]["EU"], json!(["cdn-a", "cdn-b"]));

    // Replace it: 200, the answer changes.
    let r = h
        .put(
            "/v1/services/shop.example.com",
            json!({"policy": "failover", "targets": [{"target": "origin"}]}),
        )
        .expect(200);
    assert_eq!(r.etag(), 2);
    assert_eq!(r.json()["created"], false);
    assert_eq!(answer(&f.srv, "shop.example.com", Some(EU_NET)), "origin");
    let s = h.get("/v1/services/shop.example.com").expect(200).json();
    assert_eq!(s["answers"][0]["targets"], json!([["origin", null]]));
    assert_eq!(listed(h, "/v1/services", "services"), 5);

    // Delete: 200, then 404, and the name is gone from DNS.
    let r = h.delete("/v1/services/shop.example.com").expect(200);
    assert_eq!(r.etag(), 3);
    h.get("/v1/services/shop.example.com").expect(404);
    h.delete("/v1/services/shop.example.com").expect(404);
    assert_eq!(answer(&f.srv, "shop.example.com", None), "NXDomain");
}

#[test]
fn zones_and_records_crud_with_dns_effect() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    let r = h.get("/v1/zones").expect(200);
    assert_eq!(r.etag(), 0);
    let zones = r.json();
    assert_eq!(zones["zones"].as_array().unwrap().len(), 1);
    assert_eq!(zones["zones"][0]["name"], "example.com");
    let z = h.get("/v1/zones/example.com").expect(200).json();
    assert_eq!(z["ns"], json!(["ns1.example.com", "ns2.example.com"]));
    assert_eq!(z["soa"]["serial"], 2026112201);
    h.get("/v1/zones/EXAMPLE.com.").expect(200);

    let recs = h.get("/v1/zones/example.com/records").expect(200).json();
    assert_eq!(recs["records"].as_array().unwrap().len(), 11, "{recs}");
    let st = h.get("/v1/zones/example.com/records/static/A").expect(200);
    assert_eq!(st.etag(), 0);
    let st = st.json();
    assert_eq!(st["type"], "A");
    assert_eq!(
        st["records"][0]["data"],
        json!(["192.0.2.10", "192.0.2.11"])
    );
    h.get("/v1/zones/example.com/records/static/a").expect(200);

    // A new A record: 201, resolvable over UDP and TCP.
    assert_eq!(answer(&f.srv, "new.example.com", None), "NXDomain");
    let r = h
        .put(
            "/v1/zones/example.com/records/new/A",
            json!({"data": "192.0.2.77", "ttl": 120}),
        )
        .expect(201);
    assert_eq!(r.etag(), 1);
    let b = r.json();
    assert_eq!(b["created"], true);
    assert_eq!(b["type"], "A");
    assert_eq!(answer(&f.srv, "new.example.com", None), "192.0.2.77");
    let m = dns(&f.srv, "new.example.com", RecordType::A, None, true);
    assert_eq!(m.answers[0].ttl, 120);
    assert!(m.metadata.authoritative);

    // Replace the RRset: 200, both addresses.
    let r = h
        .put(
            "/v1/zones/example.com/records/new/a",
            json!({"data": ["192.0.2.78", "192.0.2.77"]}),
        )
        .expect(200);
    assert_eq!(r.etag(), 2);
    assert_eq!(r.json()["created"], false);
    assert_eq!(
        answer(&f.srv, "new.example.com", None),
        "192.0.2.77 192.0.2.78"
    );
    let g = h
        .get("/v1/zones/example.com/records/new/A")
        .expect(200)
        .json();
    assert_eq!(g["records"].as_array().unwrap().len(), 1, "one RRset: {g}");
    assert_eq!(g["records"][0]["data"], json!(["192.0.2.78", "192.0.2.77"]));

    // A TXT record next to it.
    h.put(
        "/v1/zones/example.com/records/new/TXT",
        json!({"data": "hello"}),
    )
    .expect(201);
    let m = dns(&f.srv, "new.example.com", RecordType::TXT, None, false);
    assert_eq!(rdata(&m), ["hello"]);
    assert_eq!(listed(h, "/v1/zones/example.com/records", "records"), 13);

    // Delete the A RRset: the TXT stays, A is NODATA.
    let r = h.delete("/v1/zones/example.com/records/new/A").expect(200);
    assert_eq!(r.etag(), 4);
    h.get("/v1/zones/example.com/records/new/A").expect(404);
    h.delete("/v1/zones/example.com/records/new/A").expect(404);
    let m = dns(&f.srv, "new.example.com", RecordType::A, None, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "NODATA: {:?}", m.answers);
    h.delete("/v1/zones/example.com/records/new/TXT")
        .expect(200);
    assert_eq!(answer(&f.srv, "new.example.com", None), "NXDomain");
    h.put(
        "/v1/zones/nope.example/records/x/A",
        json!({"data": "192.0.2.1"}),
    )
    .expect(404);

    // A new zone with its records: 201, authoritative over DNS; then deleted: REFUSED.
    assert_eq!(answer(&f.srv, "www.other.example", None), "Refused");
    let r = h
        .put(
            "/v1/zones/other.example",
            json!({
                "ns": ["ns1.example.com"],
                "soa": {"mname": "ns1.example.com", "rname": "hostmaster.example.com", "serial": 7},
                "records": [
                    {"name": "www", "type": "A", "data": "192.0.2.201"},
                    {"name": "@", "type": "TXT", "data": "other"}
                ]
            }),
        )
        .expect(201);
    assert_eq!(r.etag(), 6);
    assert_eq!(answer(&f.srv, "www.other.example", None), "192.0.2.201");
    let m = dns(&f.srv, "other.example", RecordType::SOA, None, true);
    assert_eq!(m.answers.len(), 1);
    assert!(rdata(&m)[0].contains(" 7 "), "{:?}", rdata(&m));
    assert_eq!(listed(h, "/v1/zones", "zones"), 2);
    let z = h.get("/v1/zones/other.example/records").expect(200).json();
    assert_eq!(z["records"].as_array().unwrap().len(), 2, "{z}");
    h.get("/v1/zones/other.example/records/www/A").expect(200);
    // The file holds it as [[zones.records]] tables of the new zone.
    let file: toml::Table = toml::from_str(&f.file()).unwrap();
    let z1 = &file["zones"].as_array().unwrap()[1];
    assert_eq!(z1["name"].as_str(), Some("other.example"));
    assert_eq!(z1["records"].as_array().unwrap().len(), 2, "{z1}");

    // Replace the zone: 200.
    let r = h
        .put(
            "/v1/zones/other.example",
            json!({
                "ns": ["ns1.example.com"],
                "soa": {"mname": "ns1.example.com", "rname": "hostmaster.example.com", "serial": 8},
                "records": [{"name": "www", "type": "A", "data": "192.0.2.202"}]
            }),
        )
        .expect(200);
    assert_eq!(r.json()["created"], false);
    assert_eq!(answer(&f.srv, "www.other.example", None), "192.0.2.202");

    let r = h.delete("/v1/zones/other.example").expect(200);
    assert_eq!(r.etag(), 8);
    h.get("/v1/zones/other.example").expect(404);
    h.delete("/v1/zones/other.example").expect(404);
    assert_eq!(answer(&f.srv, "www.other.example", None), "Refused");
    // The demo zone is untouched.
    assert_eq!(
        answer(&f.srv, "static.example.com", None),
        "192.0.2.10 192.0.2.11"
    );
}

#[test]
fn global_override_fails_over_and_clears() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");

    let before = now_s();
    let r = h
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "forced_down", "for": "30m", "reason": "maintenance window"}),
        )
        .expect(200);
    assert_eq!(r.etag(), 1);
    let b = r.json();
    assert_eq!(b["state"], "forced_down");
    assert_eq!(b["region"], Value::Null);
    let until = b["until"].as_u64().expect("until");
    assert!(
        (before + 1800..=now_s() + 1801).contains(&until),
        "until {until}, now {before}"
    );

    // Over DNS: assets (failover cdn-a → cdn-b → origin) moves to cdn-b, for everyone.
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-b");
    assert_eq!(answer(&f.srv, "assets.example.com", Some(EU_NET)), "cdn-b");
    assert_eq!(answer(&f.srv, "assets.example.com", Some(US_NET)), "cdn-b");
    // www's NA region (cdn-a first) too.
    assert_eq!(answer(&f.srv, "www.example.com", Some(US_NET)), "cdn-b");

    let o = h.get("/v1/overrides").expect(200);
    assert_eq!(o.etag(), 1);
    let o = o.json();
    let list = o["overrides"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{o}");
    assert_eq!(list[0]["target"], "cdn-a");
    assert_eq!(list[0]["state"], "forced_down");
    assert_eq!(list[0]["until"], until);
    assert_eq!(list[0]["reason"], "maintenance window");
    assert_eq!(list[0]["expired"], false);
    assert!(list[0]["until_time"].as_str().unwrap().ends_with('Z'));

    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["state"], "forced_down");
    assert_eq!(t["override"]["state"], "forced_down");
    assert_eq!(t["override"]["until"], until);
    assert_eq!(t["override"]["reason"], "maintenance window");
    let file = f.file();
    assert!(file.contains("[[overrides]]"), "{file}");
    assert!(file.contains("reason = \"maintenance window\""), "{file}");

    // An override event, and resolve's explain says why.
    let ev = h.get("/v1/events?kind=override").expect(200).json();
    let evs = ev["events"].as_array().unwrap();
    assert!(
        evs.iter()
            .any(|e| e["subject"] == "cdn-a"
                && e["summary"].as_str().unwrap().contains("maintenance")),
        "{ev}"
    );
    let x = h
        .get("/v1/resolve?name=assets.example.com&client=192.0.2.1")
        .expect(200)
        .json();
    assert_eq!(x["steered"]["target"], "cdn-b");
    assert!(
        x["explain"]["text"]
            .as_str()
            .unwrap()
            .contains("forced_down"),
        "{x}"
    );

    // Replacing the override (same target, no region) keeps one; with `until`.
    let until2 = now_s() + 3600;
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "drained", "until": until2, "reason": "drain"}),
    )
    .expect(200);
    let o = h.get("/v1/overrides").expect(200).json();
    assert_eq!(o["overrides"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(o["overrides"][0]["state"], "drained");
    assert_eq!(o["overrides"][0]["until"], until2);
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-b");

    // Clear it: back to cdn-a.
    let r = h.delete("/v1/targets/cdn-a/override").expect(200);
    assert_eq!(r.json()["cleared"], true);
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");
    assert_eq!(
        h.get("/v1/targets/cdn-a").expect(200).json()["override"],
        Value::Null
    );
    assert!(listed(h, "/v1/overrides", "overrides") == 0);
    h.delete("/v1/targets/cdn-a/override").expect(404);

    // forced_up keeps a target in even when listed after others.
    h.put(
        "/v1/targets/cdn-b/override",
        json!({"state": "forced_up", "reason": "pin"}),
    )
    .expect(200);
    assert_eq!(
        h.get("/v1/targets/cdn-b").expect(200).json()["state"],
        "forced_up"
    );
}

#[test]
fn region_override_only_moves_that_regions_clients() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    for c in [Some(EU_NET), Some(US_NET), None] {
        assert_eq!(answer(&f.srv, "assets.example.com", c), "cdn-a");
    }
    let until = now_s() + 3600;
    let r = h
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "region": "EU", "until": until, "reason": "EU PoPs saturated"}),
        )
        .expect(200);
    assert_eq!(r.json()["region"], "EU");

    assert_eq!(answer(&f.srv, "assets.example.com", Some(EU_NET)), "cdn-b");
    assert_eq!(answer(&f.srv, "assets.example.com", Some(US_NET)), "cdn-a");
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");

    // The target itself is not overridden globally.
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["override"], Value::Null, "{t}");
    assert_ne!(t["state"], "drained");
    assert_eq!(
        t["region_overrides"],
        json!([{"state": "drained", "region": "EU", "until": until, "reason": "EU PoPs saturated"}])
    );
    let o = h.get("/v1/overrides").expect(200).json();
    assert_eq!(o["overrides"][0]["region"], "EU");
    // The services view agrees.
    let s = h.get("/v1/services/assets.example.com").expect(200).json();
    let cells = s["answers"].as_array().unwrap();
    assert!(
        cells.iter().any(|c| c["targets"][0][0] == "cdn-b"
            && c["regions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().starts_with("EU"))),
        "{s}"
    );
    let x = h
        .get(&format!(
            "/v1/resolve?name=assets.example.com&client={EU_NET}"
        ))
        .expect(200)
        .json();
    assert_eq!(x["steered"]["target"], "cdn-b", "{x}");

    // A global override of the same target coexists with the regional one.
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "forced_down", "reason": "everyone"}),
    )
    .expect(200);
    assert_eq!(listed(h, "/v1/overrides", "overrides"), 2);
    assert_eq!(answer(&f.srv, "assets.example.com", Some(US_NET)), "cdn-b");
    // Clearing the global one leaves the regional one.
    h.delete("/v1/targets/cdn-a/override").expect(200);
    assert_eq!(answer(&f.srv, "assets.example.com", Some(US_NET)), "cdn-a");
    assert_eq!(answer(&f.srv, "assets.example.com", Some(EU_NET)), "cdn-b");

    // Clear the regional one: EU clients are back on cdn-a.
    h.delete("/v1/targets/cdn-a/override?region=US").expect(404);
    h.delete("/v1/targets/cdn-a/override?region=EU").expect(200);
    assert_eq!(answer(&f.srv, "assets.example.com", Some(EU_NET)), "cdn-a");
    assert!(listed(h, "/v1/overrides", "overrides") == 0);
}

#[test]
fn overrides_expire_by_themselves() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    // A global override for 5 s and a regional one for 6 s (`until` is rounded up to a whole unix
    // second): time enough for the two checks below on a loaded CI machine.
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "forced_down", "for": 5, "reason": "blip"}),
    )
    .expect(200);
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "drained", "region": "EU", "for": "6s", "reason": "eu blip"}),
    )
    .expect(200);
    assert_eq!(answer(&f.srv, "assets.example.com", Some(US_NET)), "cdn-b");
    assert_eq!(answer(&f.srv, "assets.example.com", Some(EU_NET)), "cdn-b");

    // The health loop ends them without any write.
    wait_answer(&f.srv, "assets.example.com", Some(US_NET), "cdn-a");
    wait_answer(&f.srv, "assets.example.com", Some(EU_NET), "cdn-a");
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["override"], Value::Null, "{t}");
    assert_eq!(t["state"], "healthy", "{t}");
    assert_eq!(t["region_overrides"], json!([]), "{t}");
    // Still in the file (expired), shown as such.
    let o = h.get("/v1/overrides").expect(200).json();
    let list = o["overrides"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{o}");
    assert!(list.iter().all(|x| x["expired"] == true), "{o}");
    let ev = h
        .get("/v1/events?kind=override,recovery&subject=cdn-a")
        .expect(200)
        .json();
    let evs = ev["events"].as_array().unwrap();
    assert!(evs.iter().any(|e| e["kind"] == "recovery"), "{ev}");
    assert!(
        evs.iter()
            .filter(|e| e["kind"] == "override")
            .any(|e| e["summary"].as_str().unwrap().contains("EU")
                && (e["summary"].as_str().unwrap().contains("expired")
                    || e["summary"].as_str().unwrap().contains("ended"))),
        "{ev}"
    );
    // The next override write drops the expired ones from the file.
    h.put(
        "/v1/targets/cdn-b/override",
        json!({"state": "forced_up", "reason": "pin"}),
    )
    .expect(200);
    let o = h.get("/v1/overrides").expect(200).json();
    assert_eq!(o["overrides"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(o["overrides"][0]["target"], "cdn-b");
    assert!(!f.file().contains("blip"));
}

#[test]
fn override_bodies_are_checked() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let file = f.file();
    let bad = |body: Value, status: u16, needle: &str| {
        let r = h
            .put("/v1/targets/cdn-a/override", body.clone())
            .expect(status);
        let e = r.error();
        assert!(e.contains(needle), "{body}: {e:?} should name {needle:?}");
    };
    bad(json!({"state": "forced_down"}), 400, "reason");
    bad(
        json!({"state": "forced_down", "reason": "  "}),
        400,
        "reason",
    );
    bad(
        json!({"state": "forced_down", "reason": "x", "until": 1000}),
        400,
        "until",
    );
    bad(
        json!({"state": "forced_down", "reason": "x", "until": now_s() + 60, "for": "1h"}),
        400,
        "until",
    );
    bad(
        json!({"state": "forced_down", "reason": "x", "for": "soon"}),
        400,
        "for",
    );
    bad(
        json!({"state": "forced_down", "reason": "x", "for": -5}),
        400,
        "for",
    );
    bad(
        json!({"state": "forced_down", "reason": "x", "colour": "red"}),
        400,
        "colour",
    );
    bad(json!("forced_down"), 400, "invalid JSON body");
    // Values only the configuration can judge: 422 naming the field.
    let r = h
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "sideways", "reason": "x"}),
        )
        .expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.starts_with("overrides[0].state:")),
        "{:?}",
        issues(&r)
    );
    let r = h
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "region": "Atlantis", "reason": "x"}),
        )
        .expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.starts_with("overrides[0].region:")),
        "{:?}",
        issues(&r)
    );
    let r = h
        .put(
            "/v1/targets/nope/override",
            json!({"state": "drained", "reason": "x"}),
        )
        .expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.starts_with("overrides[0].target:") && i.contains("nope")),
        "{:?}",
        issues(&r)
    );
    // Nothing was written.
    assert_eq!(f.file(), file);
    assert_eq!(f.version(), 0);
    assert!(listed(h, "/v1/overrides", "overrides") == 0);
}

#[test]
fn resolve_explains_the_decision() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    let x = h
        .get(&format!(
            "/v1/resolve?name=www.example.com&client={EU_NET}&type=A"
        ))
        .expect(200)
        .json();
    assert_eq!(x["name"], "www.example.com.");
    assert_eq!(x["type"], "A");
    assert_eq!(x["client"], EU_NET);
    assert_eq!(x["located_by"], "ECS");
    assert_eq!(x["location"]["country"], "DE");
    assert_eq!(x["location"]["continent"], "EU");
    assert_eq!(x["rcode"], "NOERROR");
    assert_eq!(x["authoritative"], true);
    assert_eq!(
        x["steered"],
        json!({"service": "www.example.com.", "target": "cdn-b"})
    );
    let answers = x["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0]
            .as_str()
            .unwrap()
            .contains("example.b-cdn.example.net"),
        "{x}"
    );
    let e = &x["explain"];
    assert_eq!(e["service"], "www.example.com.");
    assert_eq!(e["policy"], "geo");
    assert_eq!(e["cell"], "region EU");
    let steps: Vec<&str> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.first(), Some(&"health"), "{e}");
    assert_eq!(steps.last(), Some(&"select"), "{e}");
    assert!(
        steps.contains(&"geo") && steps.iter().any(|s| s.starts_with("order")),
        "{e}"
    );
    assert_eq!(
        e["steps"].as_array().unwrap().last().unwrap()["output"],
        json!(["cdn-b"])
    );
    assert!(e["text"].as_str().unwrap().contains("cdn-b"));
    // The same as the DNS answer.
    assert_eq!(answer(&f.srv, "www.example.com", Some(EU_NET)), "cdn-b");

    // A US resolver address (no ECS).
    let x = h
        .get("/v1/resolve?name=www.example.com&client=203.0.113.9")
        .expect(200)
        .json();
    assert_eq!(x["located_by"], "resolver");
    assert_eq!(x["steered"]["target"], "cdn-a");
    assert_eq!(x["ecs_scope"], Value::Null);

    // Static records: no explain; AAAA.
    let x = h
        .get("/v1/resolve?name=static.example.com&client=192.0.2.1&type=aaaa")
        .expect(200)
        .json();
    assert_eq!(x["type"], "AAAA");
    assert!(
        x["answers"][0].as_str().unwrap().contains("2001:db8::10"),
        "{x}"
    );
    assert_eq!(x["explain"], Value::Null);
    assert_eq!(x["steered"], Value::Null);
    let x = h
        .get("/v1/resolve?name=nope.example.com&client=192.0.2.1")
        .expect(200)
        .json();
    assert_eq!(x["rcode"], "NXDOMAIN");

    // Bad parameters: 400 JSON naming the parameter.
    for (q, needle) in [
        ("name=www.example.com&client=not-an-ip", "client"),
        ("name=www.example.com&client=192.0.2.1&type=BOGUS", "type"),
        ("client=192.0.2.1", "name"),
        ("name=www.example.com", "client"),
    ] {
        let r = h.get(&format!("/v1/resolve?{q}")).expect(400);
        assert!(r.error().contains(needle), "{q}: {}", r.text);
    }
}

#[test]
fn observations_and_rum_are_accepted_per_item() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    let r = h
        .post(
            "/v1/observations",
            json!({"vantage": "fra1", "observations": [
                {"target": "cdn-a", "level": "http", "ok": true, "latency_ms": 12.5, "detail": "200 OK"},
                {"target": "nope", "level": "http", "ok": true, "latency_ms": 1},
                {"target": "cdn-a", "level": "sideways", "ok": true, "latency_ms": 1},
                {"target": "cdn-a", "level": "tcp", "ok": true, "latency_ms": 1, "at_ms": 1000},
            ]}),
        )
        .expect(202);
    let b = r.json();
    assert_eq!(b["accepted"], 1, "{b}");
    let rejected: Vec<u64> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2, 3], "{b}");
    assert!(b["rejected"][0]["error"].as_str().unwrap().contains("nope"));
    assert!(
        b["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("level")
    );
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert!(
        t["levels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["vantage"] == "fra1" && l["level"] == "http" && l["detail"] == "200 OK"),
        "{t}"
    );
    // Nothing accepted: 422. This node's own vantage, an empty one, unknown fields: 400.
    let r = h.post(
        "/v1/observations",
        json!({"vantage": "fra1", "observations": [
            {"target": "nope", "level": "http", "ok": true, "latency_ms": 1}]}),
    );
    r.expect(422);
    let r = h
        .post(
            "/v1/observations",
            json!({"vantage": "local", "observations": []}),
        )
        .expect(400);
    assert!(r.error().contains("vantage"), "{}", r.text);
    h.post(
        "/v1/observations",
        json!({"vantage": " ", "observations": []}),
    )
    .expect(400);
    let r = h
        .post(
            "/v1/observations",
            json!({"vantage": "fra1", "observations": [], "extra": 1}),
        )
        .expect(400);
    assert!(r.error().contains("extra"), "{}", r.text);

    let r = h
        .post(
            "/v1/rum",
            json!({"beacons": [
                {"target": "cdn-a", "country": "DE", "latency_ms": 30, "ok": true},
                {"target": "cdn-a", "client": "198.51.100.7", "latency_ms": 40, "ok": false},
                {"target": "cdn-a", "client": "198.51.100.7", "country": "DE", "latency_ms": 1, "ok": true},
                {"target": "nope", "country": "DE", "latency_ms": 1, "ok": true},
                {"target": "cdn-a", "country": "XX", "latency_ms": 1, "ok": true},
                {"target": "cdn-a", "latency_ms": 1, "ok": true},
                {"target": "cdn-a", "country": "DE", "latency_ms": -1, "ok": true},
            ]}),
        )
        .expect(202);
    let b = r.json();
    assert_eq!(b["accepted"], 2, "{b}");
    assert_eq!(b["rejected"].as_array().unwrap().len(), 5, "{b}");
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["rum"]["all"]["checks"], 2, "{t}");
    assert_eq!(t["rum"]["all"]["failures"], 1, "{t}");
    assert_eq!(t["rum"]["regions"]["EU"]["checks"], 2, "{t}");
    let r = h
        .post("/v1/rum", json!({"beacons": [{"target": "cdn-a", "country": "DE", "latency_ms": 1, "ok": true, "x": 1}]}))
        .expect(400);
    assert!(r.error().contains("x"), "{}", r.text);
}

#[test]
fn events_paginate_and_filter() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    for i in 0..5 {
        h.put(
            &format!("/v1/zones/example.com/records/ev{i}/A"),
            json!({"data": "192.0.2.1"}),
        )
        .expect(201);
    }
    h.put(
        "/v1/targets/cdn-b/override",
        json!({"state": "drained", "reason": "events test"}),
    )
    .expect(200);

    let all = h.get("/v1/events?limit=1000").expect(200).json();
    let all_ids: Vec<u64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(all_ids.len() >= 7, "{all}");
    assert!(all_ids.windows(2).all(|w| w[1] == w[0] + 1), "{all_ids:?}");
    assert_eq!(all["last_id"], *all_ids.last().unwrap());
    assert_eq!(all["more"], false);
    let e0 = &all["events"][0];
    for k in ["id", "kind", "severity", "summary", "time", "dedup_key"] {
        assert!(!e0[k].is_null(), "event without {k}: {e0}");
    }
    assert!(e0["time"].as_str().unwrap().ends_with('Z'));

    // Page by two.
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let p = h
            .get(&format!("/v1/events?after={after}&limit=2"))
            .expect(200)
            .json();
        let ids: Vec<u64> = p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert!(ids.len() <= 2);
        assert!(ids.iter().all(|&i| i > after), "{p}");
        if ids.is_empty() {
            assert_eq!(p["next_after"], after, "{p}");
            assert_eq!(p["more"], false);
            break;
        }
        assert_eq!(p["next_after"], *ids.last().unwrap(), "{p}");
        assert_eq!(p["more"], ids.len() == 2);
        after = p["next_after"].as_u64().unwrap();
        paged.extend(ids);
        assert!(paged.len() < 1000, "paging does not end");
    }
    // Events logged meanwhile (a health tick) may add ids at the end only.
    assert_eq!(paged[..all_ids.len()], all_ids[..]);

    // Kind filter.
    let c = h
        .get("/v1/events?kind=config_changed&limit=1000")
        .expect(200)
        .json();
    let cs = c["events"].as_array().unwrap();
    assert!(cs.len() >= 6, "{c}");
    assert!(cs.iter().all(|e| e["kind"] == "config_changed"));
    assert!(
        cs[0]["summary"].as_str().unwrap().contains("version 1"),
        "{c}"
    );
    let o = h
        .get("/v1/events?kind=override,failover&limit=1000")
        .expect(200)
        .json();
    let os = o["events"].as_array().unwrap();
    assert!(os.iter().any(|e| e["kind"] == "override"), "{o}");
    assert!(
        os.iter()
            .all(|e| e["kind"] == "override" || e["kind"] == "failover")
    );
    assert!(os.iter().all(|e| e["subject"] == "cdn-b"), "{o}");
    let s = h
        .get("/v1/events?subject=cdn-b&limit=1000")
        .expect(200)
        .json();
    assert_eq!(s["events"].as_array().unwrap().len(), os.len(), "{s}");

    // Bad parameters.
    let r = h.get("/v1/events?kind=bogus").expect(400);
    assert!(
        r.error().contains("bogus") && r.error().contains("failover"),
        "{}",
        r.text
    );
    h.get("/v1/events?limit=0").expect(400);
    h.get("/v1/events?limit=1001").expect(400);
    h.get("/v1/events?after=x").expect(400);
}

#[test]
fn reload_picks_up_the_file_and_rejects_a_bad_one() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    // Edit the file behind the server's back: the next API write is a conflict.
    let edited = format!(
        "{}\n[[zones.records]]\nname = \"disk\"\ntype = \"A\"\ndata = \"192.0.2.150\"\n",
        f.file()
    );
    // `[[zones.records]]` at the end belongs to the last zone: the only one.
    std::fs::write(&f.path, &edited).unwrap();
    assert_eq!(answer(&f.srv, "disk.example.com", None), "NXDomain");
    let r = h
        .put(
            "/v1/zones/example.com/records/api/A",
            json!({"data": "192.0.2.151"}),
        )
        .expect(409);
    assert!(r.error().contains("reload"), "{}", r.text);
    h.delete("/v1/zones/example.com/records/static/A")
        .expect(409);
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "drained", "reason": "x"}),
    )
    .expect(409);
    // The file was not touched by the refused writes.
    assert_eq!(f.file(), edited);
    let m0 = scrape(h);

    let r = h.post("/v1/reload", json!({})).expect(200);
    let b = r.json();
    assert_eq!(b["reloaded"], true);
    // The hand edit left `version` alone: a changed text gets the next version, never the
    // same ETag for two texts.
    assert_eq!(b["version"], 1);
    assert_eq!(r.etag(), 1);
    assert_eq!(answer(&f.srv, "disk.example.com", None), "192.0.2.150");
    assert_eq!(h.get("/v1/config").expect(200).text, edited);

    // Writes work again, and keep the hand edit.
    h.put(
        "/v1/zones/example.com/records/api/A",
        json!({"data": "192.0.2.151"}),
    )
    .expect(201);
    assert_eq!(answer(&f.srv, "api.example.com", None), "192.0.2.151");
    assert!(f.file().contains("192.0.2.150"));

    // A version written by hand is taken.
    assert!(f.file().contains("version = 2"), "{}", f.file());
    let text = f.file().replace("version = 2", "version = 41");
    std::fs::write(&f.path, &text).unwrap();
    let r = h.post("/v1/reload", Value::Null).expect(200);
    assert_eq!(r.json()["version"], 41);
    assert_eq!(f.version(), 41);

    // A broken file is rejected with the field, and the configuration in force keeps serving.
    let broken = text.replace("data = \"192.0.2.150\"", "data = \"192.0.2.999\"");
    std::fs::write(&f.path, &broken).unwrap();
    let r = h.post("/v1/reload", Value::Null).expect(422);
    let is = issues(&r);
    assert!(
        is.iter()
            .any(|i| i.contains("records") && i.contains(".data")),
        "{is:?}"
    );
    assert_eq!(answer(&f.srv, "disk.example.com", None), "192.0.2.150");
    assert_eq!(f.version(), 41);
    let m1 = scrape(h);
    let ok = |m: &Metrics| m.counter("steerd_config_reloads_total", &[("result", "ok")]);
    let err = |m: &Metrics| m.counter("steerd_config_reloads_total", &[("result", "error")]);
    assert_eq!(ok(&m1) - ok(&m0), 3.0, "two reloads and one write");
    assert_eq!(err(&m1) - err(&m0), 1.0, "one rejected reload");
}

// ---------------------------------------------------------------------------------------------
// 2. Auth and body limits
// ---------------------------------------------------------------------------------------------

fn with_tokens() -> String {
    format!(
        "{}\n[admin]\ntokens = [{{ token = \"{READ_TOKEN}\", scope = \"read\" }}, {{ token = \"{ADMIN_TOKEN}\", scope = \"admin\" }}]\nmax_body = 4096\n",
        demo_with_nets()
    )
}

#[test]
fn tokens_and_scopes() {
    let f = Fixture::start(&with_tokens());
    let addr = f.srv.admin.unwrap();
    let anon = Http::new(addr);
    let wrong = Http::with_token(addr, "wrong-token-0123456789");
    let read = Http::with_token(addr, READ_TOKEN);
    let admin = Http::with_token(addr, ADMIN_TOKEN);

    // No token: 401 with WWW-Authenticate, JSON error; a wrong token: 401 too.
    for (who, h) in [("anonymous", &anon), ("wrong token", &wrong)] {
        for (m, p) in [
            ("GET", "/v1/status"),
            ("GET", "/v1/targets"),
            ("GET", "/v1/config"),
            ("PUT", "/v1/targets/cdn-a/override"),
            ("POST", "/v1/reload"),
            ("DELETE", "/v1/targets/origin"),
        ] {
            let r = h.send(m, p, Body::Json(json!({})), &[]);
            assert_eq!(r.status, 401, "{who}: {m} {p}: {}", r.text);
            let wa = r.header("www-authenticate").unwrap_or_default();
            assert!(wa.starts_with("Bearer"), "{who}: {m} {p}: {wa:?}");
            assert!(!r.error().is_empty());
        }
    }
    // A malformed Authorization header is no token.
    let r = anon.send(
        "GET",
        "/v1/status",
        Body::None,
        &[("authorization", &format!("Basic {ADMIN_TOKEN}"))],
    );
    assert_eq!(r.status, 401);

    // Public routes.
    anon.get("/metrics").expect(200);
    anon.get("/v1/openapi.json").expect(200);

    // Read: every GET, no write.
    // ... except the raw configuration, which holds the tokens and sink secrets.
    let r = read.get("/v1/config").expect(403);
    assert!(r.error().contains("admin"), "{}", r.text);
    for p in [
        "/v1/status",
        "/v1/targets",
        "/v1/targets/cdn-a",
        "/v1/overrides",
        "/v1/services",
        "/v1/zones",
        "/v1/zones/example.com/records",
        "/v1/events",
        "/v1/resolve?name=www.example.com&client=192.0.2.1",
    ] {
        read.get(p).expect(200);
    }
    let s = read.get("/v1/status").expect(200).json();
    assert_eq!(s["auth"], true);
    for (m, p, body) in [
        (
            "PUT",
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "reason": "x"}),
        ),
        ("DELETE", "/v1/targets/cdn-a/override", Value::Null),
        ("PUT", "/v1/targets/cdn-d", json!({"a": ["192.0.2.1"]})),
        ("DELETE", "/v1/services/assets.example.com", Value::Null),
        ("PUT", "/v1/targets/cdn-a/usage", json!({"spend_usd": 1.0})),
        ("POST", "/v1/rum", json!({"beacons": []})),
        ("POST", "/v1/reload", Value::Null),
    ] {
        let r = read.send(m, p, Body::Json(body), &[]);
        assert_eq!(r.status, 403, "read token: {m} {p}: {}", r.text);
        assert!(r.error().contains("admin"), "{}", r.text);
    }
    // Nothing changed.
    assert_eq!(
        admin.get("/v1/status").expect(200).json()["config_version"],
        0
    );

    // Admin: reads and writes.
    admin.get("/v1/targets").expect(200);
    admin
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "reason": "admin"}),
        )
        .expect(200);
    admin.delete("/v1/targets/cdn-a/override").expect(200);
    admin.post("/v1/reload", Value::Null).expect(200);
    assert_eq!(
        read.get("/v1/status").expect(200).json()["config_version"],
        2
    );

    // The counters saw the refusals.
    let m = scrape(&anon);
    assert!(
        m.counter(
            "steerd_admin_requests_total",
            &[
                ("route", "/v1/status"),
                ("method", "GET"),
                ("status", "401")
            ]
        ) >= 2.0
    );
    assert!(
        m.counter(
            "steerd_admin_requests_total",
            &[
                ("route", "/v1/reload"),
                ("method", "POST"),
                ("status", "403")
            ]
        ) >= 1.0
    );

    // Tokens come from the configuration in force: a write that drops the read token's
    // entry revokes it. (Rewrite [admin] by hand, then reload.)
    let text = std::fs::read_to_string(&f.path).unwrap().replace(
        &format!("{{ token = \"{READ_TOKEN}\", scope = \"read\" }}, "),
        "",
    );
    std::fs::write(&f.path, text).unwrap();
    admin.post("/v1/reload", Value::Null).expect(200);
    read.get("/v1/status").expect(401);
    admin.get("/v1/status").expect(200);
}

#[test]
fn bodies_over_max_body_are_413_json() {
    let f = Fixture::start(&with_tokens());
    let admin = Http::with_token(f.srv.admin.unwrap(), ADMIN_TOKEN);
    let big = json!({"a": ["192.0.2.1"], "pad": "x".repeat(5000)});
    let r = admin.put("/v1/targets/big", big);
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.error().contains("max_body"), "{}", r.text);
    let mut beacons = Vec::new();
    for _ in 0..100 {
        beacons.push(json!({"target": "cdn-a", "country": "DE", "latency_ms": 1, "ok": true}));
    }
    let r = admin.post("/v1/rum", json!({ "beacons": beacons }));
    assert_eq!(r.status, 413, "{}", r.text);
    r.json();
    // Under the limit it is fine (and a body limit is no excuse for skipping auth).
    admin
        .put("/v1/targets/small", json!({"a": ["192.0.2.1"]}))
        .expect(201);
    let anon = Http::new(f.srv.admin.unwrap());
    let r = anon.put("/v1/targets/big2", json!({"pad": "x".repeat(5000)}));
    assert_eq!(r.status, 401, "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// 3. Validation errors
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_writes_name_the_field_like_check_config_and_change_nothing() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let dir = f.path.parent().unwrap().to_path_buf();
    let original = f.file();
    let unchanged = |what: &str| {
        assert_eq!(f.file(), original, "{what}: the file changed");
        assert_eq!(f.version(), 0, "{what}: the version changed");
    };
    // The issues of a refused write name `field` like check-config on the file with `added`
    // appended; nothing changed.
    let same_as_check_config = |r: &Resp, field: &str, added: &str, what: &str| {
        let api = issues(r);
        assert!(api.iter().any(|i| i.starts_with(field)), "{api:?}");
        let cli = check_config(&dir, &format!("{original}\n{added}"));
        assert_eq!(api, cli, "API issues vs check-config");
        unchanged(what);
    };

    // A service naming an unknown target.
    let r = h
        .put(
            "/v1/services/bad.example.com",
            json!({"policy": "failover", "targets": [{"target": "nope"}]}),
        )
        .expect(422);
    assert!(
        r.error().contains("services[4].targets[0].target"),
        "{}",
        r.text
    );
    // The candidate text was never saved: the issue names the field, not a line of it.
    let j = r.json();
    assert!(j["issues"][0]["line"].is_null(), "no line: {}", r.text);
    assert!(j.get("file").is_none(), "no file: {}", r.text);
    same_as_check_config(
        &r,
        "services[4].targets[0].target:",
        "[[services]]\nname = \"bad.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"nope\" }]\n",
        "unknown target",
    );
    h.get("/v1/services/bad.example.com").expect(404);
    assert_eq!(answer(&f.srv, "bad.example.com", None), "NXDomain");

    // A check interval below the minimum.
    let r = h
        .put(
            "/v1/targets/cdn-c",
            json!({"a": ["192.0.2.99"], "check": {"url": "http://www.example.com/", "interval": 0.5}}),
        )
        .expect(422);
    same_as_check_config(
        &r,
        "targets[3].check.interval:",
        "[[targets]]\nname = \"cdn-c\"\na = [\"192.0.2.99\"]\n\n[targets.check]\nurl = \"http://www.example.com/\"\ninterval = 0.5\n",
        "check interval",
    );
    h.get("/v1/targets/cdn-c").expect(404);

    // A record with bad data: appended as the zone's 12th record.
    let r = h
        .put(
            "/v1/zones/example.com/records/bad/A",
            json!({"data": "192.0.2.300"}),
        )
        .expect(422);
    same_as_check_config(
        &r,
        "zones[0].records[11].data",
        "[[zones.records]]\nname = \"bad\"\ntype = \"A\"\ndata = \"192.0.2.300\"\n",
        "record data",
    );
    assert_eq!(answer(&f.srv, "bad.example.com", None), "NXDomain");

    // A wrong type in a body is a validation error too (the schema's message).
    let r = h
        .put(
            "/v1/services/assets.example.com",
            json!({"policy": "failover", "ttl": "soon", "targets": [{"target": "cdn-a"}]}),
        )
        .expect(422);
    assert!(
        issues(&r).iter().any(|i| i.starts_with("services[3].ttl")),
        "{:?}",
        issues(&r)
    );
    unchanged("ttl type");
    assert_eq!(
        h.get("/v1/services/assets.example.com").expect(200).json()["config"]["targets"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Malformed JSON, a body that is not an object: 400 before any edit.
    for (p, body) in [
        ("/v1/targets/cdn-c", &b"{\"a\": ["[..]),
        ("/v1/targets/cdn-c", b"[1, 2]"),
        ("/v1/services/x.example.com", b"not json"),
        ("/v1/zones/example.com/records/x/A", b"{}"),
        (
            "/v1/zones/example.com/records/x/A",
            b"{\"data\": \"192.0.2.1\", \"weight\": 2}",
        ),
        (
            "/v1/targets/cdn-a/usage",
            b"{\"spend_usd\": 1, \"currency\": \"EUR\"}",
        ),
        (
            "/v1/targets/cdn-a/cache-metrics",
            b"{\"hit_ratio\": 0.5, \"misses\": 3}",
        ),
    ] {
        let r = h.send("PUT", p, Body::Raw(body.to_vec()), &[]);
        assert_eq!(
            r.status,
            400,
            "PUT {p} {:?}: {}",
            String::from_utf8_lossy(body),
            r.text
        );
        assert!(
            r.error().contains("invalid JSON body") || r.error().contains("JSON object"),
            "{}",
            r.text
        );
    }
    let r = h
        .put(
            "/v1/targets/cdn-a/usage",
            json!({"spend_usd": 1, "currency": "EUR"}),
        )
        .expect(400);
    assert!(r.error().contains("currency"), "{}", r.text);
    let r = h
        .put(
            "/v1/zones/example.com/records/x/A",
            json!({"data": "192.0.2.1", "weight": 2}),
        )
        .expect(400);
    assert!(r.error().contains("weight"), "{}", r.text);
    unchanged("malformed bodies");

    // Deleting what others need: a target a service uses, the only zone's steered names.
    let r = h.delete("/v1/targets/cdn-b").expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.contains("targets[") && i.contains("cdn-b")),
        "{:?}",
        issues(&r)
    );
    unchanged("delete a used target");
    assert_eq!(listed(h, "/v1/targets", "targets"), 3);
}

// ---------------------------------------------------------------------------------------------
// 4. If-Match and edits behind the server's back
// ---------------------------------------------------------------------------------------------

#[test]
fn if_match_detects_lost_updates() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;

    // Two operators read the same version.
    let alice = h.get("/v1/targets/cdn-a").expect(200);
    let bob = h.get("/v1/targets/cdn-a").expect(200);
    assert_eq!(alice.etag(), 0);
    assert_eq!(bob.etag(), 0);
    let mut a_cfg = alice.json()["config"].clone();
    a_cfg["cname"] = json!("alice.cdn-a.net");
    let mut b_cfg = bob.json()["config"].clone();
    b_cfg["cname"] = json!("bob.cdn-a.net");

    let r = h
        .put_if("/v1/targets/cdn-a", a_cfg, alice.etag())
        .expect(200);
    assert_eq!(r.etag(), 1);
    let after_alice = f.file();
    let r = h
        .put_if("/v1/targets/cdn-a", b_cfg.clone(), bob.etag())
        .expect(412);
    assert_eq!(r.json()["version"], 1, "{}", r.text);
    assert_eq!(r.etag(), 1, "the 412 carries the current version");
    assert!(r.error().contains('1'), "{}", r.text);
    // Bob's write changed nothing.
    assert_eq!(f.file(), after_alice);
    assert_eq!(
        h.get("/v1/targets/cdn-a").expect(200).json()["config"]["cname"],
        "alice.cdn-a.net"
    );
    assert_eq!(
        answer(&f.srv, "assets.example.com", None),
        "alice.cdn-a.net."
    );

    // Bob re-reads and retries.
    let v = h.get("/v1/targets/cdn-a").expect(200).etag();
    assert_eq!(v, 1);
    h.put_if("/v1/targets/cdn-a", b_cfg, v).expect(200);
    assert_eq!(answer(&f.srv, "assets.example.com", None), "bob.cdn-a.net.");

    // Other write routes honour it too; a future version is as stale as a past one.
    for (m, p, body) in [
        (
            "PUT",
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "reason": "x"}),
        ),
        ("DELETE", "/v1/services/near.example.com", Value::Null),
        (
            "PUT",
            "/v1/zones/example.com/records/x/A",
            json!({"data": "192.0.2.1"}),
        ),
        (
            "DELETE",
            "/v1/zones/example.com/records/static/A",
            Value::Null,
        ),
    ] {
        for stale in ["\"1\"", "\"9\"", "0"] {
            let r = h.send(m, p, Body::Json(body.clone()), &[("if-match", stale)]);
            assert_eq!(r.status, 412, "{m} {p} If-Match {stale}: {}", r.text);
            assert_eq!(r.json()["version"], 2);
        }
    }
    assert_eq!(f.version(), 2);

    // The current version (quoted or not, or *) proceeds; so does a write without If-Match.
    h.send(
        "PUT",
        "/v1/zones/example.com/records/x/A",
        Body::Json(json!({"data": "192.0.2.1"})),
        &[("if-match", "2")],
    )
    .expect(201);
    h.send(
        "PUT",
        "/v1/zones/example.com/records/y/A",
        Body::Json(json!({"data": "192.0.2.1"})),
        &[("if-match", "*")],
    )
    .expect(201);
    h.put(
        "/v1/zones/example.com/records/z/A",
        json!({"data": "192.0.2.1"}),
    )
    .expect(201);
    assert_eq!(f.version(), 5);
    // A malformed If-Match is a 400.
    let r = h.send(
        "PUT",
        "/v1/zones/example.com/records/w/A",
        Body::Json(json!({"data": "192.0.2.1"})),
        &[("if-match", "\"abc\"")],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(f.version(), 5);
}

#[test]
fn concurrent_writers_get_distinct_versions() {
    let f = Fixture::start(&demo_with_nets());
    let addr = f.srv.admin.unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let h = Http::new(addr);
                (0..5)
                    .map(|i| {
                        h.put(
                            &format!("/v1/zones/example.com/records/c{t}x{i}/A"),
                            json!({"data": "192.0.2.1"}),
                        )
                        .expect(201)
                        .etag()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut versions: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    assert_eq!(f.version(), 20);
    let recs = f
        .http
        .get("/v1/zones/example.com/records")
        .expect(200)
        .json();
    assert_eq!(recs["records"].as_array().unwrap().len(), 31);
    let cfg = steerd::config::parse(&f.file(), "file").expect("the file is valid");
    assert_eq!(cfg.version, 20);
}

// ---------------------------------------------------------------------------------------------
// 6. RUM, usage and cache metrics change decisions
// ---------------------------------------------------------------------------------------------

/// The target `/v1/resolve` steers `name` to for `client`.
fn resolved(h: &Http, name: &str, client: &str) -> String {
    let x = h
        .get(&format!("/v1/resolve?name={name}&client={client}"))
        .expect(200)
        .json();
    x["steered"]["target"].as_str().unwrap_or("-").to_string()
}

#[test]
fn rum_latency_moves_eu_clients_of_a_latency_service() {
    let cfg = format!(
        "{}\n[[services]]\nname = \"fast.example.com\"\npolicy = \"latency\"\ntargets = [{{ target = \"cdn-a\" }}, {{ target = \"cdn-b\" }}]\n",
        demo_with_nets()
    );
    let f = Fixture::start(&cfg);
    let h = &f.http;
    for c in [Some(EU_NET), Some(US_NET), None] {
        assert_eq!(
            answer(&f.srv, "fast.example.com", c),
            "cdn-a",
            "unmeasured: configured order"
        );
    }
    assert_eq!(resolved(h, "fast.example.com", EU_NET), "cdn-a");

    // Real users in Germany see cdn-b much faster than cdn-a (half of them located by
    // country, half by address).
    let mut beacons = Vec::new();
    for i in 0..30 {
        for (target, ms) in [("cdn-a", 180 + i), ("cdn-b", 20 + i)] {
            let mut b = json!({"target": target, "latency_ms": ms, "ok": true});
            if i % 2 == 0 {
                b["country"] = json!("DE");
            } else {
                b["client"] = json!("198.51.100.23");
            }
            beacons.push(b);
        }
    }
    let r = h.post("/v1/rum", json!({ "beacons": beacons })).expect(202);
    assert_eq!(r.json()["accepted"], 60);

    // The control loop recompiles within a second or so: EU moves, NA does not.
    wait_for("resolve to show cdn-b for EU", 5, || {
        (resolved(h, "fast.example.com", EU_NET) == "cdn-b").then_some(())
    });
    wait_answer(&f.srv, "fast.example.com", Some(EU_NET), "cdn-b");
    assert_eq!(answer(&f.srv, "fast.example.com", Some(US_NET)), "cdn-a");
    assert_eq!(answer(&f.srv, "fast.example.com", None), "cdn-a");
    let x = h
        .get(&format!(
            "/v1/resolve?name=fast.example.com&client={EU_NET}"
        ))
        .expect(200)
        .json();
    let text = x["explain"]["text"].as_str().unwrap();
    assert!(text.contains("from EU"), "{text}");
    let t = h.get("/v1/targets/cdn-b").expect(200).json();
    assert_eq!(t["rum"]["regions"]["EU"]["checks"], 30, "{t}");
    assert!(
        t["rum"]["regions"]["EU"]["p95_ms"].as_f64().unwrap() < 60.0,
        "{t}"
    );
    let s = h.get("/v1/services/fast.example.com").expect(200).json();
    let eu = s["answers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cell"] == "region EU")
        .unwrap_or_else(|| panic!("no EU cell: {s}"));
    assert_eq!(eu["targets"][0][0], "cdn-b", "{s}");
    let m = scrape(h);
    assert_eq!(
        m.counter(
            "steerd_rum_beacons_total",
            &[("target", "cdn-b"), ("result", "ok")]
        ),
        30.0
    );
    assert!(
        m.get(
            "steerd_rum_latency_p95_seconds",
            &[("target", "cdn-b"), ("region", "EU")]
        )
        .is_some_and(|v| v < 0.06),
        "{:?}",
        m.get(
            "steerd_rum_latency_p95_seconds",
            &[("target", "cdn-b"), ("region", "EU")]
        )
    );
}

#[test]
fn usage_over_the_cap_demotes_and_logs_cost_cap() {
    let cfg = demo_with_nets().replacen(
        "longitude = -77.49\n",
        "longitude = -77.49\n\n[targets.cost]\nprice_per_gb = 0.05\nmonthly_cap = 100\n",
        1,
    );
    assert_ne!(cfg, demo_with_nets());
    let f = Fixture::start(&cfg);
    let h = &f.http;
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");

    // Spend far beyond the cap: the month-end projection is over it whatever the day.
    let r = h
        .put("/v1/targets/cdn-a/usage", json!({"spend_usd": 500.0}))
        .expect(200);
    let b = r.json();
    assert_eq!(b["target"], "cdn-a");
    assert_eq!(b["cost"]["over_cap"], true, "{b}");
    assert_eq!(b["cost"]["cap_usd"], 100.0);
    assert_eq!(b["cost"]["spend_so_far_usd"], 500.0);
    assert!(b["cost"]["projected_usd"].as_f64().unwrap() >= 500.0, "{b}");
    assert_eq!(b["cost"]["source"], "reported spend");

    // cost = demote: cdn-a moves after cdn-b (not out).
    wait_answer(&f.srv, "assets.example.com", None, "cdn-b");
    let x = h
        .get("/v1/resolve?name=assets.example.com&client=192.0.2.1")
        .expect(200)
        .json();
    let cost = x["explain"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "cost")
        .unwrap_or_else(|| panic!("no cost step: {x}"))
        .clone();
    assert_eq!(cost["output"], json!(["cdn-b", "origin", "cdn-a"]), "{x}");
    let ev = h.get("/v1/events?kind=cost_cap").expect(200).json();
    let evs = ev["events"].as_array().unwrap();
    assert_eq!(evs.len(), 1, "{ev}");
    assert_eq!(evs[0]["subject"], "cdn-a");
    assert_eq!(evs[0]["severity"], "warning");
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["cost"]["over_cap"], true, "{t}");
    assert_eq!(t["usage"]["spend_usd"], 500.0, "{t}");
    let m = scrape(h);
    assert_eq!(
        m.get("steerd_target_monthly_cap_usd", &[("target", "cdn-a")]),
        Some(100.0)
    );
    assert_eq!(
        m.get("steerd_target_spend_usd", &[("target", "cdn-a")]),
        Some(500.0)
    );
    assert_eq!(
        m.counter("steerd_events_total", &[("kind", "cost_cap")]),
        1.0
    );

    // Lower it: back to cdn-a, and the cap event is cleared.
    let b = h
        .put("/v1/targets/cdn-a/usage", json!({"spend_usd": 0.01}))
        .expect(200)
        .json();
    assert_eq!(b["cost"]["over_cap"], false, "{b}");
    wait_answer(&f.srv, "assets.example.com", None, "cdn-a");
    let ev = h.get("/v1/events?kind=cost_cap_cleared").expect(200).json();
    assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{ev}");

    // Up again, then the report is deleted: the estimate (a handful of answers) is under the cap.
    h.put(
        "/v1/targets/cdn-a/usage",
        json!({"spend_usd": 500.0, "bytes": 1_000_000_000u64}),
    )
    .expect(200);
    wait_answer(&f.srv, "assets.example.com", None, "cdn-b");
    let r = h.delete("/v1/targets/cdn-a/usage").expect(200);
    assert_eq!(r.json()["cleared"], true);
    wait_answer(&f.srv, "assets.example.com", None, "cdn-a");
    assert_eq!(
        h.get("/v1/targets/cdn-a").expect(200).json()["usage"],
        Value::Null
    );

    // Bad usage reports.
    for (body, needle) in [
        (json!({}), "spend_usd"),
        (json!({"spend_usd": -1.0}), "spend_usd"),
        (json!({"spend_usd": 1.0, "as_of": now_s() + 3600}), "as_of"),
    ] {
        let r = h.put("/v1/targets/cdn-a/usage", body.clone()).expect(400);
        assert!(r.error().contains(needle), "{body}: {}", r.text);
    }
    h.put("/v1/targets/nope/usage", json!({"spend_usd": 1.0}))
        .expect(404);
    h.delete("/v1/targets/nope/usage").expect(404);
    // Usage reports are not configuration: the version did not move.
    assert_eq!(f.version(), 0);
}

#[test]
fn cache_metrics_flip_a_cache_aware_service() {
    let cfg = format!(
        "{}\n[[services]]\nname = \"cached.example.com\"\npolicy = \"cache_aware\"\ntargets = [{{ target = \"cdn-a\" }}, {{ target = \"cdn-b\" }}]\n",
        demo_with_nets()
    );
    let f = Fixture::start(&cfg);
    let h = &f.http;
    // Unlocated clients: equal proximity and equal default cache scores: configured order.
    assert_eq!(answer(&f.srv, "cached.example.com", None), "cdn-a");
    // German clients: cdn-b (Frankfurt) is closer.
    assert_eq!(answer(&f.srv, "cached.example.com", Some(EU_NET)), "cdn-b");

    // cdn-a reports a bad cache (unpopular objects, everything purged): cdn-b leads everywhere.
    let r = h
        .put(
            "/v1/targets/cdn-a/cache-metrics",
            json!({"popularity": 0.0, "purge_ratio": 1.0, "hit_ratio": 0.2}),
        )
        .expect(200);
    let b = r.json();
    assert!(
        (b["cache_score"].as_f64().unwrap() - 0.5 / 3.0).abs() < 1e-9,
        "(0 + 0.5 + 0) / 3: {b}"
    );
    assert_eq!(b["cache_metrics"]["purge_ratio"], 1.0);
    wait_answer(&f.srv, "cached.example.com", None, "cdn-b");
    assert_eq!(answer(&f.srv, "cached.example.com", Some(EU_NET)), "cdn-b");
    let t = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(t["cache_metrics"]["popularity"], 0.0, "{t}");
    assert_eq!(
        scrape(h).get(
            "steerd_target_reported_cache_hit_ratio",
            &[("target", "cdn-a")]
        ),
        Some(0.2)
    );

    // Now cdn-b's cache is the bad one and cdn-a's perfect: cdn-a leads, even in Germany.
    h.put(
        "/v1/targets/cdn-a/cache-metrics",
        json!({"popularity": 1.0, "purge_ratio": 0.0, "ttl_factor": 1.0}),
    )
    .expect(200);
    h.put(
        "/v1/targets/cdn-b/cache-metrics",
        json!({"popularity": 0.0, "purge_ratio": 1.0, "ttl_factor": 0.0}),
    )
    .expect(200);
    wait_answer(&f.srv, "cached.example.com", None, "cdn-a");
    wait_answer(&f.srv, "cached.example.com", Some(EU_NET), "cdn-a");
    let x = h
        .get(&format!(
            "/v1/resolve?name=cached.example.com&client={EU_NET}"
        ))
        .expect(200)
        .json();
    assert!(
        x["explain"]["text"]
            .as_str()
            .unwrap()
            .contains("purge 1.00"),
        "{x}"
    );

    for (body, needle) in [
        (json!({"popularity": 1.5}), "popularity"),
        (json!({"purge_ratio": -0.1}), "purge_ratio"),
    ] {
        let r = h
            .put("/v1/targets/cdn-a/cache-metrics", body.clone())
            .expect(400);
        assert!(r.error().contains(needle), "{body}: {}", r.text);
    }
    h.put("/v1/targets/nope/cache-metrics", json!({"popularity": 0.5}))
        .expect(404);
    assert_eq!(f.version(), 0);
}

#[test]
fn rum_complaint_spike_degrades_the_target() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");
    let beacons = |n: usize, ok: bool| {
        let v: Vec<Value> = (0..n)
            .map(|_| json!({"target": "cdn-a", "country": "DE", "latency_ms": 50, "ok": ok}))
            .collect();
        json!({ "beacons": v })
    };
    // A calm baseline: 40 good beacons, then a step of the health machines (every second,
    // or at once with a usage report) samples it.
    h.post("/v1/rum", beacons(40, true)).expect(202);
    h.delete("/v1/targets/cdn-a/usage").expect(200);
    wait_for("the RUM baseline step", 5, || {
        let t = h.get("/v1/targets/cdn-a").expect(200).json();
        (t["reason"] != "no health data" && t["reason"] != "no data yet").then_some(())
    });
    assert_eq!(
        h.get("/v1/targets/cdn-a").expect(200).json()["state"],
        "healthy"
    );

    // A complaint spike: 60 failures out of 100 beacons, far above 3 × the 0 % baseline.
    h.post("/v1/rum", beacons(60, false)).expect(202);
    h.delete("/v1/targets/cdn-a/usage").expect(200);
    let t = wait_for("cdn-a to be degraded", 5, || {
        let t = h.get("/v1/targets/cdn-a").expect(200).json();
        (t["state"] == "degraded").then_some(t)
    });
    assert!(t["reason"].as_str().unwrap().contains("RUM"), "{t}");
    // Degraded targets move last: assets fails over to cdn-b.
    wait_answer(&f.srv, "assets.example.com", None, "cdn-b");
    let ev = h.get("/v1/events?kind=degraded").expect(200).json();
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "cdn-a"),
        "{ev}"
    );
    let m = scrape(h);
    assert_eq!(
        m.get(
            "steerd_target_state",
            &[("target", "cdn-a"), ("state", "degraded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.counter(
            "steerd_rum_beacons_total",
            &[("target", "cdn-a"), ("result", "error")]
        ),
        60.0
    );
    // (Recovery needs the complaints to leave the 5-minute window: not tested over HTTP.)
}

// ---------------------------------------------------------------------------------------------
// 7. Metrics
// ---------------------------------------------------------------------------------------------

/// `steerd_config_reloads_total{result="error"}` drives the SteerdConfigReloadFailed alert ("a
/// new configuration was rejected ... the change you made is not in force"). A write whose
/// configuration does not validate counts; a request that names nothing (404: a DELETE of an
/// absent record, override or service, a record in an unknown zone) proposes no configuration
/// and must not page anyone.
#[test]
fn only_rejected_configurations_count_as_reload_errors() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let err = |m: &Metrics| m.counter("steerd_config_reloads_total", &[("result", "error")]);
    let m0 = scrape(h);
    h.delete("/v1/zones/example.com/records/nope/A").expect(404);
    h.delete("/v1/targets/cdn-a/override").expect(404);
    h.delete("/v1/services/nope.example.com").expect(404);
    h.delete("/v1/targets/nope").expect(404);
    h.put(
        "/v1/zones/nope.example/records/x/A",
        json!({"data": "192.0.2.1"}),
    )
    .expect(404);
    let m1 = scrape(h);
    assert_eq!(
        err(&m1) - err(&m0),
        0.0,
        "404s counted as rejected configurations"
    );
    h.put(
        "/v1/services/bad.example.com",
        json!({"policy": "failover", "targets": [{"target": "nope"}]}),
    )
    .expect(422);
    let m2 = scrape(h);
    assert_eq!(err(&m2) - err(&m1), 1.0);
}

/// The demo configuration without its `[[alerts.sinks]]` (if it has any).
fn without_alert_sinks(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.trim() == "[[alerts.sinks]]" {
            skipping = true;
        } else if skipping && (line.trim().is_empty() || line.starts_with('[')) {
            skipping = false;
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

/// Most configurations have no alert sinks: `/metrics` must work for them too.
#[test]
fn metrics_without_alert_sinks() {
    let cfg = without_alert_sinks(&demo_with_nets());
    assert!(!cfg.contains("[[alerts.sinks]]"));
    steerd::config::parse(&cfg, "no sinks").expect("valid without sinks");
    let f = Fixture::start(&cfg);
    // A labelled counter appears once it has counted something (Prometheus convention).
    f.http.get("/v1/status").expect(200);
    let m = scrape(&f.http);
    assert_eq!(m.get("steerd_config_version", &[]), Some(0.0));
    assert!(
        m.samples
            .keys()
            .any(|(n, _)| n == "steerd_admin_requests_total"),
        "no admin request counted"
    );
}

#[test]
fn metrics_parse_and_counters_move() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let m0 = scrape(h);
    for fam in [
        "steerd_build_info",
        "steerd_start_time_seconds",
        "steerd_config_version",
        "steerd_table_generation",
        "steerd_target_up",
        "steerd_target_state",
    ] {
        assert!(
            m0.samples.keys().any(|(n, _)| n == fam),
            "{fam} is not exported"
        );
    }
    assert_eq!(
        m0.get(
            "steerd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(m0.get("steerd_config_version", &[]), Some(0.0));
    assert_eq!(
        m0.get(
            "steerd_target_state",
            &[("target", "cdn-a"), ("state", "healthy")]
        ),
        Some(1.0)
    );

    // Requests are counted per route, method and status.
    let status = |m: &Metrics, code: &str| {
        m.counter(
            "steerd_admin_requests_total",
            &[("route", "/v1/status"), ("method", "GET"), ("status", code)],
        )
    };
    h.get("/v1/status").expect(200);
    h.get("/v1/status").expect(200);
    h.get("/v1/targets/nope").expect(404);
    let m1 = scrape(h);
    assert_eq!(status(&m1, "200") - status(&m0, "200"), 2.0);
    assert_eq!(
        m1.counter(
            "steerd_admin_requests_total",
            &[
                ("route", "/v1/targets/{name}"),
                ("method", "GET"),
                ("status", "404")
            ]
        ),
        1.0
    );

    // An override: a write (reload ok), an override event, a table swap, the new version,
    // the state gauge.
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "forced_down", "reason": "metrics"}),
    )
    .expect(200);
    let m2 = scrape(h);
    let d =
        |name: &str, labels: &[(&str, &str)]| m2.counter(name, labels) - m1.counter(name, labels);
    assert_eq!(d("steerd_config_reloads_total", &[("result", "ok")]), 1.0);
    assert!(d("steerd_events_total", &[("kind", "override")]) >= 1.0);
    assert!(d("steerd_events_total", &[("kind", "config_changed")]) >= 1.0);
    assert!(d("steerd_table_swaps_total", &[]) >= 1.0);
    let v = f.version();
    assert_eq!(v, 1);
    assert_eq!(m2.get("steerd_config_version", &[]), Some(v as f64));
    assert_eq!(
        m2.get(
            "steerd_target_state",
            &[("target", "cdn-a"), ("state", "forced_down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m2.get(
            "steerd_target_state",
            &[("target", "cdn-a"), ("state", "healthy")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m2.get("steerd_target_up", &[("target", "cdn-a"), ("role", "edge")]),
        Some(0.0)
    );
    let gen_api = h.get("/v1/status").expect(200).json()["generation"]
        .as_u64()
        .unwrap();
    assert_eq!(m2.get("steerd_table_generation", &[]), Some(gen_api as f64));

    // A rejected write counts as an error; a 412 does not count at all.
    h.put(
        "/v1/services/bad.example.com",
        json!({"policy": "failover", "targets": [{"target": "nope"}]}),
    )
    .expect(422);
    h.put_if(
        "/v1/zones/example.com/records/x/A",
        json!({"data": "192.0.2.1"}),
        0,
    )
    .expect(412);
    // RUM beacons and remote observations are counted.
    h.post(
        "/v1/rum",
        json!({"beacons": [
            {"target": "cdn-b", "country": "FR", "latency_ms": 10, "ok": true},
            {"target": "cdn-b", "country": "FR", "latency_ms": 10, "ok": true},
            {"target": "cdn-b", "country": "FR", "latency_ms": 10, "ok": false},
        ]}),
    )
    .expect(202);
    h.post(
        "/v1/observations",
        json!({"vantage": "nyc1", "observations": [
            {"target": "cdn-b", "level": "http", "ok": true, "latency_ms": 5},
            {"target": "nope", "level": "http", "ok": true, "latency_ms": 5},
        ]}),
    )
    .expect(202);
    let m3 = scrape(h);
    let d =
        |name: &str, labels: &[(&str, &str)]| m3.counter(name, labels) - m2.counter(name, labels);
    assert_eq!(
        d("steerd_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(d("steerd_config_reloads_total", &[("result", "ok")]), 0.0);
    assert_eq!(
        d(
            "steerd_rum_beacons_total",
            &[("target", "cdn-b"), ("result", "ok")]
        ),
        2.0
    );
    assert_eq!(
        d(
            "steerd_rum_beacons_total",
            &[("target", "cdn-b"), ("result", "error")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "steerd_remote_observations_total",
            &[("vantage", "nyc1"), ("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "steerd_remote_observations_total",
            &[("vantage", "nyc1"), ("result", "rejected")]
        ),
        1.0
    );
    assert!(
        m3.get(
            "steerd_rum_error_ratio",
            &[("target", "cdn-b"), ("region", "EU")]
        )
        .is_some_and(|v| (v - 1.0 / 3.0).abs() < 1e-9),
        "{:?}",
        m3.get(
            "steerd_rum_error_ratio",
            &[("target", "cdn-b"), ("region", "EU")]
        )
    );
    assert_eq!(
        d(
            "steerd_admin_requests_total",
            &[
                ("route", "/v1/zones/{zone}/records/{name}/{rtype}"),
                ("method", "PUT"),
                ("status", "412")
            ]
        ),
        1.0
    );

    // Clearing the override: the gauge follows.
    h.delete("/v1/targets/cdn-a/override").expect(200);
    let m4 = scrape(h);
    assert_eq!(
        m4.get(
            "steerd_target_state",
            &[("target", "cdn-a"), ("state", "forced_down")]
        ),
        Some(0.0)
    );
    assert_eq!(m4.get("steerd_config_version", &[]), Some(2.0));
}

// ---------------------------------------------------------------------------------------------
// Issue 12: configurations that serve nothing, errors that point, names that are names
// ---------------------------------------------------------------------------------------------

/// One zone and nothing steered: deleting the zone leaves a configuration without zones.
fn solo() -> String {
    format!("\n{NO_GEODB}{}", zone_ns1("solo.example", "192.0.2.53"))
}

/// The rcode and data of an A query for `name` (UDP).
fn a_answer(srv: &TestServer, name: &str) -> String {
    let m = dns(srv, name, RecordType::A, None, false);
    format!("{:?} {}", m.metadata.response_code, rdata(&m).join(" "))
}

#[test]
fn a_configuration_that_would_serve_nothing_is_refused_on_reload_and_on_write() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let file = f.path.display().to_string();
    let original = f.file();

    // An empty file (a truncated copy, a bad deploy): POST /v1/reload refuses it.
    std::fs::write(&f.path, "").unwrap();
    let r = h.post("/v1/reload", json!({})).expect(422);
    let j = r.json();
    assert_eq!(j["file"], file.as_str(), "{j}");
    assert_eq!(issues(&r).len(), 1, "{j}");
    assert!(issues(&r)[0].starts_with("zones: no zone"), "{j}");
    assert!(
        r.error().contains(&format!("{file}: zones: no zone")),
        "{j}"
    );
    assert_eq!(f.version(), 0);
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");
    std::fs::write(&f.path, &original).unwrap();

    // DELETE of the last zone.
    let f = Fixture::start(&solo());
    let h = &f.http;
    assert_eq!(a_answer(&f.srv, "ns1.solo.example"), "NoError 192.0.2.53");
    let r = h.delete("/v1/zones/solo.example").expect(422);
    let is = issues(&r);
    assert_eq!(is.len(), 1, "{is:?}");
    assert!(is[0].starts_with("zones: no zone"), "{is:?}");
    assert!(is[0].contains("allow_no_zones = true"), "{is:?}");
    assert!(r.json()["issues"][0]["line"].is_null(), "{}", r.text);
    assert_eq!(a_answer(&f.srv, "ns1.solo.example"), "NoError 192.0.2.53");
    assert_eq!(f.version(), 0);

    // Said so: then it is accepted, and every query is REFUSED.
    let f = Fixture::start(&format!("allow_no_zones = true\n{}", solo()));
    f.http.delete("/v1/zones/solo.example").expect(200);
    assert_eq!(a_answer(&f.srv, "ns1.solo.example"), "Refused ");
    std::fs::write(&f.path, "allow_no_zones = true\n").unwrap();
    f.http.post("/v1/reload", json!({})).expect(200);
}

#[test]
fn reload_errors_name_the_file_and_the_line() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    let file = f.path.display().to_string();
    std::fs::write(&f.path, format!("{}\n[server\n", f.file())).unwrap();
    let r = h.post("/v1/reload", json!({})).expect(422);
    let j = r.json();
    let line = f.file().lines().count();
    assert_eq!(j["file"], file.as_str(), "{j}");
    assert_eq!(j["issues"][0]["line"], line, "{j}");
    assert!(
        r.error().contains(&format!("{file}:{line}: ")),
        "the error names FILE:LINE: {j}"
    );
    assert_eq!(answer(&f.srv, "assets.example.com", None), "cdn-a");
}

#[test]
fn a_bad_nets_file_on_reload_is_refused_naming_the_key_not_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("nets.toml");
    std::fs::write(
        &good,
        "[[nets]]\ncidr = \"192.0.2.0/24\"\ncountry = \"DE\"\n",
    )
    .unwrap();
    let config = |nets: &Path| {
        demo_with_nets().replace(
            "countries = \"geodb/countries.csv\"",
            &format!(
                "countries = \"geodb/countries.csv\"\nnets_file = \"{}\"",
                nets.display()
            ),
        )
    };
    let f = Fixture::start(&config(&good));
    let h = &f.http;
    let file = f.path.display().to_string();

    // The file now names another nets file, which does not parse as nets.
    let bad = dir.path().join("nets-new.toml");
    std::fs::write(
        &bad,
        "[[nets]]\ncidr = \"192.0.2.0/33\"\ncountry = \"DE\"\n",
    )
    .unwrap();
    let text = config(&bad);
    std::fs::write(&f.path, &text).unwrap();
    let r = h.post("/v1/reload", json!({})).expect(422);
    let j = r.json();
    let line = text.lines().position(|l| l.contains("nets_file")).unwrap() + 1;
    assert_eq!(j["issues"][0]["field"], "geo.nets_file", "{j}");
    assert_eq!(j["issues"][0]["line"], line, "{j}");
    let msg = j["issues"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("{}:2: nets[0].cidr: ", bad.display())),
        "{msg}"
    );
    assert!(
        r.error()
            .contains(&format!("{file}:{line}: geo.nets_file: ")),
        "{j}"
    );
    // ... and one that is not there.
    std::fs::remove_file(&bad).unwrap();
    let r = h.post("/v1/reload", json!({})).expect(422);
    assert_eq!(
        r.json()["issues"][0]["field"],
        "geo.nets_file",
        "{}",
        r.text
    );
    assert!(r.error().contains("cannot read nets file"), "{}", r.text);
    assert_eq!(f.version(), 0);

    // Unchanged geo settings are not read again: a write elsewhere goes through.
    std::fs::write(&f.path, config(&good)).unwrap();
    h.post("/v1/reload", json!({})).expect(200);
    h.put("/v1/targets/cdn-c", json!({"a": ["192.0.2.99"]}))
        .expect(201);
}

#[test]
fn deleting_a_target_still_in_use_is_one_issue_naming_the_services() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    h.put(
        "/v1/targets/cdn-b/override",
        json!({"state": "drained", "reason": "maintenance"}),
    )
    .expect(200);
    // cdn-b: the geo map of www, the weighted split, near and assets.
    let r = h.delete("/v1/targets/cdn-b").expect(422);
    let is = issues(&r);
    assert_eq!(is.len(), 1, "one issue, not one per reference: {is:?}");
    let msg = &is[0];
    assert!(msg.starts_with("services[0].geo.EU[0]: "), "{msg}");
    assert!(
        msg.contains("target \"cdn-b\" is in use by services"),
        "{msg}"
    );
    for s in [
        "www.example.com (services[0].geo.EU[0])",
        "split.example.com (services[1].targets[1].target)",
        "near.example.com (services[2].targets[1].target)",
        "assets.example.com (services[3].targets[1].target)",
    ] {
        assert!(msg.contains(s), "{s} in {msg}");
    }
    assert!(msg.contains("1 override(s)"), "{msg}");
    assert!(r.json()["issues"][0]["line"].is_null(), "{}", r.text);
    assert_eq!(f.version(), 1);
}

#[test]
fn names_from_the_api_are_checked_like_the_file() {
    let f = Fixture::start(&demo_with_nets());
    let h = &f.http;
    // Target names: in the path (URL-encoded) and in the file alike.
    for (path, needle) in [
        ("/v1/targets/cdn%0Ax", "not allowed"),
        ("/v1/targets/cdn%22x", "not allowed"),
        ("/v1/targets/cdn%20x", "not allowed"),
    ] {
        let r = h.put(path, json!({"a": ["192.0.2.9"]})).expect(422);
        let is = issues(&r);
        assert!(
            is.iter()
                .any(|i| i.starts_with("targets[3].name: ") && i.contains(needle)),
            "{path}: {is:?}"
        );
    }
    let long = "c".repeat(10_000);
    let r = h
        .put(&format!("/v1/targets/{long}"), json!({"a": ["192.0.2.9"]}))
        .expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.starts_with("targets[3].name: must be at most 64 characters")),
        "{}",
        &r.text[..r.text.len().min(500)]
    );
    assert!(r.text.len() < 2_000, "the 10 KB name is not echoed back");
    // An override's reason: one line of text.
    let r = h
        .put(
            "/v1/targets/cdn-a/override",
            json!({"state": "drained", "reason": "first\nsecond"}),
        )
        .expect(422);
    assert!(
        issues(&r)
            .iter()
            .any(|i| i.starts_with("overrides[0].reason: ") && i.contains("control characters")),
        "{}",
        r.text
    );
    assert_eq!(f.version(), 0);

    // Pushed inputs: the vantage (a metric label) and the targets, at the boundary.
    let obs = |vantage: &str, target: &str| {
        json!({"vantage": vantage, "observations": [
            {"target": target, "level": "check", "ok": true, "latency_ms": 5}]})
    };
    let assert_target_rejected = |r: &Resp| {
        let e = r.json()["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(e.starts_with("target: "), "{}", r.text);
    };
    let huge = "v".repeat(100_000);
    for v in [huge.as_str(), "fra\n1", "fra\"1"] {
        let r = h.post("/v1/observations", obs(v, "cdn-a")).expect(422);
        assert!(
            r.error().starts_with("vantage: "),
            "{}",
            &r.text[..r.text.len().min(300)]
        );
        assert!(r.text.len() < 2_000);
    }
    let r = h
        .post("/v1/observations", obs("fra1", "cdn\"a"))
        .expect(422);
    assert_target_rejected(&r);
    let metrics = h.get("/metrics").expect(200).text;
    assert!(!metrics.contains("vvvvvvvvvvvvvvvv"), "no 100 KB label");
    assert!(!metrics.contains("fra\\n1") && !metrics.contains("fra\\\"1"));
    let r = h
        .post(
            "/v1/rum",
            json!({"beacons": [{"target": "cdn-a\n", "country": "DE", "latency_ms": 20, "ok": true}]}),
        )
        .expect(422);
    assert_target_rejected(&r);
    // Good names still pass.
    h.post("/v1/observations", obs("fra-1.eu_west", "cdn-a"))
        .expect(202);
}
