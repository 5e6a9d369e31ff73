//! Admin API persistence (issue 6): what the API writes is in the configuration file, a server
//! started again from that file is in the same state (views, DNS answers, overrides, version),
//! the file keeps its comments, and a SIGKILL during a burst of writes leaves a file that
//! parses, at the version of the last acknowledged write or just after it. Also the tokens
//! taken from the environment (`token_env`, `STEERD_ADMIN_TOKEN`, `STEERD_READ_TOKEN`), which
//! need a process of their own.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::config::{
    CAPPED_AT_FIRST_ANSWER, EU_NET, US_NET, demo_with_nets, failover, www_over_a_b, zone, zone_ns1,
};
use common::http::{Body, Http};
use common::process::Steerd;
use common::{TestServer, dns};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// HTTP and DNS helpers
// ---------------------------------------------------------------------------------------------

/// What `name` answers (A) for `ecs` over UDP and TCP (both must agree): the answer data,
/// sorted, or the rcode.
#[track_caller]
fn answer(srv: &TestServer, name: &str, ecs: Option<&str>) -> String {
    let out: Vec<String> = [false, true]
        .into_iter()
        .map(|over_tcp| {
            let m = dns(srv, name, RecordType::A, ecs, over_tcp);
            let mut d: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
            d.sort();
            if d.is_empty() {
                format!("{:?}", m.metadata.response_code)
            } else {
                d.join(" ")
            }
        })
        .collect();
    assert_eq!(out[0], out[1], "{name} ({ecs:?}): UDP and TCP differ");
    out[0].clone()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Restart from the file
// ---------------------------------------------------------------------------------------------

/// Everything a restart must keep, as seen through the API and DNS.
#[derive(Debug, PartialEq)]
struct Snapshot {
    config_version: Value,
    config_text: String,
    targets: Vec<Value>,
    services: Vec<Value>,
    overrides: Value,
    zones: Value,
    dns: Vec<(String, String)>,
}

fn snapshot(srv: &TestServer) -> Snapshot {
    let h = Http::new(srv.admin.unwrap());
    let status = h.get("/v1/status").expect(200).json();
    let targets = h.get("/v1/targets").expect(200).json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            // Health history (since, windows, levels) starts afresh; the rest must not.
            json!({
                "name": t["name"], "state": t["state"], "override": t["override"],
                "region_overrides": t["region_overrides"], "config": t["config"],
            })
        })
        .collect();
    let services = h.get("/v1/services").expect(200).json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"name": s["name"], "answers": s["answers"], "config": s["config"]}))
        .collect();
    let mut dns = Vec::new();
    for name in [
        "assets.example.com",
        "www.example.com",
        "c.example.com",
        "persist.example.com",
        "static.example.com",
    ] {
        for ecs in [None, Some(EU_NET), Some(US_NET)] {
            dns.push((format!("{name} {ecs:?}"), answer(srv, name, ecs)));
        }
    }
    Snapshot {
        config_version: status["config_version"].clone(),
        config_text: h.get("/v1/config").expect(200).text,
        targets,
        services,
        overrides: h.get("/v1/overrides").expect(200).json(),
        zones: h.get("/v1/zones").expect(200).json(),
        dns,
    }
}

