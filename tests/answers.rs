//! Answer shapes over real sockets, each checked over both UDP (fast path when it applies) and
//! TCP (hickory `RequestHandler` path): authoritative data, negative answers, referrals, CNAMEs,
//! steered names, minimal ANY, 0x20 case, EDNS, truncation, opcodes, question counts, fast/general
//! path agreement and the IPv6 listener.

mod common;

use std::fmt;
use std::net::UdpSocket;
use std::ops::RangeInclusive;
use std::time::Duration;

use common::config::{failover, record, record_toml};
use common::{
    DEMO, TestServer, assert_bare_error, be16, demo_plus, dig, opt_rr, query, question, raw_msg,
    raw_tcp, raw_udp, raw_udp_from, tcp, udp,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

const WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The transport a response came over, and the table case it answers (empty outside tables).
/// Its `Debug` form starts every failure message, so a failing case is named.
#[derive(Clone, Copy)]
struct Via<'a> {
    tcp: bool,
    case: &'a str,
}

impl Via<'static> {
    const UDP: Self = Via {
        tcp: false,
        case: "",
    };
    const TCP: Self = Via {
        tcp: true,
        case: "",
    };
}

impl fmt::Debug for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = if self.tcp { "Tcp" } else { "Udp" };
        if self.case.is_empty() {
            f.write_str(transport)
        } else {
            write!(f, "{} over {transport}", self.case)
        }
    }
}

/// Send the same query over UDP and over TCP and run `check` on each decoded response.
fn both(srv: &TestServer, q: &Message, check: impl Fn(Via, &Message)) {
    both_named(srv, "", q, check);
}

/// `both`, with `case` named in every failure message.
fn both_named<'a>(srv: &TestServer, case: &'a str, q: &Message, check: impl Fn(Via<'a>, &Message)) {
    check(Via { case, ..Via::UDP }, &udp(srv.udp, q));
    check(Via { case, ..Via::TCP }, &tcp(srv.tcp, q));
}

/// Query every `(name, type)` over UDP and TCP and run `check` on each response; failure
/// messages name the query.
fn both_each(srv: &TestServer, cases: &[(&str, RecordType)], check: impl Fn(Via, &Message)) {
    for &(name, t) in cases {
        both_named(srv, &format!("{name} {t}"), &query(name, t, None), &check);
    }
}

/// Send the same raw bytes over UDP and over TCP and run `check` on each raw response.
fn both_raw(srv: &TestServer, bytes: &[u8], check: impl Fn(Via, &[u8])) {
    let u = raw_udp(srv.udp, bytes, WAIT).expect("UDP answer within 2 s");
    check(Via::UDP, &u);
    let t = raw_tcp(srv.tcp, bytes, WAIT).expect("TCP answer within 2 s");
    check(Via::TCP, &t);
}

/// Records as sorted presentation strings "owner ttl class type rdata" (TTL included).
fn rrs(v: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|r| r.to_string()).collect();
    out.sort();
    out
}

