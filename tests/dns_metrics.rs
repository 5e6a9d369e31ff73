//! DNS query metrics (`steerd_dns_queries_total`, `steerd_dns_response_duration_seconds`):
//! real queries over UDP and TCP against a running server, read back through the Prometheus
//! collector, with exact counts per label set; labels stay right across a configuration change.

mod common;

use std::time::{Duration, Instant};

use common::{DEMO, TestServer, hdr, query, raw_udp, tcp, udp};
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use prometheus::Encoder;
use steerd::config::UdpEngine;
use steerd::dns::stats::{self, Proto, Snapshot};

/// A query with an EDNS Client Subnet option (81.2.69.0/24).
fn ecs_query(name: &str, qtype: RecordType) -> Message {
    let mut q = query(name, qtype, None);
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        "81.2.69.0".parse().unwrap(),
        24,
        0,
    )));
    q.set_edns(e);
    q
}

fn table(srv: &TestServer) -> steerd::table::TableHandle {
    srv.server.as_ref().unwrap().table().clone()
}

/// The metrics text, as `GET /metrics` would render the collector.
fn scrape(srv: &TestServer) -> String {
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(stats::collector(table(srv))))
        .unwrap();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// The value of one sample line of the text format (`name{labels}`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn queries_series(service: &str, target: &str, rcode: &str, proto: &str, ecs: bool) -> String {
    format!(
        "steerd_dns_queries_total{{ecs=\"{ecs}\",proto=\"{proto}\",rcode=\"{rcode}\",\
         service=\"{service}\",target=\"{target}\"}}"
    )
}