#[test]
fn api_writes_survive_a_restart_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, demo_with_nets()).unwrap();

    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    h.put("/v1/targets/cdn-c", json!({"a": ["192.0.2.99"]}))
        .expect(201);
    h.put(
        "/v1/services/c.example.com",
        json!({"policy": "failover", "ttl": 15, "targets": [{"target": "cdn-c"}, {"target": "cdn-a"}]}),
    )
    .expect(201);
    h.put(
        "/v1/zones/example.com/records/persist/A",
        json!({"data": "192.0.2.123", "ttl": 60}),
    )
    .expect(201);
    h.put(
        "/v1/targets/cdn-a/override",
        json!({"state": "forced_down", "for": "2h", "reason": "persisted maintenance"}),
    )
    .expect(200);
    h.put(
        "/v1/targets/cdn-b/override",
        json!({"state": "drained", "region": "EU", "until": now_s() + 7200, "reason": "EU drain"}),
    )
    .expect(200);

    let before = snapshot(&srv);
    assert_eq!(before.config_version, 5);
    // The writes are in force: cdn-a is forced down (assets → cdn-b), cdn-b drained in EU
    // (EU assets → origin), the new record and service answer.
    let dns: std::collections::BTreeMap<_, _> = before.dns.iter().cloned().collect();
    assert_eq!(dns["assets.example.com None"], "example.b-cdn.example.net.");
    assert_eq!(
        dns[&format!("assets.example.com Some({EU_NET:?})")],
        "192.0.2.80"
    );
    assert_eq!(dns["persist.example.com None"], "192.0.2.123");
    assert_eq!(dns["c.example.com None"], "192.0.2.99");
    let ovr = before.overrides["overrides"].as_array().unwrap();
    assert_eq!(ovr.len(), 2, "{}", before.overrides);
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(before.config_text, file);
    drop(h);
    drop(srv);

    // The file on its own is a valid configuration at version 5 with both overrides.
    let cfg = steerd::config::parse(&file, "persisted").expect("the written file is valid");
    assert_eq!(cfg.version, 5);
    assert_eq!(cfg.overrides.len(), 2);

    // A new server from the same file: the same state.
    let srv = TestServer::start_file(&path, false);
    let after = snapshot(&srv);
    assert_eq!(after, before);
    let h = Http::new(srv.admin.unwrap());
    let a = h.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(a["state"], "forced_down", "{a}");
    assert_eq!(a["override"]["reason"], "persisted maintenance");
    // And it keeps counting from there.
    let r = h
        .put(
            "/v1/zones/example.com/records/after/A",
            json!({"data": "192.0.2.124"}),
        )
        .expect(201);
    assert_eq!(r.json()["version"], 6);
}

#[test]
fn the_file_keeps_its_comments_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    let original = demo_with_nets();
    std::fs::write(&path, &original).unwrap();
    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());

    // Replace cdn-a (with its own config form, one value changed), add and delete things.
    let mut a = h.get("/v1/targets/cdn-a").expect(200).json()["config"].clone();
    a["latitude"] = json!(38.9);
    h.put("/v1/targets/cdn-a", a).expect(200);
    h.put(
        "/v1/zones/example.com/records/extra/TXT",
        json!({"data": "x"}),
    )
    .expect(201);
    h.put(
        "/v1/zones/example.com/records/static/A",
        json!({"data": ["192.0.2.12"]}),
    )
    .expect(200);
    h.put(
        "/v1/targets/origin/override",
        json!({"state": "drained", "reason": "layout"}),
    )
    .expect(200);
    h.delete("/v1/services/split.example.com").expect(200);

    let text = std::fs::read_to_string(&path).unwrap();
    // Every comment of the original is still there, in the same order.
    let comments: Vec<&str> = original
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("split is a plain"))
        .collect();
    let mut from = 0;
    for c in &comments {
        let at = text[from..]
            .find(c)
            .unwrap_or_else(|| panic!("comment {c:?} lost or moved:\n{text}"));
        from += at + c.len();
    }
    // Trailing comments on values too.
    assert!(text.contains("# Frankfurt, DE"), "{text}");
    // The comment above the replaced target still sits right above its table.
    let i = text.find("name = \"cdn-a\"").unwrap();
    let header = text[..i].rfind("[[targets]]").unwrap();
    assert!(
        text[..header].trim_end().ends_with(
            "a real deployment drops `address` and keeps the dns level, which resolves the CDN's host name."
        ),
        "comment above cdn-a lost:\n{}",
        &text[..i + 20]
    );
    // The replaced RRset kept its place among the records (after mail, before AAAA static).
    let p_mail = text.find("data = \"192.0.2.25\"").unwrap();
    let p_static = text.find("192.0.2.12").unwrap();
    let p_aaaa = text.find("2001:db8::10").unwrap();
    assert!(p_mail < p_static && p_static < p_aaaa, "{text}");
    // The version key is first, before every table.
    let v = text.find("version = 5").expect("version = 5");
    assert!(v < text.find("[server]").unwrap(), "{text}");
    assert!(!text.contains("split.example.com"));
    assert!(steerd::config::parse(&text, "layout").is_ok());
    // A read-modify-write of cdn-a (its GET config form PUT back) keeps the keys in the order
    // a person wrote them: `name` first, as `doc::name_body` intends ("put the name first, as
    // a person would write it"), and the check table's `url` before `address`.
    let table = &text[header..text[header..].find("[targets.check.cache]").unwrap() + header];
    assert!(
        table.starts_with("[[targets]]\nname = \"cdn-a\"\n"),
        "the replaced table's keys were reordered:\n{table}"
    );
    assert!(
        table.find("url =").unwrap() < table.find("address =").unwrap(),
        "the replaced table's keys were reordered:\n{table}"
    );
}

