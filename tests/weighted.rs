//! Weighted steering over real sockets: the 60/40 split across 10,000 distinct client subnets, and
//! stickiness per client.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{DEMO, TestServer, query, raw_udp_from};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

fn cname_from(sock: &UdpSocket, server: SocketAddr) -> String {
    let q = query("www.example.com.", RecordType::A, None);
    let resp = raw_udp_from(sock, server, &q.to_vec().unwrap(), Duration::from_secs(2))
        .expect("answer within 2 s");
    let m = Message::from_vec(&resp).unwrap();
    assert_eq!(m.answers.len(), 1, "one CNAME for a steered name");
    match &m.answers[0].data {
        RData::CNAME(c) => c.0.to_ascii(),
        other => panic!("expected a CNAME, got {other:?}"),
    }
}

/// Client i's source address: a distinct /24 inside 127.0.0.0/8 (all loopback on Linux).
fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, (1 + i / 250) as u8, (i % 250) as u8, 1)
}

#[test]
fn weighted_split_over_10000_clients_is_60_40_within_3_percent_and_sticky() {
    let srv = TestServer::start(DEMO);
    let n = 10_000u32;
    let mut a = 0;
    let mut picks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let sock = UdpSocket::bind((client(i), 0)).expect("bind a loopback source address");
        let c = cname_from(&sock, srv.udp);
        if c == "example.global.cdn-a.net." {
            a += 1;
        } else {
            assert_eq!(c, "example.b-cdn.example.net.");
        }
        picks.push(c);
    }
    let share = a as f64 / n as f64;
    assert!(
        (share - 0.60).abs() <= 0.03,
        "cdn-a got {:.2} % of clients, want 60 ± 3 %",
        share * 100.0
    );
    // Stickiness: every 10th client asks again, from another port and another host of its /24.
    for i in (0..n).step_by(10) {
        let mut ip = client(i).octets();
        ip[3] = 77;
        let sock = UdpSocket::bind((Ipv4Addr::from(ip), 0)).unwrap();
        assert_eq!(
            cname_from(&sock, srv.udp),
            picks[i as usize],
            "client {i} moved"
        );
    }
}

#[test]
fn failover_answers_the_first_target() {
    let srv = TestServer::start(DEMO);
    for i in 0..50 {
        let sock = UdpSocket::bind((client(i), 0)).unwrap();
        let q = query("assets.example.com.", RecordType::A, None);
        let resp =
            raw_udp_from(&sock, srv.udp, &q.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
        let m = Message::from_vec(&resp).unwrap();
        match &m.answers[0].data {
            RData::CNAME(c) => assert_eq!(c.0.to_ascii(), "example.global.cdn-a.net."),
            other => panic!("expected a CNAME, got {other:?}"),
        }
    }
}
