//! Hot swap: the routing table is replaced 1,000 times while clients query over UDP and TCP; no
//! query is lost and every answer comes from the old or the new table.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

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
    let clients: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut n, mut seen_a, mut seen_b) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let q = query("assets.example.com.", RecordType::A, Some(1232));
                    let bytes = q.to_vec().unwrap();
                    // Client 0 uses UDP (fast path), client 1 TCP (hickory handler).
                    let resp = if k == 0 {
                        raw_udp(udp, &bytes, Duration::from_secs(2))
                    } else {
                        raw_tcp(tcp, &bytes, Duration::from_secs(2))
                    }
                    .unwrap_or_else(|| panic!("query {n} on client {k} lost"));
                    let a = answer_of(&resp);
                    match a.as_str() {
                        A => seen_a += 1,
                        B => seen_b += 1,
                        other => panic!("answer {other} is from neither table"),
                    }
                    n += 1;
                }
                (n, seen_a, seen_b)
            })
        })
        .collect();

    let first_a = config_with_first("cdn-a");
    let first_b = config_with_first("cdn-b");
    let mut generations = Vec::new();
    for i in 0..1000 {
        let cfg = if i % 2 == 0 {
            first_b.clone()
        } else {
            first_a.clone()
        };
        generations.push(srv.server().apply(cfg).unwrap().generation);
        // Give the clients a chance to see each table.
        thread::yield_now();
    }
    // Let the clients observe the final table too.
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (n, a, b) = c.join().expect("client thread ok");
        assert_eq!(n, a + b);
        total += n;
        assert!(a > 0 && b > 0, "both tables were served (a={a}, b={b})");
    }
    assert!(total >= 100, "clients made {total} queries");
    generations.dedup();
    assert_eq!(
        generations.len(),
        1000,
        "every swap produced a new generation"
    );
    // The last swap installed cdn-a first.
    let q = query("assets.example.com.", RecordType::A, None);
    let resp = raw_udp(udp, &q.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
    assert_eq!(answer_of(&resp), A);
}

#[test]
fn rejected_config_leaves_the_running_table_serving() {
    let srv = TestServer::start(DEMO);
    let before = srv.server.as_ref().unwrap().table().load().generation;
    let broken = DEMO.replace("weight = 40", "weight = 0");
    assert!(steerd::config::parse(&broken, "broken").is_err());
    // Nothing was applied: the same table answers.
    assert_eq!(
        srv.server.as_ref().unwrap().table().load().generation,
        before
    );
    let q = query("assets.example.com.", RecordType::A, None);
    let resp = raw_udp(srv.udp, &q.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
    assert_eq!(answer_of(&resp), A);
}