/// A write that cannot be persisted (here: the temporary file's name is taken by a directory)
/// must leave everything as it was: the API answers an error, and neither the configuration in
/// force (views, DNS, `steerd_config_version`) nor the store's version or the file changes, so
/// that the running server, its ETag and its file keep agreeing.
#[test]
fn a_write_that_cannot_be_persisted_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, demo_with_nets()).unwrap();
    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    let original = std::fs::read_to_string(&path).unwrap();
    // write_atomically's temporary file is `.steerd.toml.tmp.PID` (the server runs in this
    // process): a directory of that name makes creating it fail.
    let blocker = dir
        .path()
        .join(format!(".steerd.toml.tmp.{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();

    let r = h.put(
        "/v1/zones/example.com/records/lost/A",
        json!({"data": "192.0.2.66"}),
    );
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(
        r.json()["error"].as_str().unwrap().contains("write"),
        "{}",
        r.text
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    let status = h.get("/v1/status").expect(200).json();
    assert_eq!(status["config_version"], 0);
    h.get("/v1/zones/example.com/records/lost/A").expect(404);
    assert_eq!(
        answer(&srv, "lost.example.com", None),
        "NXDomain",
        "the unpersisted record is served over DNS"
    );
    let metrics = h.get("/metrics").expect(200).text;
    assert!(
        metrics.lines().any(|l| l == "steerd_config_version 0"),
        "the configuration in force moved to another version than the API's and the file's:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("steerd_config_version"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Once the file can be written again, the next write starts from the state in force.
    std::fs::remove_dir(&blocker).unwrap();
    let r = h
        .put(
            "/v1/zones/example.com/records/kept/A",
            json!({"data": "192.0.2.67"}),
        )
        .expect(201);
    assert_eq!(r.json()["version"], 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("192.0.2.67") && !text.contains("192.0.2.66"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary: SIGKILL during writes, tokens from the environment
// ---------------------------------------------------------------------------------------------

/// A small configuration for the binary: no GeoIP database, no health checks.
fn small() -> String {
    format!(
        "# steerd: kill test\n[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"   # no database\n{}\n[[targets]]\nname = \"cdn-a\"\ncname = \"a.cdn.example.net\"\n{}",
        zone_ns1("example.com", "127.0.0.1"),
        failover("www.example.com", &["cdn-a"])
    )
}

#[test]
fn sigkill_during_a_burst_of_writes_leaves_a_valid_file() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, small()).unwrap();
    let mut version = 0u64;
    let mut acked_total = 0usize;
    let mut leftovers = 0usize;

    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let mut proc = Steerd::spawn(&path, logs.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        // The server serves what the file says, the version included.
        let probe = Http::new(proc.admin);
        let status = probe.get("/v1/status").expect(200).json();
        assert_eq!(status["config_version"], version, "round {round}");
        drop(probe);

        // Writers: each PUTs records (and now and then a target) until the server dies.
        let admin = proc.admin;
        let writers: Vec<_> = (0..4)
            .map(|w| {
                std::thread::spawn(move || {
                    let h = Http::new(admin);
                    let mut acked: Vec<(String, u64)> = Vec::new();
                    let mut odd = Vec::new();
                    for i in 0..10_000 {
                        let (path, body, key) = if i % 5 == 4 {
                            let name = format!("t{round}w{w}i{i}");
                            (
                                format!("/v1/targets/{name}"),
                                json!({"cname": format!("{name}.cdn.example.net")}),
                                format!("name = \"{name}\""),
                            )
                        } else {
                            let name = format!("r{round}w{w}i{i}");
                            (
                                format!("/v1/zones/example.com/records/{name}/A"),
                                json!({"data": "192.0.2.1"}),
                                format!("name = \"{name}\""),
                            )
                        };
                        match h.try_send("PUT", &path, Body::Json(body), &[]) {
                            Ok(r) if r.status == 201 => {
                                acked.push((key, r.json()["version"].as_u64().unwrap()));
                            }
                            Ok(r) => odd.push(format!("{} {}", r.status, r.text)),
                            Err(_) => break,
                        }
                    }
                    (acked, odd)
                })
            })
            .collect();

        std::thread::sleep(Duration::from_millis(100 + rand::random::<u64>() % 400));
        let status = proc.sigkill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}");
        let mut acked = Vec::new();
        for w in writers {
            let (a, odd) = w.join().unwrap();
            assert!(odd.is_empty(), "round {round}: unexpected answers: {odd:?}");
            acked.extend(a);
        }
        drop(proc);

        // The file parses; its version is at least that of every acknowledged write (each was
        // persisted before its answer) and at most one per writer beyond (persisted, not yet
        // answered).
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = steerd::config::parse(&text, "after SIGKILL")
            .unwrap_or_else(|e| panic!("round {round}: the file does not parse: {e}\n{text}"));
        let max_acked = acked.iter().map(|(_, v)| *v).max().unwrap_or(version);
        assert!(
            cfg.version >= max_acked && cfg.version <= max_acked + 4,
            "round {round}: file version {} vs last acknowledged {max_acked}",
            cfg.version
        );
        assert!(
            cfg.version >= version,
            "round {round}: the version went back"
        );
        for (key, v) in &acked {
            assert!(
                text.contains(&format!("{key}\n")),
                "round {round}: acknowledged write (version {v}) {key} is not in the file"
            );
        }
        // Versions were handed out once each.
        let mut vs: Vec<u64> = acked.iter().map(|(_, v)| *v).collect();
        vs.sort();
        vs.dedup();
        assert_eq!(vs.len(), acked.len(), "round {round}: a version twice");
        // Nothing else in the directory but the file, the state file (written at start, also
        // replaced atomically: it parses) and possibly temporary files of the killed process.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "steerd.toml" {
                continue;
            }
            if name == "steerd.state.json" {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let state: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("round {round}: state file: {err}: {text}"));
                assert_eq!(state["format"], 1, "round {round}: {state}");
                continue;
            }
            assert!(
                name.starts_with(".steerd.toml.tmp.")
                    || name.starts_with(".steerd.state.json.tmp."),
                "round {round}: unexpected file {name}"
            );
            leftovers += 1;
        }
        acked_total += acked.len();
        version = cfg.version;
    }
    assert!(
        acked_total > 0,
        "no write was acknowledged before the kills: the test tested nothing"
    );
    eprintln!(
        "{acked_total} writes acknowledged over {ROUNDS} rounds; final version {version}; {leftovers} temporary file(s) left"
    );
}

