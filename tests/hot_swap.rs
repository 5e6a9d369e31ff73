//! Hot swap: the routing table is replaced 1,000 times while clients query over UDP and TCP; no
//! query is lost and every answer comes from the old or the new table.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEMO, TestServer, query, raw_tcp, raw_udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const A: &str = "example.global.cdn-a.net.";
const B: &str = "example.b-cdn.example.net.";

fn config_with_first(first: &str) -> steerd::config::ValidConfig {
    let text = DEMO.replace(
        "targets = [{ target = \"cdn-a\" }, { target = \"cdn-b\" }, { target = \"origin\" }]",
        &format!("targets = [{{ target = \"{first}\" }}, {{ target = \"origin\" }}]"),
    );
    assert_ne!(text, DEMO, "demo config shape changed");
    let mut cfg = steerd::config::parse(&text, "swap").unwrap();
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.udp_sockets = 2;
    // Same geo settings as the test server (no database), so a swap only recompiles.
    cfg.geo.database = None;
    // And, like the test server, no health checks (the demo's are on ports nothing serves).
    for t in &mut cfg.targets {
        t.check = None;
    }
    cfg
}

fn answer_of(resp: &[u8]) -> String {
    let m = Message::from_vec(resp).expect("decodes");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    match &m.answers[..] {
        [r] => match &r.data {
            RData::CNAME(c) => c.0.to_ascii(),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("expected one answer, got {other:?}"),
    }
}

#[test]
fn thousand_swaps_under_query_load_lose_nothing() {
    let mut srv = TestServer::start(DEMO);
    let (udp, tcp) = (srv.udp, srv.tcp);
    let stop = Arc::new(AtomicBool::new(false));
    // Per client (0: UDP, the fast path; 1: TCP, the general path): answers from each table.
    let seen: Arc<[[AtomicU64; 2]; 2]> = Arc::new(Default::default());
    let clients: Vec<_> = (0..2)
        .map(|k| {
            let (stop, seen) = (stop.clone(), seen.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let q = query("assets.example.com.", RecordType::A, Some(1232));
                    let bytes = q.to_vec().unwrap();
                    let resp = if k == 0 {
                        raw_udp(udp, &bytes, Duration::from_secs(2))
                    } else {
                        raw_tcp(tcp, &bytes, Duration::from_secs(2))
                    }
                    .unwrap_or_else(|| panic!("query {n} on client {k} lost"));
                    let table = match answer_of(&resp).as_str() {
                        A => 0,
                        B => 1,
                        other => panic!("answer {other} is from neither table"),
                    };
                    seen[k][table].fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();

    let first_a = config_with_first("cdn-a");
    let first_b = config_with_first("cdn-b");
    let both_seen = || {
        seen.iter()
            .all(|c| c.iter().all(|t| t.load(Ordering::Relaxed) > 0))
    };
    // 1,000 swaps, then more until each client has been answered from both tables (on a
    // loaded machine a client may not run during the first thousand).
    let mut generations = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while i < 1000 || !both_seen() {
        assert!(
            Instant::now() < deadline,
            "clients never saw both tables: {seen:?}"
        );
        let cfg = if i % 2 == 0 { &first_b } else { &first_a };
        generations.push(srv.server().apply(cfg.clone()).unwrap().generation);
        thread::yield_now();
        i += 1;
    }
    // End on cdn-a first.
    if i % 2 == 1 {
        generations.push(srv.server().apply(first_a.clone()).unwrap().generation);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread ok");
    }
    let swaps = generations.len();
    generations.dedup();
    assert_eq!(
        generations.len(),
        swaps,
        "every swap produced a new generation"
    );
    // The last swap installed cdn-a first, on both paths.
    let q = query("assets.example.com.", RecordType::A, None);
    let bytes = q.to_vec().unwrap();
    let resp = raw_udp(udp, &bytes, Duration::from_secs(2)).unwrap();
    assert_eq!(answer_of(&resp), A);
    let resp = raw_tcp(tcp, &bytes, Duration::from_secs(2)).unwrap();
    assert_eq!(answer_of(&resp), A);
}

#[test]
fn rejected_config_leaves_the_running_table_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, DEMO).unwrap();
    let srv = TestServer::start_file(&path, false);
    let server = srv.server.as_ref().unwrap();
    let before = server.table().load().generation;
    // The file goes bad; a reload (SIGHUP does the same) refuses it.
    std::fs::write(&path, DEMO.replace("weight = 40", "weight = 0")).unwrap();
    let err = server.reload().expect_err("a bad file is refused");
    assert!(err.contains("weight"), "{err}");
    // Nothing was applied: the same table answers.
    assert_eq!(server.table().load().generation, before);
    let q = query("assets.example.com.", RecordType::A, None);
    let resp = raw_udp(srv.udp, &q.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
    assert_eq!(answer_of(&resp), A);
}