fn set(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// Header checks common to every answer to a QUERY sent with RD=0.
fn header(via: Via, m: &Message, rcode: ResponseCode, aa: bool) {
    assert_eq!(
        m.metadata.message_type,
        MessageType::Response,
        "{via:?}: QR=1"
    );
    assert_eq!(m.metadata.op_code, OpCode::Query, "{via:?}: opcode QUERY");
    assert_eq!(m.metadata.response_code, rcode, "{via:?}: rcode");
    assert_eq!(m.metadata.authoritative, aa, "{via:?}: AA");
    assert!(!m.metadata.truncation, "{via:?}: TC must be 0");
    assert!(
        !m.metadata.recursion_desired,
        "{via:?}: RD copied from the query (0)"
    );
    assert!(
        !m.metadata.recursion_available,
        "{via:?}: RA=0 on an authoritative server"
    );
    assert_eq!(m.queries.len(), 1, "{via:?}: the question is echoed");
}

/// An authoritative NOERROR answer: exactly `answers`, an empty authority section and exactly
/// `additional` (glue) in the additional section.
fn positive(via: Via, m: &Message, answers: &[&str], additional: &[&str]) {
    header(via, m, ResponseCode::NoError, true);
    assert_eq!(rrs(&m.answers), set(answers), "{via:?}: answer");
    assert!(
        m.authorities.is_empty(),
        "{via:?}: no authority, got {:?}",
        rrs(&m.authorities)
    );
    assert_eq!(
        rrs(&m.additionals),
        set(additional),
        "{via:?}: additional (glue)"
    );
}

/// The demo zone's negative-answer SOA: TTL min(3600, 300) = 300.
const NEG_SOA: &str = "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 7200 3600 1209600 300";

/// The two A records of static.example.com.
const STATIC_A: [&str; 2] = [
    "static.example.com. 3600 IN A 192.0.2.10",
    "static.example.com. 3600 IN A 192.0.2.11",
];

/// An authoritative negative answer: empty answer, exactly the negative SOA in authority.
fn negative(via: Via, m: &Message, rcode: ResponseCode) {
    header(via, m, rcode, true);
    assert!(
        m.answers.is_empty(),
        "{via:?}: empty answer, got {:?}",
        rrs(&m.answers)
    );
    assert_eq!(
        rrs(&m.authorities),
        set(&[NEG_SOA]),
        "{via:?}: SOA in authority"
    );
    assert!(
        m.additionals.is_empty(),
        "{via:?}: no additional, got {:?}",
        rrs(&m.additionals)
    );
}

/// An authoritative NODATA answer: NOERROR, empty answer, the negative SOA in authority.
fn nodata(via: Via, m: &Message) {
    negative(via, m, ResponseCode::NoError);
}

/// Where the question of a raw query for `name`/`qtype` ends (after the 12-byte header).
fn question_end(name: &str, qtype: u16) -> usize {
    12 + question(name, qtype).len()
}

fn decode(via: Via, b: &[u8]) -> Message {
    Message::from_vec(b).unwrap_or_else(|e| panic!("{via:?}: response decodes: {e}"))
}

/// Static extra data used by several tests.
fn extra_config() -> String {
    let txt = |n: usize| -> String {
        (0..n)
            .map(|i| format!("\"{i:02}-{}\"", "x".repeat(197)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}{}{}\n[[targets]]\nname = \"pool\"\na = [\"192.0.2.81\", \"192.0.2.82\"]\naaaa = [\"2001:db8::81\"]\n{}",
        record("a.b", "A", "192.0.2.99"),
        record_toml("big", "TXT", &format!("[{}]", txt(BIG_N))),
        record_toml("mid", "TXT", &format!("[{}]", txt(MID_N))),
        failover("app.example.com", &["pool"])
    )
}

/// big.example.com: 15 TXT records of 200 bytes (~3.2 KB answer).
const BIG_N: usize = 15;
/// mid.example.com: 4 TXT records of 200 bytes (~0.9 KB answer: over 512, under 1232).
const MID_N: usize = 4;

fn extra_server() -> TestServer {
    TestServer::start(&demo_plus(&extra_config()))
}

fn txt_strings(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<String>(),
            other => panic!("expected TXT, got {other:?}"),
        })
        .collect();
    v.sort();
    v
}

fn expected_txt(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{i:02}-{}", "x".repeat(197)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Authoritative data at the apex and below
// ---------------------------------------------------------------------------------------------

/// A table case: its name, the query name and type, the exact answer and additional records.
type AnswerCase = (
    &'static str,
    &'static str,
    RecordType,
    &'static [&'static str],
    &'static [&'static str],
);

/// SOA, NS (with glue), static A and AAAA, a CNAME asked for itself, MX (with the target's
/// address): exactly the configured records, nothing in authority, only glue in additional.
#[test]
fn authoritative_data_with_glue() {
    let srv = TestServer::start(DEMO);
    use RecordType::*;
    let cases: [AnswerCase; 6] = [
        (
            "SOA at apex",
            "example.com.",
            SOA,
            &[
                "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 7200 3600 1209600 300",
            ],
            &[],
        ),
        (
            "NS at apex with glue",
            "example.com.",
            NS,
            &[
                "example.com. 86400 IN NS ns1.example.com.",
                "example.com. 86400 IN NS ns2.example.com.",
            ],
            &[
                "ns1.example.com. 3600 IN A 127.0.0.1",
                "ns2.example.com. 3600 IN A 127.0.0.2",
            ],
        ),
        (
            "static A has two records",
            "static.example.com.",
            A,
            &STATIC_A,
            &[],
        ),
        (
            "static AAAA",
            "static.example.com.",
            AAAA,
            &["static.example.com. 3600 IN AAAA 2001:db8::10"],
            &[],
        ),
        (
            "CNAME query returns the CNAME only",
            "docs.example.com.",
            CNAME,
            &["docs.example.com. 3600 IN CNAME static.example.com."],
            &[],
        ),
        (
            "MX at apex with the target's address",
            "example.com.",
            MX,
            &["example.com. 3600 IN MX 10 mail.example.com."],
            &["mail.example.com. 3600 IN A 192.0.2.25"],
        ),
    ];
    for (case, name, t, answers, additional) in cases {
        both_named(&srv, case, &query(name, t, None), |via, m| {
            positive(via, m, answers, additional);
        });
    }
}

/// A check of one record's decoded data.
type RDataCheck = fn(Via, &RData);