/// Pushed billing usage and cache metrics are answered only once they are on disk: a SIGKILL
/// right after the answer loses neither.
#[test]
fn acknowledged_usage_and_cache_metrics_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, small()).unwrap();
    let mut previous: Option<(f64, f64)> = None;
    for round in 1..=5u32 {
        let mut proc = Steerd::spawn(&path, logs.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        let h = Http::new(proc.admin);
        let view = h.get("/v1/targets/cdn-a").expect(200).json();
        if let Some((spend, hit)) = previous {
            assert_eq!(
                view["usage"]["spend_usd"],
                json!(spend),
                "round {round}: {view}"
            );
            assert_eq!(
                view["cache_metrics"]["hit_ratio"],
                json!(hit),
                "round {round}: {view}"
            );
        }
        let spend = f64::from(round) * 10.0 + 0.5;
        let hit = f64::from(round) / 10.0;
        h.put("/v1/targets/cdn-a/usage", json!({"spend_usd": spend}))
            .expect(200);
        h.put("/v1/targets/cdn-a/cache-metrics", json!({"hit_ratio": hit}))
            .expect(200);
        proc.sigkill();
        previous = Some((spend, hit));
    }
}

#[test]
fn tokens_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    let config = format!(
        "{}\n[admin]\ntokens = [{{ token_env = \"STEERD_TEST_ENV_TOKEN\", scope = \"admin\", name = \"ci\" }}]\n",
        small()
    );
    std::fs::write(&path, &config).unwrap();

    // The variable is missing: the server does not start, and says why.
    let err = match Steerd::spawn(&path, dir.path(), &[]) {
        Ok(_) => panic!("started although STEERD_TEST_ENV_TOKEN is not set"),
        Err(e) => e,
    };
    assert!(
        err.contains("admin.tokens[0].token_env") && err.contains("STEERD_TEST_ENV_TOKEN"),
        "{err}"
    );

    let env_admin = "env-admin-token-0123456789";
    let extra_admin = "extra-admin-token-0123456789";
    let env_read = "env-read-token-0123456789";
    let p = Steerd::spawn(
        &path,
        dir.path(),
        &[
            ("STEERD_TEST_ENV_TOKEN", env_admin),
            ("STEERD_ADMIN_TOKEN", &format!("short, {extra_admin}")),
            ("STEERD_READ_TOKEN", env_read),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let anon = Http::new(p.admin);
    anon.get("/v1/status").expect(401);
    for t in [env_admin, extra_admin] {
        let h = Http::with_token(p.admin, t);
        assert_eq!(h.get("/v1/status").expect(200).json()["auth"], true);
    }
    Http::with_token(p.admin, env_admin)
        .put(
            "/v1/zones/example.com/records/env/A",
            json!({"data": "192.0.2.9"}),
        )
        .expect(201);
    Http::with_token(p.admin, extra_admin)
        .put(
            "/v1/zones/example.com/records/env2/A",
            json!({"data": "192.0.2.9"}),
        )
        .expect(201);
    let read = Http::with_token(p.admin, env_read);
    read.get("/v1/targets").expect(200);
    read.put(
        "/v1/zones/example.com/records/env3/A",
        json!({"data": "192.0.2.9"}),
    )
    .expect(403);
    // A token shorter than 16 characters from STEERD_ADMIN_TOKEN is ignored.
    Http::with_token(p.admin, "short")
        .get("/v1/status")
        .expect(401);
    // The secret is not written to the file.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(env_admin) && !text.contains(extra_admin),
        "{text}"
    );
    assert!(text.contains("token_env = \"STEERD_TEST_ENV_TOKEN\""));
}