/// Counts are recorded just after a response is handed to the kernel, so a client can see
/// the response a moment before its count: wait until `total` queries are counted.
fn settled(srv: &TestServer, total: u64) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats::snapshot(&table(srv));
        if s.total() >= total || Instant::now() > deadline {
            assert_eq!(s.total(), total, "queries counted: {:#?}", s.queries);
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send the four kinds of queries over one protocol, with or without ECS; the rcodes seen.
fn four_kinds(srv: &TestServer, over_tcp: bool, ecs: bool) -> Vec<ResponseCode> {
    [
        "assets.example.com.",
        "static.example.com.",
        "nosuch.example.com.",
        "example.org.",
    ]
    .iter()
    .map(|name| {
        let q = if ecs {
            ecs_query(name, RecordType::A)
        } else {
            query(name, RecordType::A, None)
        };
        let m = if over_tcp {
            tcp(srv.tcp, &q)
        } else {
            udp(srv.udp, &q)
        };
        m.metadata.response_code
    })
    .collect()
}

/// The expected counts of `four_kinds` once per protocol and ECS setting.
fn expected_four_kinds(engine_udp_repeat: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for proto in ["udp", "tcp"] {
        let n = if proto == "udp" { engine_udp_repeat } else { 1 };
        for ecs in [false, true] {
            out.push((
                queries_series("assets.example.com.", "cdn-a", "noerror", proto, ecs),
                n,
            ));
            out.push((queries_series("example.com.", "", "noerror", proto, ecs), n));
            out.push((
                queries_series("example.com.", "", "nxdomain", proto, ecs),
                n,
            ));
            out.push((queries_series("", "", "refused", proto, ecs), n));
        }
    }
    out
}

#[test]
fn queries_are_counted_by_service_target_rcode_proto_and_ecs() {
    let srv = TestServer::start(DEMO);
    // Nothing counted yet; the histograms are there, empty.
    let text = scrape(&srv);
    assert!(!text.contains("steerd_dns_queries_total{"), "{text}");
    assert_eq!(
        sample(
            &text,
            "steerd_dns_response_duration_seconds_count{proto=\"udp\"}"
        ),
        Some(0.0)
    );

    let mut sent = 0u64;
    // UDP (fast path) twice, TCP once, each with and without ECS.
    for _ in 0..2 {
        for ecs in [false, true] {
            let rcodes = four_kinds(&srv, false, ecs);
            assert_eq!(
                rcodes,
                [
                    ResponseCode::NoError,
                    ResponseCode::NoError,
                    ResponseCode::NXDomain,
                    ResponseCode::Refused
                ]
            );
            sent += 4;
        }
    }
    for ecs in [false, true] {
        four_kinds(&srv, true, ecs);
        sent += 4;
    }
    // A type the UDP templates do not cover (the general path inside the UDP worker).
    let m = udp(
        srv.udp,
        &query("static.example.com.", RecordType::SRV, None),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    sent += 1;
    // A malformed datagram (QDCOUNT 1, no question): FORMERR, service "".
    let bad = hdr(0x4242, 0x00, 0x00, 1, 0, 0, 0);
    let r = raw_udp(srv.udp, &bad, Duration::from_secs(2)).expect("FORMERR answer");
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    sent += 1;
    // A response packet is dropped, not answered: not counted.
    let resp = hdr(0x4343, 0x80, 0x00, 0, 0, 0, 0);
    assert!(raw_udp(srv.udp, &resp, Duration::from_millis(200)).is_none());

    let snap = settled(&srv, sent);
    let text = scrape(&srv);
    let mut expected = expected_four_kinds(2);
    expected.push((queries_series("", "", "formerr", "udp", false), 1));
    // The SRV query adds to static NOERROR over UDP without ECS.
    for (series, n) in &mut expected {
        if *series == queries_series("example.com.", "", "noerror", "udp", false) {
            *n += 1;
        }
    }
    for (series, n) in &expected {
        assert_eq!(sample(&text, series), Some(*n as f64), "{series}\n{text}");
    }
    let lines = text
        .lines()
        .filter(|l| l.starts_with("steerd_dns_queries_total{"))
        .count();
    assert_eq!(lines, expected.len(), "no other series:\n{text}");

    // The snapshot API agrees.
    assert_eq!(
        snap.count("assets.example.com.", "cdn-a", "noerror", Proto::Udp, true),
        2
    );
    assert_eq!(snap.count("", "", "refused", Proto::Tcp, false), 1);

    // One latency observation per answered query, per protocol.
    let udp_n = 16 + 2;
    let tcp_n = 8;
    assert_eq!(sent, udp_n + tcp_n);
    for (proto, n) in [("udp", udp_n), ("tcp", tcp_n)] {
        let count = format!("steerd_dns_response_duration_seconds_count{{proto=\"{proto}\"}}");
        let inf =
            format!("steerd_dns_response_duration_seconds_bucket{{proto=\"{proto}\",le=\"+Inf\"}}");
        assert_eq!(sample(&text, &count), Some(n as f64), "{text}");
        assert_eq!(sample(&text, &inf), Some(n as f64), "{text}");
        let sum = format!("steerd_dns_response_duration_seconds_sum{{proto=\"{proto}\"}}");
        let sum = sample(&text, &sum).unwrap();
        assert!(sum > 0.0 && sum < n as f64, "{proto} sum {sum}");
    }
    assert_eq!(snap.latency(Proto::Udp).count, udp_n);
    assert_eq!(snap.latency(Proto::Tcp).count, tcp_n);
    // Buckets are cumulative and end at the count.
    let b = &snap.latency(Proto::Tcp).buckets;
    assert!(b.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(b.len(), stats::LATENCY_BUCKETS.len());
}

#[test]
fn hickory_udp_engine_counts_the_same() {
    let srv = TestServer::start_with(DEMO, |c| c.server.udp_engine = UdpEngine::Hickory);
    for ecs in [false, true] {
        four_kinds(&srv, false, ecs);
        four_kinds(&srv, true, ecs);
    }
    settled(&srv, 16);
    let text = scrape(&srv);
    for (series, n) in expected_four_kinds(1) {
        assert_eq!(sample(&text, &series), Some(n as f64), "{series}\n{text}");
    }
    for proto in ["udp", "tcp"] {
        let count = format!("steerd_dns_response_duration_seconds_count{{proto=\"{proto}\"}}");
        assert_eq!(sample(&text, &count), Some(8.0), "{text}");
    }
}

#[test]
fn labels_stay_right_across_a_config_change() {
    let mut srv = TestServer::start(DEMO);
    let ask = |srv: &TestServer| {
        for name in ["assets.example.com.", "near.example.com."] {
            udp(srv.udp, &query(name, RecordType::A, None));
            tcp(srv.tcp, &query(name, RecordType::A, None));
        }
    };
    ask(&srv);
    settled(&srv, 4);

    // cdn-a renamed cdn-x (moved to the end of the target list), and assets now fails over
    // cdn-b first: new names and new target indices for the same answers.
    let cdn_a = DEMO.split("[[targets]]").nth(1).expect("demo has targets");
    let text = DEMO
        .replacen(&format!("[[targets]]{cdn_a}"), "", 1)
        .replace(
            "\n# www is steered",
            &format!(
                "\n[[targets]]{}\n# www is steered",
                cdn_a.replace("\"cdn-a\"", "\"cdn-x\"")
            ),
        )
        .replace("\"cdn-a\"", "\"cdn-x\"")
        .replace(
            "targets = [{ target = \"cdn-x\" }, { target = \"cdn-b\" }, { target = \"origin\" }]",
            "targets = [{ target = \"cdn-b\" }, { target = \"cdn-x\" }, { target = \"origin\" }]",
        );
    let mut cfg = steerd::config::parse(&text, "metrics test").unwrap();
    assert_eq!(
        cfg.targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["cdn-b", "origin", "cdn-x"]
    );
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.udp_sockets = 2;
    cfg.geo.database = None;
    for t in &mut cfg.targets {
        t.check = None;
    }
    srv.server().apply(cfg).expect("config applies");
    ask(&srv);
    settled(&srv, 8);

    let text = scrape(&srv);
    for proto in ["udp", "tcp"] {
        for (service, target, n) in [
            ("assets.example.com.", "cdn-a", 1.0),
            ("assets.example.com.", "cdn-b", 1.0),
            ("near.example.com.", "cdn-a", 1.0),
            ("near.example.com.", "cdn-x", 1.0),
        ] {
            let series = queries_series(service, target, "noerror", proto, false);
            assert_eq!(sample(&text, &series), Some(n), "{series}\n{text}");
        }
    }
    assert!(
        !text.contains("service=\"assets.example.com.\",target=\"cdn-x\""),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("steerd_dns_queries_total{"))
            .count(),
        8,
        "{text}"
    );
}

/// `GET /v1/resolve` (explain) answers what a client would get without counting it as served:
/// the answer counts (the cost cap's spend estimate) move only for real queries.
#[test]
fn explain_never_counts_as_a_served_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, DEMO).unwrap();
    let srv = TestServer::start_file(&path, false);
    let http = common::http::Http::new(srv.admin.unwrap());
    let totals = || table(&srv).load().counters.totals().iter().sum::<u64>();
    let before = totals();
    for client in ["8.8.8.8", "81.2.69.0/24", "127.0.0.1"] {
        for name in ["assets.example.com", "www.example.com", "split.example.com"] {
            let r = http
                .get(&format!("/v1/resolve?name={name}&client={client}"))
                .expect(200)
                .json();
            assert!(
                r["answers"].as_array().is_some_and(|a| !a.is_empty()),
                "{r}"
            );
        }
    }
    assert_eq!(totals(), before, "explain moved the answer counts");
    // A real query over each path counts once.
    udp(srv.udp, &query("assets.example.com", RecordType::A, None));
    tcp(srv.tcp, &query("assets.example.com", RecordType::A, None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while totals() < before + 2 {
        assert!(Instant::now() < deadline, "real queries not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(totals(), before + 2);
}