/// TXT and CAA at the apex: one record each, checked on its decoded data.
#[test]
fn txt_and_caa_at_apex() {
    let srv = TestServer::start(DEMO);
    let cases: [(&str, RecordType, RDataCheck); 2] = [
        ("TXT at apex", RecordType::TXT, |via, data| match data {
            RData::TXT(t) => {
                assert_eq!(t.txt_data.len(), 1, "{via:?}");
                assert_eq!(&*t.txt_data[0], b"v=spf1 mx -all", "{via:?}");
            }
            other => panic!("{via:?}: expected TXT, got {other:?}"),
        }),
        ("CAA at apex", RecordType::CAA, |via, data| match data {
            RData::CAA(c) => assert_eq!(c.to_string(), "0 issue \"letsencrypt.org\"", "{via:?}"),
            other => panic!("{via:?}: expected CAA, got {other:?}"),
        }),
    ];
    for (case, t, check_data) in cases {
        both_named(&srv, case, &query("example.com.", t, None), |via, m| {
            header(via, m, ResponseCode::NoError, true);
            assert_eq!(m.answers.len(), 1, "{via:?}");
            let r = &m.answers[0];
            assert_eq!(r.name.to_ascii(), "example.com.", "{via:?}");
            assert_eq!(r.ttl, 3600, "{via:?}");
            check_data(via, &r.data);
            assert!(
                m.authorities.is_empty() && m.additionals.is_empty(),
                "{via:?}"
            );
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Negative answers, REFUSED
// ---------------------------------------------------------------------------------------------

#[test]
fn nxdomain_has_soa_with_negative_ttl() {
    let srv = TestServer::start(DEMO);
    let mut cases = Vec::new();
    for name in ["nosuch.example.com.", "deep.below.static.example.com."] {
        for t in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
            cases.push((name, t));
        }
    }
    both_each(&srv, &cases, |via, m| {
        negative(via, m, ResponseCode::NXDomain)
    });
}

#[test]
fn nodata_for_existing_name_without_the_type() {
    let srv = TestServer::start(DEMO);
    let cases = [
        ("static.example.com.", RecordType::MX),
        ("static.example.com.", RecordType::TXT),
        ("mail.example.com.", RecordType::AAAA),
        ("example.com.", RecordType::A),
    ];
    both_each(&srv, &cases, nodata);
}

#[test]
fn nodata_for_empty_non_terminal() {
    let srv = extra_server();
    // a.b.example.com exists, so b.example.com is an empty non-terminal: NODATA, not NXDOMAIN.
    let cases = [
        ("b.example.com.", RecordType::A),
        ("b.example.com.", RecordType::AAAA),
        ("b.example.com.", RecordType::MX),
    ];
    both_each(&srv, &cases, nodata);
    both(
        &srv,
        &query("a.b.example.com.", RecordType::A, None),
        |via, m| positive(via, m, &["a.b.example.com. 3600 IN A 192.0.2.99"], &[]),
    );
}

#[test]
fn refused_outside_our_zones_without_aa() {
    let srv = TestServer::start(DEMO);
    let cases = ["example.org.", "www.example.org.", "com.", "."].map(|n| (n, RecordType::A));
    both_each(&srv, &cases, |via, m| {
        header(via, m, ResponseCode::Refused, false);
        assert!(m.answers.is_empty(), "{via:?}");
        assert!(m.authorities.is_empty(), "{via:?}");
        assert!(m.additionals.is_empty(), "{via:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Delegation
// ---------------------------------------------------------------------------------------------

fn referral(via: Via, m: &Message) {
    header(via, m, ResponseCode::NoError, false);
    assert!(
        m.answers.is_empty(),
        "{via:?}: referral has an empty answer"
    );
    assert_eq!(
        rrs(&m.authorities),
        set(&["lab.example.com. 3600 IN NS ns1.lab.example.com."]),
        "{via:?}: NS of the child in authority"
    );
    assert_eq!(
        rrs(&m.additionals),
        set(&["ns1.lab.example.com. 3600 IN A 192.0.2.53"]),
        "{via:?}: glue"
    );
}

#[test]
fn delegation_gives_a_referral_with_glue() {
    let srv = TestServer::start(DEMO);
    let cases = [
        ("lab.example.com.", RecordType::A),
        ("lab.example.com.", RecordType::NS),
        ("lab.example.com.", RecordType::SOA),
        ("x.lab.example.com.", RecordType::A),
        ("x.lab.example.com.", RecordType::AAAA),
        ("deep.x.lab.example.com.", RecordType::MX),
        ("ns1.lab.example.com.", RecordType::A),
        ("x.lab.example.com.", RecordType::DS),
    ];
    both_each(&srv, &cases, referral);
}

#[test]
fn ds_at_the_cut_is_authoritative_nodata() {
    let srv = TestServer::start(DEMO);
    both_each(&srv, &[("lab.example.com.", RecordType::DS)], nodata);
}

// ---------------------------------------------------------------------------------------------
// CNAMEs and steered names
// ---------------------------------------------------------------------------------------------

fn lone_cname(via: Via, m: &Message, owner: &str, ttl: u32, targets: &[&str]) {
    header(via, m, ResponseCode::NoError, true);
    assert_eq!(
        m.answers.len(),
        1,
        "{via:?}: the CNAME alone, got {:?}",
        rrs(&m.answers)
    );
    let r = &m.answers[0];
    assert_eq!(r.name.to_ascii(), owner, "{via:?}");
    assert_eq!(r.ttl, ttl, "{via:?}");
    match &r.data {
        RData::CNAME(c) => assert!(
            targets.contains(&c.0.to_ascii().as_str()),
            "{via:?}: CNAME target {} not in {targets:?}",
            c.0
        ),
        other => panic!("{via:?}: expected a CNAME, got {other:?}"),
    }
    assert!(
        m.authorities.is_empty(),
        "{via:?}: {:?}",
        rrs(&m.authorities)
    );
    assert!(
        m.additionals.is_empty(),
        "{via:?}: {:?}",
        rrs(&m.additionals)
    );
}

/// The CNAME targets www.example.com is steered to.
const WWW_TARGETS: [&str; 2] = ["example.global.cdn-a.net.", "example.b-cdn.example.net."];

#[test]
fn steered_names_answer_a_cname_alone() {
    let srv = TestServer::start(DEMO);
    let names: [(&str, &[&str]); 2] = [
        ("www.example.com.", &WWW_TARGETS),
        ("assets.example.com.", &["example.global.cdn-a.net."]),
    ];
    for t in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
    ] {
        for (name, targets) in names {
            both_each(&srv, &[(name, t)], |via, m| {
                lone_cname(via, m, name, 30, targets);
            });
        }
    }
}

#[test]
fn static_cname_is_chased_in_zone() {
    let srv = TestServer::start(DEMO);
    both(
        &srv,
        &query("docs.example.com.", RecordType::A, None),
        |via, m| {
            header(via, m, ResponseCode::NoError, true);
            assert_eq!(m.answers.len(), 3, "{via:?}: {:?}", rrs(&m.answers));
            assert_eq!(
                m.answers[0].to_string(),
                "docs.example.com. 3600 IN CNAME static.example.com.",
                "{via:?}: the CNAME comes first"
            );
            assert_eq!(rrs(&m.answers[1..]), set(&STATIC_A), "{via:?}");
            assert!(
                m.authorities.is_empty() && m.additionals.is_empty(),
                "{via:?}"
            );
        },
    );
    both(
        &srv,
        &query("docs.example.com.", RecordType::AAAA, None),
        |via, m| {
            header(via, m, ResponseCode::NoError, true);
            assert_eq!(
                m.answers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                vec![
                    "docs.example.com. 3600 IN CNAME static.example.com.".to_string(),
                    "static.example.com. 3600 IN AAAA 2001:db8::10".to_string(),
                ],
                "{via:?}"
            );
        },
    );
}

/// RFC 2308 §2.2: a NODATA answer reached through a CNAME still carries the SOA in authority
/// (resolvers need it to cache the negative part).
#[test]
fn cname_chain_to_nodata_carries_soa() {
    let srv = TestServer::start(DEMO);
    both(
        &srv,
        &query("docs.example.com.", RecordType::MX, None),
        |via, m| {
            header(via, m, ResponseCode::NoError, true);
            assert_eq!(
                rrs(&m.answers),
                set(&["docs.example.com. 3600 IN CNAME static.example.com."]),
                "{via:?}"
            );
            assert_eq!(
                rrs(&m.authorities),
                set(&[NEG_SOA]),
                "{via:?}: SOA in authority"
            );
        },
    );
}

#[test]
fn steered_name_with_address_target() {
    let srv = extra_server();
    let cases: [(RecordType, &[&str]); 2] = [
        (
            RecordType::A,
            &[
                "app.example.com. 30 IN A 192.0.2.81",
                "app.example.com. 30 IN A 192.0.2.82",
            ],
        ),
        (
            RecordType::AAAA,
            &["app.example.com. 30 IN AAAA 2001:db8::81"],
        ),
    ];
    for (t, answers) in cases {
        both_each(&srv, &[("app.example.com.", t)], |via, m| {
            positive(via, m, answers, &[]);
        });
    }
    let cases = [
        ("app.example.com.", RecordType::MX),
        ("app.example.com.", RecordType::TXT),
    ];
    both_each(&srv, &cases, nodata);
}

// ---------------------------------------------------------------------------------------------
// Minimal ANY, 0x20
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_any_returns_one_rrset() {
    let srv = TestServer::start(DEMO);
    for name in ["example.com.", "static.example.com.", "docs.example.com."] {
        both(&srv, &query(name, RecordType::ANY, None), |via, m| {
            header(via, m, ResponseCode::NoError, true);
            assert!(!m.answers.is_empty(), "{via:?} {name}: one RRset, not none");
            let t0 = m.answers[0].record_type();
            assert!(
                m.answers
                    .iter()
                    .all(|r| r.record_type() == t0 && r.name == m.answers[0].name),
                "{via:?} {name}: exactly one RRset, got {:?}",
                rrs(&m.answers)
            );
            assert_eq!(m.answers[0].name.to_ascii(), name, "{via:?}");
        });
    }
}

#[test]
fn question_case_is_preserved() {
    let srv = TestServer::start(DEMO);
    for (name, qtype, rcode) in [
        ("WwW.eXaMpLe.CoM", 1u16, 0u8), // steered, fast path on UDP
        ("sTaTiC.ExAmPlE.cOm", 1, 0),   // static
        ("ExAmPlE.cOm", 6, 0),          // apex SOA
        ("NoSuCh.eXaMpLe.CoM", 1, 3),   // NXDOMAIN (general path on UDP)
        ("eXaMpLe.OrG", 1, 5),          // REFUSED
    ] {
        let q = raw_msg(0x2020, 0, &[question(name, qtype)], &[]);
        let qend = question_end(name, qtype);
        both_raw(&srv, &q, |via, r| {
            assert!(r.len() >= qend, "{via:?} {name}: response too short");
            assert_eq!(&r[0..2], &q[0..2], "{via:?}: ID");
            assert_eq!(be16(r, 4), 1, "{via:?}: QDCOUNT");
            assert_eq!(
                &r[12..qend],
                &q[12..qend],
                "{via:?} {name}: question bytes echoed exactly"
            );
            assert_eq!(r[3] & 0x0f, rcode, "{via:?} {name}: rcode");
            let m = decode(via, r);
            assert_eq!(
                m.queries[0].name().to_ascii(),
                format!("{name}."),
                "{via:?}"
            );
        });
    }
}

// ---------------------------------------------------------------------------------------------
// EDNS
// ---------------------------------------------------------------------------------------------

#[test]
fn opt_is_echoed_when_the_query_has_one() {
    let srv = TestServer::start(DEMO);
    for size in [512u16, 1232, 4096] {
        both(
            &srv,
            &query("static.example.com.", RecordType::A, Some(size)),
            |via, m| {
                header(via, m, ResponseCode::NoError, true);
                assert_eq!(m.answers.len(), 2, "{via:?}");
                let e = m
                    .edns
                    .as_ref()
                    .unwrap_or_else(|| panic!("{via:?}: OPT in response"));
                assert_eq!(e.version(), 0, "{via:?}: EDNS version 0");
                assert_eq!(e.max_payload(), 1232, "{via:?}: our payload size");
                assert_eq!(e.rcode_high(), 0, "{via:?}");
                assert!(!e.flags().dnssec_ok, "{via:?}: DO clear as in the query");
                assert!(
                    m.additionals.is_empty(),
                    "{via:?}: only the OPT in additional"
                );
            },
        );
    }
    // Raw check: ARCOUNT 1, and the OPT is exactly the last 11 bytes.
    let q = raw_msg(
        7,
        0,
        &[question("static.example.com", 1)],
        &[opt_rr(4096, 0, false, &[])],
    );
    both_raw(&srv, &q, |via, r| {
        assert_eq!(be16(r, 10), 1, "{via:?}: ARCOUNT");
        let opt = &r[r.len() - 11..];
        assert_eq!(
            opt,
            &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0],
            "{via:?}: OPT RR bytes"
        );
    });
}

#[test]
fn no_opt_when_the_query_has_none() {
    let srv = TestServer::start(DEMO);
    for (name, t) in [
        ("static.example.com.", RecordType::A),
        ("nosuch.example.com.", RecordType::A),
        ("example.org.", RecordType::A),
    ] {
        let q = query(name, t, None);
        both_raw(&srv, &q.to_vec().unwrap(), |via, r| {
            let m = decode(via, r);
            assert!(m.edns.is_none(), "{via:?} {name}: no OPT");
            assert_eq!(
                be16(r, 10) as usize,
                m.additionals.len(),
                "{via:?}: ARCOUNT"
            );
            assert_eq!(be16(r, 10), 0, "{via:?}: ARCOUNT");
        });
    }
}

#[test]
fn edns_version_1_gets_badvers() {
    let srv = TestServer::start(DEMO);
    let q = raw_msg(
        0xbad1,
        0,
        &[question("static.example.com", 1)],
        &[opt_rr(1232, 1, false, &[])],
    );
    let qend = question_end("static.example.com", 1);
    both_raw(&srv, &q, |via, r| {
        // The low rcode bits of BADVERS (16) are 0.
        assert_bare_error(r, 0xbad1, 0, &format!("{via:?} BADVERS"));
        assert_eq!(be16(r, 10), 1, "{via:?}: ARCOUNT (the OPT)");
        // With no other records the OPT follows the question.
        let opt = &r[qend..];
        assert_eq!(
            opt.len(),
            11,
            "{via:?}: one OPT without options after the question"
        );
        assert_eq!(&opt[0..3], &[0, 0, 41], "{via:?}: OPT owner/type");
        assert_eq!(opt[5], 1, "{via:?}: extended rcode 1 (16 >> 4)");
        assert_eq!(opt[6], 0, "{via:?}: response OPT version 0");
        let m = decode(via, r);
        assert_eq!(u16::from(m.metadata.response_code), 16, "{via:?}: BADVERS");
        assert_eq!(m.edns.as_ref().unwrap().version(), 0, "{via:?}");
    });
}

#[test]
fn unknown_edns_options_are_ignored() {
    let srv = TestServer::start(DEMO);
    let q = raw_msg(
        0x0e01,
        0,
        &[question("static.example.com", 1)],
        &[opt_rr(
            1232,
            0,
            false,
            &[(65001, b"\xde\xad\xbe\xef\x01"), (65002, b"")],
        )],
    );
    both_raw(&srv, &q, |via, r| {
        let m = decode(via, r);
        header(via, &m, ResponseCode::NoError, true);
        assert_eq!(rrs(&m.answers), set(&STATIC_A), "{via:?}");
        let e = m.edns.as_ref().expect("OPT in response");
        assert_eq!(e.version(), 0);
        assert!(
            e.options().as_ref().is_empty(),
            "{via:?}: unknown options are not echoed: {:?}",
            e.options()
        );
    });
}

/// static.example.com A with an OPT record that sets the DO bit.
fn do_bit_query() -> Message {
    let mut q = query("static.example.com.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    q
}

#[test]
fn do_bit_query_still_answers() {
    let srv = TestServer::start(DEMO);
    both(&srv, &do_bit_query(), |via, m| {
        header(via, m, ResponseCode::NoError, true);
        assert_eq!(m.answers.len(), 2, "{via:?}");
        assert!(m.edns.is_some(), "{via:?}");
    });
}

/// RFC 3225 §3: "The DO bit of the query MUST be copied in the response."
#[test]
fn do_bit_is_copied_to_the_response() {
    let srv = TestServer::start(DEMO);
    both(&srv, &do_bit_query(), |via, m| {
        let e: &Edns = m.edns.as_ref().expect("OPT in response");
        assert!(e.flags().dnssec_ok, "{via:?}: DO copied from the query");
    });
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

fn truncated(m: &Message, what: &str) {
    assert_eq!(m.metadata.message_type, MessageType::Response, "{what}");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
    assert!(m.metadata.truncation, "{what}: TC=1");
    assert!(m.metadata.authoritative, "{what}: AA");
    assert!(
        m.answers.is_empty(),
        "{what}: no partial RRset: {} answers",
        m.answers.len()
    );
    assert!(m.authorities.is_empty(), "{what}");
    assert!(m.additionals.is_empty(), "{what}");
}

/// Query over UDP; the decoded answer, after checking that its size in bytes is within `size`.
fn udp_sized(srv: &TestServer, q: &Message, size: RangeInclusive<usize>, what: &str) -> Message {
    let raw = raw_udp(srv.udp, &q.to_vec().unwrap(), WAIT).expect("UDP answer");
    assert!(
        size.contains(&raw.len()),
        "{what}: UDP response of {} bytes, want {size:?}",
        raw.len()
    );
    Message::from_vec(&raw).unwrap()
}

#[test]
fn udp_without_edns_over_512_is_truncated() {
    let srv = extra_server();
    for name in ["big.example.com.", "mid.example.com."] {
        let m = udp_sized(&srv, &query(name, RecordType::TXT, None), 0..=512, name);
        truncated(&m, name);
        assert!(m.edns.is_none(), "{name}: no OPT without one in the query");
    }
}

#[test]
fn udp_edns_4096_is_capped_at_our_1232() {
    let srv = extra_server();
    let q = query("big.example.com.", RecordType::TXT, Some(4096));
    let m = udp_sized(&srv, &q, 0..=1232, "big EDNS 4096");
    truncated(&m, "big EDNS 4096");
    let e = m.edns.as_ref().expect("OPT kept in the truncated answer");
    assert_eq!(e.max_payload(), 1232);
    // A smaller advertised size than the answer is honoured too.
    let q = query("mid.example.com.", RecordType::TXT, Some(600));
    let m = udp(srv.udp, &q);
    truncated(&m, "mid EDNS 600");
}

#[test]
fn tcp_returns_the_full_set() {
    let srv = extra_server();
    for edns in [None, Some(1232), Some(4096)] {
        let m = tcp(srv.tcp, &query("big.example.com.", RecordType::TXT, edns));
        header(Via::TCP, &m, ResponseCode::NoError, true);
        assert_eq!(
            m.answers.len(),
            BIG_N,
            "all {BIG_N} TXT records over TCP ({edns:?})"
        );
        assert_eq!(txt_strings(&m), expected_txt(BIG_N));
        assert!(
            m.answers
                .iter()
                .all(|r| r.ttl == 3600 && r.name.to_ascii() == "big.example.com.")
        );
    }
}

#[test]
fn answer_between_512_and_1232_fits_with_edns() {
    let srv = extra_server();
    for size in [1232u16, 4096] {
        let q = query("mid.example.com.", RecordType::TXT, Some(size));
        let m = udp_sized(&srv, &q, 513..=1232, &format!("mid EDNS {size}"));
        header(Via::UDP, &m, ResponseCode::NoError, true);
        assert_eq!(m.answers.len(), MID_N);
        assert_eq!(txt_strings(&m), expected_txt(MID_N));
    }
    // And over TCP the same set.
    let m = tcp(srv.tcp, &query("mid.example.com.", RecordType::TXT, None));
    header(Via::TCP, &m, ResponseCode::NoError, true);
    assert_eq!(txt_strings(&m), expected_txt(MID_N));
}

#[test]
fn dig_retries_over_tcp_after_truncation() {
    let srv = extra_server();
    let out = dig(srv.udp, &["big.example.com", "TXT", "+norecurse"]);
    assert!(
        out.contains(";; Truncated, retrying in TCP mode."),
        "dig did not see TC=1 over UDP:\n{out}"
    );
    assert!(out.contains("status: NOERROR"), "{out}");
    let answer_lines = out
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("big.example.com.") && l.contains("\tTXT\t"))
        .count();
    assert_eq!(
        answer_lines, BIG_N,
        "full answer after the TCP retry:\n{out}"
    );
    assert!(
        out.contains("(TCP)"),
        "dig's final answer came over TCP:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Opcodes and question counts
// ---------------------------------------------------------------------------------------------

#[test]
fn other_opcodes_get_notimp() {
    let srv = TestServer::start(DEMO);
    for (opcode, qtype) in [(2u16, 1u16), (4, 6), (5, 6), (1, 1), (3, 1), (15, 1)] {
        let q = raw_msg(
            0x4e00 | opcode,
            opcode << 11,
            &[question("example.com", qtype)],
            &[],
        );
        both_raw(&srv, &q, |via, r| {
            let what = format!("{via:?} opcode {opcode}: NOTIMP");
            assert_bare_error(r, 0x4e00 | opcode, 4, &what);
            assert_eq!((r[2] >> 3) & 0x0f, opcode as u8, "{what}: opcode echoed");
            assert_eq!(r[2] & 0x04, 0, "{what}: no AA");
        });
    }
}

#[test]
fn two_questions_or_none_get_formerr() {
    let srv = TestServer::start(DEMO);
    let two = raw_msg(
        0xf002,
        0,
        &[
            question("static.example.com", 1),
            question("example.com", 6),
        ],
        &[],
    );
    let none = raw_msg(0xf000, 0, &[], &[]);
    let none_edns = raw_msg(0xf001, 0, &[], &[opt_rr(1232, 0, false, &[])]);
    for (q, id) in [(two, 0xf002u16), (none, 0xf000), (none_edns, 0xf001)] {
        both_raw(&srv, &q, |via, r| {
            assert_bare_error(r, id, 1, &format!("{via:?} id {id:#x}: FORMERR"));
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path (UDP) and general path (TCP) agree
// ---------------------------------------------------------------------------------------------

#[test]
fn fast_path_and_general_path_agree() {
    let srv = extra_server();
    use RecordType::*;
    let cases: &[(&str, &[RecordType])] = &[
        (
            "example.com.",
            &[SOA, NS, MX, TXT, CAA, A, AAAA, ANY, CNAME, HTTPS],
        ),
        ("static.example.com.", &[A, AAAA, MX, TXT, ANY, CNAME, NS]),
        ("docs.example.com.", &[A, AAAA, CNAME, MX, TXT, ANY]),
        ("www.example.com.", &[A, AAAA, CNAME, MX, ANY, HTTPS]),
        ("assets.example.com.", &[A, AAAA, MX]),
        ("app.example.com.", &[A, AAAA, MX, ANY]),
        ("mail.example.com.", &[A, AAAA]),
        ("ns1.example.com.", &[A, AAAA]),
        ("lab.example.com.", &[A, NS, SOA]),
        ("x.lab.example.com.", &[A]),
        ("ns1.lab.example.com.", &[A]),
        ("b.example.com.", &[A, TXT]),
        ("a.b.example.com.", &[A]),
        ("mid.example.com.", &[TXT]),
        ("nosuch.example.com.", &[A]),
        ("example.org.", &[A]),
    ];
    // The same configuration served by hickory-server's own UDP loop: a third opinion.
    let hickory_udp = TestServer::start_with(&demo_plus(&extra_config()), |c| {
        c.server.udp_engine = steerd::config::UdpEngine::Hickory;
    });
    let mut n = 0;
    for (name, types) in cases {
        for t in *types {
            for (edns, rd) in [
                (None, false),
                (Some(1232), false),
                (None, true),
                (Some(4096), true),
            ] {
                if *name == "mid.example.com." && edns.is_none() {
                    continue; // truncated over UDP by design
                }
                let mut q = query(name, *t, edns);
                q.metadata.recursion_desired = rd;
                let u = udp(srv.udp, &q);
                let c = tcp(srv.tcp, &q);
                let h = udp(hickory_udp.udp, &q);
                let what = format!("{name} {t} edns={edns:?} rd={rd}");
                assert!(!u.metadata.truncation, "{what}: UDP not truncated");
                assert_eq!(u.metadata.recursion_desired, rd, "{what}: RD copied");
                same_answer(&format!("{what}: fast UDP vs TCP"), &u, &c);
                same_answer(&format!("{what}: fast UDP vs hickory UDP"), &u, &h);
                n += 1;
            }
        }
    }
    assert!(n > 150);
}

/// Two responses carry the same rcode, flags (except TC), question, sections and OPT.
fn same_answer(what: &str, a: &Message, b: &Message) {
    let (ma, mb) = (a.metadata, b.metadata);
    assert_eq!(ma.message_type, mb.message_type, "{what}: QR");
    assert_eq!(ma.op_code, mb.op_code, "{what}: opcode");
    assert_eq!(ma.response_code, mb.response_code, "{what}: rcode");
    assert_eq!(ma.authoritative, mb.authoritative, "{what}: AA");
    assert_eq!(ma.recursion_desired, mb.recursion_desired, "{what}: RD");
    assert_eq!(ma.recursion_available, mb.recursion_available, "{what}: RA");
    assert_eq!(ma.authentic_data, mb.authentic_data, "{what}: AD");
    assert_eq!(ma.checking_disabled, mb.checking_disabled, "{what}: CD");
    assert_eq!(a.queries, b.queries, "{what}: question");
    let ordered = |v: &[Record]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    assert_eq!(ordered(&a.answers), ordered(&b.answers), "{what}: answer");
    assert_eq!(
        ordered(&a.authorities),
        ordered(&b.authorities),
        "{what}: authority"
    );
    assert_eq!(
        rrs(&a.additionals),
        rrs(&b.additionals),
        "{what}: additional"
    );
    assert_eq!(a.edns, b.edns, "{what}: OPT");
}

// ---------------------------------------------------------------------------------------------
// IPv6 listener
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv6_listener_answers_over_udp_and_tcp() {
    let srv = TestServer::start_with(DEMO, |c| {
        c.server.dns_listen = vec!["[::1]:0".parse().unwrap()];
    });
    assert!(
        srv.udp.is_ipv6() && srv.tcp.is_ipv6(),
        "listening on ::1: {} {}",
        srv.udp,
        srv.tcp
    );
    let sock = UdpSocket::bind("[::1]:0").expect("bind [::1]:0: is IPv6 loopback configured?");
    let check = |via: Via, raw: &[u8], id: u16| {
        let m = decode(via, raw);
        assert_eq!(m.metadata.id, id, "{via:?}: ID");
        header(via, &m, ResponseCode::NoError, true);
        assert_eq!(rrs(&m.answers), set(&STATIC_A), "{via:?}");
    };
    for edns in [None, Some(1232)] {
        let q = query("static.example.com.", RecordType::A, edns);
        let u = raw_udp_from(&sock, srv.udp, &q.to_vec().unwrap(), WAIT).expect("UDP/::1 answer");
        check(Via::UDP, &u, q.metadata.id);
        let t = raw_tcp(srv.tcp, &q.to_vec().unwrap(), WAIT).expect("TCP/::1 answer");
        check(Via::TCP, &t, q.metadata.id);
    }
    // The steered name answers an IPv6 client too (the selector hashes the v6 prefix).
    let q = query("www.example.com.", RecordType::A, None);
    let u = raw_udp_from(&sock, srv.udp, &q.to_vec().unwrap(), WAIT).expect("UDP/::1 answer");
    let t = raw_tcp(srv.tcp, &q.to_vec().unwrap(), WAIT).expect("TCP/::1 answer");
    let (mu, mt) = (decode(Via::UDP, &u), decode(Via::TCP, &t));
    for (via, m) in [(Via::UDP, &mu), (Via::TCP, &mt)] {
        lone_cname(via, m, "www.example.com.", 30, &WWW_TARGETS);
    }
    assert_eq!(
        rrs(&mu.answers),
        rrs(&mt.answers),
        "same pick for ::1 over UDP and TCP"
    );
}

#[test]
fn zone_transfers_are_refused() {
    let srv = TestServer::start(DEMO);
    for t in [RecordType::AXFR, RecordType::IXFR] {
        let m = tcp(srv.tcp, &query("example.com.", t, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{t}");
        assert!(!m.metadata.authoritative, "{t}");
        assert!(m.answers.is_empty());
    }
}

#[test]
fn a_service_target_pointing_back_at_its_own_name_does_not_loop() {
    let cfg = demo_plus(
        "[[targets]]\nname = \"selfref\"\ncname = \"loop.example.com\"\n[[services]]\nname = \"loop.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"selfref\" }]\n",
    );
    let srv = TestServer::start(&cfg);
    for m in [
        udp(srv.udp, &query("loop.example.com.", RecordType::A, None)),
        tcp(srv.tcp, &query("loop.example.com.", RecordType::A, None)),
    ] {
        assert_eq!(m.answers.len(), 1, "{:?}", m.answers);
    }
}