// ---------------------------------------------------------------------------------------------
// Runtime state across restarts: this month's answers, billing reports, cache metrics
// ---------------------------------------------------------------------------------------------

/// cdn-a is metered at $1,000 per answer (1 GB × $1,000/GB) with a $1 monthly cap: its first
/// answer puts it over the cap and the failover service moves to cdn-b. Nothing is probed.
fn capped(state_file: Option<&str>) -> String {
    let state = state_file
        .map(|s| format!("[server]\nstate_file = \"{s}\"\n"))
        .unwrap_or_default();
    format!(
        "{state}{}{}",
        zone("example.com"),
        www_over_a_b(CAPPED_AT_FIRST_ANSWER)
    )
}

fn www(srv: &TestServer) -> String {
    answer(srv, "www.example.com", None)
}

/// The first answer of www.example.com, over UDP only: it may put cdn-a over its cap, so a
/// second query (the TCP one of [`www`]) may already see the next table.
fn www_first(srv: &TestServer) -> String {
    let m = common::udp(
        srv.udp,
        &common::query("www.example.com", RecordType::A, None),
    );
    m.answers
        .first()
        .map(|r| r.data.to_string())
        .unwrap_or_else(|| format!("{:?}", m.metadata.response_code))
}

/// Answer cdn-a until its answers put it over the cap: the answer moves to cdn-b.
fn spend_cdn_a(srv: &TestServer) {
    assert_eq!(www_first(srv), "edge.cdn-a.example.net.");
    let deadline = Instant::now() + Duration::from_secs(15);
    while www_first(srv) != "edge.cdn-b.example.net." {
        assert!(Instant::now() < deadline, "cdn-a never went over its cap");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn month_answers_usage_and_cache_metrics_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, capped(None)).unwrap();
    let state = dir.path().join("steerd.state.json");

    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    spend_cdn_a(&srv);
    let before = h.get("/v1/targets/cdn-a").expect(200).json()["cost"].clone();
    assert_eq!(before["over_cap"], true, "{before}");
    let spent = before["spend_so_far_usd"].as_f64().unwrap();
    assert!(spent >= 1000.0, "{before}");
    let as_of = now_s();
    h.put(
        "/v1/targets/cdn-b/usage",
        json!({"spend_usd": 12.5, "bytes": 4_000_000_000u64, "as_of": as_of}),
    )
    .expect(200);
    h.put(
        "/v1/targets/cdn-b/cache-metrics",
        json!({"hit_ratio": 0.93, "purge_ratio": 0.01}),
    )
    .expect(200);
    let cdn_b = h.get("/v1/targets/cdn-b").expect(200).json();
    drop(h);
    drop(srv); // shutdown: the state is saved

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["format"], 1, "{saved}");
    // cdn-a was answered until it went over the cap, then not again: its spend is its answers.
    let answers = saved["answers"]["cdn-a"].as_u64().unwrap();
    assert!(answers >= 1, "{saved}");
    assert_eq!(answers as f64 * 1000.0, spent, "{saved} vs {before}");
    assert_eq!(saved["usage"]["cdn-b"]["spend_usd"], 12.5, "{saved}");
    assert_eq!(saved["cache"]["cdn-b"]["hit_ratio"], 0.93, "{saved}");

    // Started again from the same file: cdn-a is still over its cap, from the first query on.
    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    assert_eq!(
        www(&srv),
        "edge.cdn-b.example.net.",
        "the cap holds across the restart"
    );
    let after = h.get("/v1/targets/cdn-a").expect(200).json()["cost"].clone();
    assert_eq!(after["over_cap"], true, "{after}");
    // Exactly the saved answers: taken back once, not added twice.
    assert_eq!(
        after["spend_so_far_usd"].as_f64().unwrap(),
        spent,
        "before {before}, after {after}"
    );
    let b = h.get("/v1/targets/cdn-b").expect(200).json();
    assert_eq!(b["usage"], cdn_b["usage"], "{b}");
    assert_eq!(b["usage"]["as_of"], as_of, "{b}");
    assert_eq!(b["cache_metrics"], cdn_b["cache_metrics"], "{b}");
    assert_eq!(b["cost"], cdn_b["cost"], "{b}");
}

