//! The two UDP engines (precomputed fast path, and hickory-server's own UDP loop through our
//! RequestHandler) give the same answers.

mod common;

use common::{TestServer, demo_plus, query, udp};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use steerd::config::UdpEngine;

fn summary(m: &Message) -> String {
    let mut recs: Vec<String> = m
        .answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| r.to_string().to_lowercase())
        .collect();
    recs.sort();
    format!(
        "{:?} aa={} tc={} edns={} {:?}",
        m.metadata.response_code,
        m.metadata.authoritative,
        m.metadata.truncation,
        m.edns.is_some(),
        recs
    )
}

#[test]
fn fast_and_hickory_udp_engines_agree() {
    let big: String = (0..20)
        .map(|i| {
            format!(
                "[[zones.records]]\nname = \"big\"\ntype = \"TXT\"\ndata = \"{i:02}{}\"\n",
                "x".repeat(100)
            )
        })
        .collect();
    let cfg = demo_plus(&big);
    let fast = TestServer::start(&cfg);
    let hick = TestServer::start_with(&cfg, |c| c.server.udp_engine = UdpEngine::Hickory);
    let cases = [
        ("www.example.com.", RecordType::A),
        ("WWW.example.COM.", RecordType::AAAA),
        ("assets.example.com.", RecordType::MX),
        ("static.example.com.", RecordType::A),
        ("static.example.com.", RecordType::AAAA),
        ("static.example.com.", RecordType::TXT),
        ("example.com.", RecordType::NS),
        ("example.com.", RecordType::SOA),
        ("example.com.", RecordType::MX),
        ("example.com.", RecordType::ANY),
        ("docs.example.com.", RecordType::A),
        ("lab.example.com.", RecordType::A),
        ("x.lab.example.com.", RecordType::AAAA),
        ("missing.example.com.", RecordType::A),
        ("example.org.", RecordType::A),
        ("big.example.com.", RecordType::TXT),
    ];
    for (name, t) in cases {
        for edns in [None, Some(1232), Some(4096)] {
            let q = query(name, t, edns);
            let a = udp(fast.udp, &q);
            let b = udp(hick.udp, &q);
            assert_eq!(summary(&a), summary(&b), "{name} {t} edns={edns:?}");
        }
    }
    // The big TXT set does not fit: both engines set TC and send no partial RRset.
    let m = udp(hick.udp, &query("big.example.com.", RecordType::TXT, None));
    assert!(m.metadata.truncation && m.answers.is_empty());
}

#[test]
fn fast_nxdomain_agrees_with_the_general_path() {
    use common::tcp;
    use hickory_proto::op::ResponseCode;
    let srv = TestServer::start(&demo_plus(""));
    let cases = [
        (
            "missing.example.com.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "A.Deep.MISSING.example.com.",
            RecordType::AAAA,
            ResponseCode::NXDomain,
        ),
        (
            "missing.example.com.",
            RecordType::DS,
            ResponseCode::NXDomain,
        ),
        (
            "x.static.example.com.",
            RecordType::TXT,
            ResponseCode::NXDomain,
        ),
        // Below the delegation: a referral, not NXDOMAIN.
        ("a.b.lab.example.com.", RecordType::A, ResponseCode::NoError),
        // Outside our zones, and zone transfers: REFUSED.
        ("missing.example.org.", RecordType::A, ResponseCode::Refused),
        (
            "missing.example.com.",
            RecordType::AXFR,
            ResponseCode::Refused,
        ),
    ];
    for (name, t, rcode) in cases {
        for edns in [None, Some(1232)] {
            let q = query(name, t, edns);
            let a = udp(srv.udp, &q);
            let b = tcp(srv.tcp, &q);
            assert_eq!(a.metadata.response_code, rcode, "{name} {t}");
            assert_eq!(summary(&a), summary(&b), "{name} {t} edns={edns:?}");
        }
    }
}
