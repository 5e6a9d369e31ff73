use super::*;
use crate::dns::fast::{self, FastOutcome};
use crate::dns::guard::{Guard, Now};
use crate::table::RoutingTable;
use crate::table::labels::{RCODES, intern, label};
use std::time::Duration;

fn compile(text: &str) -> RoutingTable {
    let cfg = crate::config::parse(text, "stats test").unwrap();
    let geo = crate::geo::GeoData::new(None, cfg.countries.clone(), cfg.geo.nets.clone());
    crate::policy::compile(&cfg, &geo)
}

/// The fast path's metrics labels for one query.
fn fast_labels(t: &RoutingTable, name: &str, ecs: bool) -> (String, String, &'static str, bool) {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    use std::str::FromStr;
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    if ecs {
        let mut e = Edns::new();
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            "81.2.69.0".parse().unwrap(),
            24,
            0,
        )));
        m.set_edns(e);
    }
    let mut out = [0u8; crate::dns::precompute::MAX_FAST_RESPONSE];
    let q = m.to_vec().unwrap();
    let (guard, now) = (Guard::none(), Now { mono: 0, unix: 0 });
    let client = "192.0.2.1".parse().unwrap();
    let key = match fast::answer(t, &guard, now, &q, client, &mut out) {
        FastOutcome::Answered(_, key) => key,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(key.proto(), Proto::Udp);
    (
        label(key.service()).to_string(),
        label(key.target()).to_string(),
        RCODES[key.rcode() as usize],
        key.ecs(),
    )
}

const DEMO: &str = include_str!("../../../config/steerd.toml");

#[test]
fn fast_path_keys_name_the_answer_across_renames_and_reorders() {
    let a = compile(DEMO);
    let l = |svc: &str, tgt: &str, rc: &'static str, ecs: bool| {
        (svc.to_string(), tgt.to_string(), rc, ecs)
    };
    assert_eq!(
        fast_labels(&a, "assets.example.com.", false),
        l("assets.example.com.", "cdn-a", "noerror", false)
    );
    assert_eq!(
        fast_labels(&a, "ASSETS.example.com.", true),
        l("assets.example.com.", "cdn-a", "noerror", true)
    );
    assert_eq!(
        fast_labels(&a, "static.example.com.", false),
        l("example.com.", "", "noerror", false)
    );
    assert_eq!(
        fast_labels(&a, "nosuch.example.com.", true),
        l("example.com.", "", "nxdomain", true)
    );
    // Rename cdn-a, and put cdn-b first for assets: new table, new labels; the ids of
    // the names both tables share do not move.
    let renamed = DEMO.replace("\"cdn-a\"", "\"cdn-x\"").replace(
        "targets = [{ target = \"cdn-x\" }, { target = \"cdn-b\" }, { target = \"origin\" }]",
        "targets = [{ target = \"cdn-b\" }, { target = \"cdn-x\" }, { target = \"origin\" }]",
    );
    let b = compile(&renamed);
    assert_eq!(
        fast_labels(&b, "assets.example.com.", false),
        l("assets.example.com.", "cdn-b", "noerror", false)
    );
    assert_eq!(a.labels().service(3), b.labels().service(3));
    assert_eq!(a.labels().zone(0), b.labels().zone(0));
    assert_eq!(&*label(a.labels().zone(0)), "example.com.");
    // Every answer of the old table still resolves to its own names.
    assert_eq!(
        fast_labels(&a, "assets.example.com.", false),
        l("assets.example.com.", "cdn-a", "noerror", false)
    );
}

#[test]
fn collector_renders_both_families() {
    let stats = QueryStats::new();
    let svc = intern("render.example.");
    stats.record(
        QueryKey::new(svc, 0, 1, Proto::Tcp, false),
        Duration::from_micros(60),
    );
    let fams = families(&stats.snapshot());
    let mut out = Vec::new();
    use prometheus::Encoder;
    prometheus::TextEncoder::new()
        .encode(&fams, &mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(
        "steerd_dns_queries_total{ecs=\"false\",proto=\"tcp\",rcode=\"nxdomain\",service=\"render.example.\",target=\"\"} 1\n"
    ), "{text}");
    assert!(
        text.contains(
            "steerd_dns_response_duration_seconds_bucket{proto=\"tcp\",le=\"0.0001\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "steerd_dns_response_duration_seconds_bucket{proto=\"tcp\",le=\"0.00005\"} 0\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("steerd_dns_response_duration_seconds_count{proto=\"udp\"} 0\n"),
        "{text}"
    );
}