#[test]
fn without_a_state_file_a_restart_forgets_the_month() {
    // The control for the test above: with `state_file = ""` nothing is kept, and the capped
    // CDN takes traffic again after a restart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, capped(Some(""))).unwrap();
    let srv = TestServer::start_file(&path, false);
    spend_cdn_a(&srv);
    drop(srv);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["steerd.toml"], "no state written");
    let srv = TestServer::start_file(&path, false);
    assert_eq!(www_first(&srv), "edge.cdn-a.example.net.");
}

#[test]
fn answers_of_an_earlier_month_are_not_carried_but_reports_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    let state = dir.path().join("elsewhere.json");
    std::fs::write(&path, capped(Some(state.to_str().unwrap()))).unwrap();
    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    spend_cdn_a(&srv);
    h.put("/v1/targets/cdn-b/cache-metrics", json!({"hit_ratio": 0.5}))
        .expect(200);
    drop(h);
    drop(srv);
    // The saved month becomes last month (any earlier month start will do).
    let mut saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let month = saved["month_start_ms"].as_u64().unwrap();
    saved["month_start_ms"] = json!(month - 28 * 86_400_000);
    // And a target that no longer exists: ignored.
    saved["answers"]["gone"] = json!(5);
    saved["cache"]["gone"] = saved["cache"]["cdn-b"].clone();
    std::fs::write(&state, saved.to_string()).unwrap();

    let srv = TestServer::start_file(&path, false);
    let h = Http::new(srv.admin.unwrap());
    assert_eq!(
        www_first(&srv),
        "edge.cdn-a.example.net.",
        "a new month, a new budget"
    );
    let b = h.get("/v1/targets/cdn-b").expect(200).json();
    assert_eq!(b["cache_metrics"]["hit_ratio"], 0.5, "{b}");
}

#[test]
fn an_unreadable_state_file_is_set_aside_and_steerd_starts_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, capped(None)).unwrap();
    let state = dir.path().join("steerd.state.json");
    let garbage = "{\"format\": 1, \"answers\": {\"cdn-a\": \"lots\"}}";
    std::fs::write(&state, garbage).unwrap();

    let srv = TestServer::start_file(&path, false);
    assert_eq!(www_first(&srv), "edge.cdn-a.example.net.", "started afresh");
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".state.json.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}");
    assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), garbage);
    // The next save writes a good file in its place.
    drop(srv);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(saved["answers"]["cdn-a"].as_u64().unwrap() >= 1, "{saved}");
}

#[test]
fn a_state_file_that_cannot_be_read_is_left_alone_and_nothing_is_kept() {
    // Something steerd cannot read where its state file should be (here a directory: root
    // reads every file). It might hold a good state: steerd neither moves nor replaces it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, capped(None)).unwrap();
    let state = dir.path().join("steerd.state.json");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("marker"), "x").unwrap();
    let srv = TestServer::start_file(&path, false);
    spend_cdn_a(&srv);
    drop(srv);
    assert!(state.join("marker").exists());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["steerd.state.json", "steerd.toml"]);
}

#[test]
fn a_directory_as_state_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = capped(Some(dir.path().to_str().unwrap()));
    let errs = steerd::config::parse(&text, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(errs.contains("server.state_file"), "{errs}");
    assert!(errs.contains("is a directory"), "{errs}");
}

/// Issue 12, item 17: a crash between writing the temporary file and renaming it over the
/// configuration leaves `.steerd.toml.tmp.PID`; steerd removes those of processes that are gone,
/// at start and before each write, and leaves every other file alone.
#[test]
fn temporary_files_left_by_an_interrupted_write_are_removed_at_start_and_before_each_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, small()).unwrap();
    let at = |name: &str| dir.path().join(name);
    // A process id no process has (above any pid_max), and pid 1, which always runs.
    let dead = at(".steerd.toml.tmp.2147483646");
    let dead_state = at(".steerd.state.json.tmp.2147483645");
    let live = at(".steerd.toml.tmp.1");
    let not_ours = [
        at(".steerd.toml.tmp.12x"),
        at(".steerd.toml.tmp."),
        at(".other.toml.tmp.2147483646"),
        at("steerd.toml.tmp.2147483646"),
    ];
    for p in [&dead, &dead_state, &live].into_iter().chain(&not_ours) {
        std::fs::write(p, "half a configuration").unwrap();
    }

    let srv = TestServer::start_file(&path, false);
    assert!(
        !dead.exists(),
        "the stale temporary file is removed at start"
    );
    assert!(
        !dead_state.exists(),
        "the state file's stale temporary file is removed before its first write"
    );
    assert!(
        live.exists(),
        "a live process's temporary file is left alone"
    );
    for p in &not_ours {
        assert!(
            p.exists(),
            "{} is not a temporary file of ours",
            p.display()
        );
    }

    // Another crash, then a write: removed first.
    std::fs::write(&dead, "half a configuration").unwrap();
    let h = Http::new(srv.admin.unwrap());
    h.put(
        "/v1/zones/example.com/records/new/A",
        json!({"data": "192.0.2.7"}),
    )
    .expect(201);
    assert!(
        !dead.exists(),
        "the stale temporary file is removed before a write"
    );
    assert!(live.exists());
    // The write itself leaves nothing behind.
    let ours = format!(".steerd.toml.tmp.{}", std::process::id());
    assert!(!at(&ours).exists());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("192.0.2.7")
    );
}
