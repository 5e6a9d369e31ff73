//! Malformed input over real sockets: random packets, mutated queries, short headers, broken
//! names, compression loops, bad counts and broken OPT records. The server must answer FORMERR
//! (same ID, QR=1) or stay silent, never answer a response (reflection), and keep serving.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    DEMO, TestServer, assert_bare_error, be16, framed, hdr, opt_rr, query, question, raw_msg,
    raw_tcp, raw_udp, tcp, udp, wire,
};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(2);
/// How long we wait before concluding that a packet was dropped.
const SILENCE: Duration = Duration::from_millis(300);

const QR: u8 = 0x80;
const RD: u8 = 0x01;
const FORMERR: u8 = 1;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The name every hand-built query asks for.
const STATIC: &str = "static.example.com";

/// type A, class IN
const A_IN: [u8; 4] = [0, 1, 0, 1];

/// A question entry from raw (possibly broken) name bytes: the name, then type A, class IN.
fn with_a_in(name: &[u8]) -> Vec<u8> {
    [name, &A_IN].concat()
}

/// An OPT record whose RDLENGTH field says `rdlen`, whatever the length of `rdata`.
fn opt(size: u16, rdlen: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = vec![0, 0, 41];
    r.extend_from_slice(&size.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&rdlen.to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

/// A well-formed query for static.example.com A, as raw bytes, with this ID (RD=0, no EDNS).
fn good_query(id: u16) -> Vec<u8> {
    raw_msg(id, 0, &[question(STATIC, 1)], &[])
}

/// Check a raw answer to `good_query`: NOERROR, AA, the two static A records.
fn check_good_answer(raw: &[u8], id: u16, what: &str) {
    let m = Message::from_vec(raw).unwrap_or_else(|e| panic!("{what}: answer decodes: {e}"));
    assert_eq!(m.metadata.id, id, "{what}: ID");
    assert_eq!(m.metadata.message_type, MessageType::Response, "{what}: QR");
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{what}: rcode"
    );
    assert!(m.metadata.authoritative, "{what}: AA");
    let mut addrs: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            other => panic!("{what}: expected A, got {other:?}"),
        })
        .collect();
    addrs.sort();
    assert_eq!(addrs, ["192.0.2.10", "192.0.2.11"], "{what}: answer");
}

/// The server still answers a normal query correctly over UDP and over TCP.
fn assert_still_serving(srv: &TestServer) {
    for edns in [None, Some(1232)] {
        for (via, m) in [
            (
                "UDP",
                udp(srv.udp, &query("static.example.com.", RecordType::A, edns)),
            ),
            (
                "TCP",
                tcp(srv.tcp, &query("static.example.com.", RecordType::A, edns)),
            ),
        ] {
            let raw = m.to_vec().unwrap();
            check_good_answer(&raw, m.metadata.id, &format!("still serving over {via}"));
        }
        let m = udp(srv.udp, &query("www.example.com.", RecordType::A, edns));
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(m.answers[0].data, RData::CNAME(_)));
        let m = tcp(srv.tcp, &query("nosuch.example.com.", RecordType::A, edns));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
}

/// Expect a bare FORMERR answer to `q`: same ID, QR=1, opcode and RD copied, rcode 1, no records.
fn assert_formerr(r: &[u8], q: &[u8], what: &str) {
    assert_bare_error(r, be16(q, 0), FORMERR, what);
    assert_eq!(r[2] & 0x78, q[2] & 0x78, "{what}: opcode copied");
    assert_eq!(r[2] & RD, q[2] & RD, "{what}: RD copied");
    assert_eq!(r[2] & 0x04, 0, "{what}: no AA on FORMERR");
}

/// `assert_formerr` as a value: its failure message (with the response), or None if it passes.
fn formerr_failure(r: &[u8], q: &[u8], what: &str) -> Option<String> {
    let e = std::panic::catch_unwind(|| assert_formerr(r, q, what)).err()?;
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    Some(format!("{msg}: response {r:02x?}"))
}

/// Fail, listing the first failures and how many there are, unless there are none.
fn assert_no_failures(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} {what}; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Receive one datagram from `sock` within `timeout`.
fn recv(sock: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("UDP receive: {e}"),
    }
}

/// The malformed queries every server must answer with FORMERR. RD=1 so its copy is checked.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>)> {
    let opt_ok = opt_rr(1232, 0, false, &[]);
    let label_63 = [&[63][..], &[b'b'; 63]].concat();
    // (what, QDCOUNT, ARCOUNT, the packet after the header); IDs count up from 0x1001.
    let cases: [(&str, u16, u16, Vec<u8>); 12] = [
        // Label length 5 with only 2 bytes left in the packet.
        ("label length past the end", 1, 0, vec![5, b'a', b'b']),
        // Label with a 0x40 length prefix (64: not a valid length, reserved label type).
        (
            "label longer than 63",
            1,
            0,
            with_a_in(&[&[0x40][..], &[b'a'; 64], &[0]].concat()),
        ),
        // Name longer than 255 bytes: five 63-byte labels.
        (
            "name longer than 255",
            1,
            0,
            with_a_in(&[label_63.repeat(5), vec![0]].concat()),
        ),
        // Compression pointer at offset 12 pointing to itself.
        ("pointer to itself", 1, 0, with_a_in(&[0xc0, 12])),
        // Two pointers pointing at each other: 12 -> 14 -> 12.
        ("two-pointer loop", 1, 0, with_a_in(&[0xc0, 14, 0xc0, 12])),
        // A label, then a pointer back into the same name (loop through a label).
        (
            "label + pointer loop",
            1,
            0,
            with_a_in(&[1, b'x', 0xc0, 12]),
        ),
        // Pointer past the end of the packet.
        ("pointer past the end", 1, 0, with_a_in(&[0xc0, 0xff])),
        // QDCOUNT 3 with a single question present.
        (
            "QDCOUNT larger than the questions",
            3,
            0,
            question(STATIC, 1),
        ),
        // Name complete but QTYPE/QCLASS missing.
        ("question without type and class", 1, 0, wire(STATIC)),
        // OPT whose RDLENGTH runs past the end of the packet.
        (
            "OPT rdlen past the end",
            1,
            1,
            [question(STATIC, 1), opt(1232, 32, &[0xfd, 0xe9, 0, 0])].concat(),
        ),
        // Two OPT records (RFC 6891 §6.1.1: FORMERR).
        (
            "two OPT records",
            1,
            2,
            [question(STATIC, 1), opt_ok.clone(), opt_ok].concat(),
        ),
        // ARCOUNT claims a record that is not there.
        ("ARCOUNT larger than the records", 1, 1, question(STATIC, 1)),
    ];
    cases
        .into_iter()
        .zip(0x1001u16..)
        .map(|((what, qd, ar, body), id)| {
            let mut p = hdr(id, RD, 0, qd, 0, 0, ar);
            p.extend(body);
            (what, p)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Specific malformed packets
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_queries_get_formerr_over_udp() {
    let srv = TestServer::start(DEMO);
    let mut failures = Vec::new();
    let cases = malformed_cases();
    for (what, p) in &cases {
        match raw_udp(srv.udp, p, WAIT) {
            None => failures.push(format!("{what}: no UDP answer (want FORMERR)")),
            Some(r) => failures.extend(formerr_failure(&r, p, what)),
        }
    }
    assert_still_serving(&srv);
    assert_no_failures(
        &failures,
        &format!("of {} UDP malformed cases failing", cases.len()),
    );
}

#[test]
fn malformed_queries_get_formerr_over_tcp_and_the_connection_stays_sane() {
    let srv = TestServer::start(DEMO);
    let wanted = [
        "label length past the end",
        "label longer than 63",
        "pointer to itself",
        "two-pointer loop",
        "QDCOUNT larger than the questions",
        "OPT rdlen past the end",
        "two OPT records",
    ];
    let mut failures = Vec::new();
    let cases: Vec<_> = malformed_cases()
        .into_iter()
        .filter(|(w, _)| wanted.contains(w))
        .collect();
    assert_eq!(cases.len(), wanted.len(), "every wanted case exists");
    for (what, p) in &cases {
        let mut s = TcpStream::connect_timeout(&srv.tcp, WAIT).expect("TCP connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&framed(p)).unwrap();
        match read_framed(&mut s) {
            Framed::Message(r) => {
                let what = format!("{what} (TCP)");
                failures.extend(formerr_failure(&r, p, &what));
            }
            other => failures.push(format!("{what} (TCP): want FORMERR, got {other:?}")),
        }
        // The same connection either still answers, or was closed cleanly.
        let id = 0x7000 | (p[1] as u16);
        if s.write_all(&framed(&good_query(id))).is_ok() {
            match read_framed(&mut s) {
                Framed::Message(r) => check_good_answer(&r, id, &format!("{what}: same conn")),
                Framed::Closed => {}
                other => failures.push(format!("{what} (TCP): after FORMERR: {other:?}")),
            }
        }
        // New connections are served.
        let r = raw_tcp(srv.tcp, &good_query(0x7777), WAIT).expect("new TCP connection answers");
        check_good_answer(&r, 0x7777, &format!("{what}: new conn"));
    }
    assert_still_serving(&srv);
    assert_no_failures(
        &failures,
        &format!("of {} TCP malformed cases failing", cases.len()),
    );
}

#[derive(Debug)]
#[allow(dead_code)] // fields are shown in failure messages
enum Framed {
    Message(Vec<u8>),
    /// EOF or reset before a length prefix: the server closed the connection.
    Closed,
    /// Nothing within the read timeout.
    Silent,
    /// A length prefix then EOF: a broken frame.
    Partial(usize),
}

fn read_framed(s: &mut TcpStream) -> Framed {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Framed::Silent;
        }
        Err(_) => return Framed::Closed,
    }
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    match s.read_exact(&mut buf) {
        Ok(()) => Framed::Message(buf),
        Err(_) => Framed::Partial(buf.len()),
    }
}

#[test]
fn short_headers_are_dropped() {
    let srv = TestServer::start(DEMO);
    // UDP: every length below a header, including the empty datagram.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in 0..12 {
        let p: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
        sock.send_to(&p, srv.udp).unwrap();
    }
    // A 12-byte header with QR=0 after them would be answered; the short ones must not be.
    if let Some(r) = recv(&sock, SILENCE) {
        panic!("answer to a packet shorter than a header: {r:02x?}");
    }
    sock.send_to(&good_query(0x0c0c), srv.udp).unwrap();
    let r = recv(&sock, WAIT).expect("answer after the short packets");
    check_good_answer(&r, 0x0c0c, "UDP after short packets");

    // TCP: a frame shorter than a header gets no DNS answer (silence or close).
    for len in [0usize, 5, 11] {
        let mut s = TcpStream::connect_timeout(&srv.tcp, WAIT).unwrap();
        s.set_read_timeout(Some(SILENCE)).unwrap();
        s.write_all(&framed(&vec![0x42; len])).unwrap();
        match read_framed(&mut s) {
            Framed::Silent | Framed::Closed => {}
            other => panic!("TCP frame of {len} bytes: want no answer, got {other:?}"),
        }
    }
    assert_still_serving(&srv);
}

#[test]
fn responses_are_never_answered_over_udp() {
    let srv = TestServer::start(DEMO);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in responses() {
        sock.send_to(&p, srv.udp).unwrap();
    }
    if let Some(r) = recv(&sock, SILENCE) {
        panic!("a packet with QR=1 was answered: {r:02x?}");
    }
    assert_still_serving(&srv);
}

/// The UDP cases of `responses_are_never_answered_over_udp`: messages with QR=1.
fn responses() -> Vec<Vec<u8>> {
    let mut resp = good_query(0x5151);
    resp[2] |= QR;
    let mut resp_aa = good_query(0x5152);
    resp_aa[2] |= QR | 0x04;
    let mut resp_notify = good_query(0x5153);
    resp_notify[2] |= QR | (4 << 3);
    let mut resp_bad = hdr(0x5154, QR, 0, 1, 0, 0, 0);
    resp_bad.extend_from_slice(&[0xc0, 12]);
    let qr = u16::from(QR) << 8;
    let resp_edns = raw_msg(
        0x5155,
        qr,
        &[question(STATIC, 1)],
        &[opt_rr(1232, 0, false, &[])],
    );
    let resp_any = raw_msg(0x5156, qr, &[question("example.com", 255)], &[]);
    vec![resp, resp_aa, resp_notify, resp_bad, resp_edns, resp_any]
}

/// Over TCP a message with QR=1 gets no answer either, and the connection stays open: the
/// first answer on it is the one to the query sent after the responses (answers come in order).
#[test]
fn responses_are_never_answered_over_tcp_and_the_connection_stays_usable() {
    let srv = TestServer::start(DEMO);
    let mut s = TcpStream::connect_timeout(&srv.tcp, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for (i, p) in responses().iter().enumerate() {
        s.write_all(&framed(p)).unwrap();
        let id = 0x5200 + i as u16;
        s.write_all(&framed(&good_query(id))).unwrap();
        match read_framed(&mut s) {
            Framed::Message(r) if be16(&r, 0) == id => {
                check_good_answer(&r, id, "TCP query after a response")
            }
            other => panic!(
                "response {:02x?}: want no answer to it and the next query answered, got {other:?}",
                &p[..4]
            ),
        }
    }
    assert_still_serving(&srv);
}

// ---------------------------------------------------------------------------------------------
// Random and mutated packets
// ---------------------------------------------------------------------------------------------

/// What the server may answer to a packet, judged from how hickory parses it.
fn allowed_rcodes(p: &[u8]) -> (&'static str, Vec<u16>) {
    let opcode = (p[2] >> 3) & 0x0f;
    match Message::from_vec(p) {
        Err(_) if opcode != 0 => ("unparsable, opcode != 0", vec![1, 4]),
        Err(_) => ("unparsable", vec![1]),
        Ok(_) if opcode != 0 => ("parsable, opcode != 0", vec![4]),
        Ok(m) if m.queries.len() != 1 => ("parsable, QDCOUNT != 1", vec![1]),
        Ok(m) if m.edns.as_ref().is_some_and(|e| e.version() > 0) => {
            ("parsable, EDNS version > 0", vec![16])
        }
        Ok(_) => ("parsable query", vec![0, 2, 3, 5]),
    }
}

/// Judge the server's reaction `r` to the packet `p`; an error message if it is wrong.
fn judge(p: &[u8], r: Option<&[u8]>) -> Result<&'static str, String> {
    let Some(r) = r else {
        if p.len() >= 12
            && p[2] & QR == 0
            && (p[2] >> 3) & 0x0f == 0
            && Message::from_vec(p).is_ok_and(|m| m.queries.len() == 1)
        {
            return Err("no answer to a query hickory can parse".into());
        }
        return Ok("dropped");
    };
    if p.len() < 12 {
        return Err(format!("answered a {}-byte packet: {r:02x?}", p.len()));
    }
    if p[2] & QR != 0 {
        return Err(format!("answered a packet with QR=1: {r:02x?}"));
    }
    if r.len() < 12 {
        return Err(format!("response shorter than a header: {r:02x?}"));
    }
    if r[0..2] != p[0..2] {
        return Err(format!(
            "response ID {:02x?} != query ID {:02x?}",
            &r[0..2],
            &p[0..2]
        ));
    }
    if r[2] & QR == 0 {
        return Err(format!("response without QR: {:02x?}", &r[..12]));
    }
    if r[2] & 0x78 != p[2] & 0x78 {
        return Err(format!(
            "opcode not copied: query {:02x} response {:02x}",
            p[2], r[2]
        ));
    }
    let (kind, allowed) = allowed_rcodes(p);
    let rcode = match Message::from_vec(r) {
        Ok(m) => u16::from(m.metadata.response_code),
        Err(_) if allowed == [1] || allowed == [1, 4] => (r[3] & 0x0f) as u16,
        Err(e) => return Err(format!("{kind}: response does not decode: {e}: {r:02x?}")),
    };
    if !allowed.contains(&rcode) {
        return Err(format!(
            "{kind}: rcode {rcode} not in {allowed:?}; header {:02x?}",
            &r[..12]
        ));
    }
    Ok(kind)
}

/// A valid query interleaved with the noise, and what it must get: name, type, rcode, AA and
/// the number of answer records.
type Probe = (&'static str, RecordType, ResponseCode, bool, usize);

const PROBES: [Probe; 6] = [
    (
        "static.example.com",
        RecordType::A,
        ResponseCode::NoError,
        true,
        2,
    ),
    (
        "www.example.com",
        RecordType::A,
        ResponseCode::NoError,
        true,
        1,
    ),
    (
        "example.com",
        RecordType::MX,
        ResponseCode::NoError,
        true,
        1,
    ),
    (
        "nosuch.example.com",
        RecordType::A,
        ResponseCode::NXDomain,
        true,
        0,
    ),
    (
        "lab.example.com",
        RecordType::A,
        ResponseCode::NoError,
        false,
        0,
    ),
    (
        "example.org",
        RecordType::A,
        ResponseCode::Refused,
        false,
        0,
    ),
];

/// The `i`th probe as raw bytes, with its ID.
fn probe(i: usize) -> (Vec<u8>, u16, Probe) {
    let probe = PROBES[i % PROBES.len()];
    let (name, t, ..) = probe;
    let id = 0xa000 + i as u16;
    let q = raw_msg(id, 0, &[question(name, u16::from(t))], &[]);
    (q, id, probe)
}

fn check_probe(raw: &[u8], id: u16, (name, t, rcode, aa, an): Probe) {
    let m = Message::from_vec(raw).unwrap_or_else(|e| panic!("probe {name}: decodes: {e}"));
    assert_eq!(m.metadata.id, id, "probe {name}: ID");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, rcode, "probe {name} {t}: rcode");
    assert_eq!(m.metadata.authoritative, aa, "probe {name} {t}: AA");
    assert_eq!(m.answers.len(), an, "probe {name} {t}: answers");
    if name == "lab.example.com" {
        assert_eq!(m.authorities.len(), 1, "referral NS");
    }
}

/// Send `p` then a sentinel query from the same socket; everything that arrives before the
/// sentinel's answer is the server's reaction to `p`. The fast UDP engine handles one source
/// address on one worker in order, so a late answer to `p` would show up as a foreign packet in
/// a later round and fail the test there.
fn exchange(sock: &UdpSocket, server: SocketAddr, p: &[u8], sentinel_id: u16) -> Option<Vec<u8>> {
    sock.send_to(p, server).unwrap();
    sock.send_to(&good_query(sentinel_id), server).unwrap();
    let mut reaction: Option<Vec<u8>> = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = recv(sock, left.max(Duration::from_millis(1))).unwrap_or_else(|| {
            panic!("server stopped answering: no answer to the sentinel after {p:02x?}")
        });
        if r.len() >= 2 && be16(&r, 0) == sentinel_id && r.len() > 12 && be16(&r, 4) == 1 {
            check_good_answer(&r, sentinel_id, "sentinel");
            return reaction;
        }
        assert!(
            reaction.is_none(),
            "two responses to one packet {p:02x?}: {reaction:02x?} and {r:02x?}"
        );
        reaction = Some(r);
    }
}

fn seed() -> u64 {
    std::env::var("STEERD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// Sends packets to the server one at a time from one socket (each followed by a sentinel
/// query, see `exchange`), judges every reaction and tallies them.
struct Fuzz<'a> {
    srv: &'a TestServer,
    sock: UdpSocket,
    /// What one packet is called in failure messages ("packet", "mutant").
    noun: &'static str,
    seed: u64,
    sent: usize,
    stats: std::collections::BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl<'a> Fuzz<'a> {
    fn new(srv: &'a TestServer, noun: &'static str, seed: u64) -> Self {
        Fuzz {
            srv,
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            noun,
            seed,
            sent: 0,
            stats: Default::default(),
            failures: Vec::new(),
        }
    }

    /// Send packet number `i` and judge the server's reaction to it.
    fn send(&mut self, i: usize, p: &[u8]) {
        // A sentinel ID that differs from the packet's own.
        let low = (i % 256) as u16;
        let sentinel = if p.len() >= 2 && be16(p, 0) == 0xee00 + low {
            0xef00 + low
        } else {
            0xee00 + low
        };
        let r = exchange(&self.sock, self.srv.udp, p, sentinel);
        self.sent += 1;
        match judge(p, r.as_deref()) {
            Ok(kind) => *self.stats.entry(kind).or_default() += 1,
            Err(e) => self.failures.push(format!(
                "{} {i} (seed {}) {p:02x?}: {e}",
                self.noun, self.seed
            )),
        }
    }

    /// Print the tally, check that the server still serves, and fail on any wrong reaction.
    fn finish(self, what: &str) {
        eprintln!("{what} (seed {}): {:?}", self.seed, self.stats);
        assert_still_serving(self.srv);
        assert_no_failures(
            &self.failures,
            &format!("of {} {what} got a wrong reaction", self.sent),
        );
    }
}

#[test]
fn random_packets_get_formerr_or_silence_and_valid_queries_still_work() {
    let srv = TestServer::start(DEMO);
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fuzz = Fuzz::new(&srv, "packet", seed);
    for i in 0..2000usize {
        if i % 100 == 0 {
            let (q, id, probe) = probe(i / 100);
            let r = raw_udp(srv.udp, &q, WAIT).expect("probe answered");
            check_probe(&r, id, probe);
        }
        let len = rng.gen_range(0..600);
        let mut p = vec![0u8; len];
        rng.fill(&mut p[..]);
        fuzz.send(i, &p);
    }
    fuzz.finish("random packets");
}

/// Valid queries (with and without OPT) with a few bytes flipped, cut or appended: deep parser
/// paths that random bytes rarely reach.
#[test]
fn mutated_queries_get_sane_answers() {
    let srv = TestServer::start(DEMO);
    let seed = seed() ^ 0xabcd;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fuzz = Fuzz::new(&srv, "mutant", seed);
    let bases: Vec<Vec<u8>> = [
        ("static.example.com.", RecordType::A, None),
        ("www.example.com.", RecordType::AAAA, Some(1232)),
        ("example.com.", RecordType::MX, Some(4096)),
        ("docs.example.com.", RecordType::A, None),
        ("x.lab.example.com.", RecordType::A, Some(512)),
    ]
    .iter()
    .map(|(n, t, e)| query(n, *t, *e).to_vec().unwrap())
    .collect();
    for i in 0..1500usize {
        let mut p = bases[i % bases.len()].clone();
        for _ in 0..rng.gen_range(1..4) {
            if p.len() < 4 {
                p.push(rng.r#gen());
            }
            match rng.gen_range(0..10) {
                0..=5 => {
                    // Replace one byte after the ID (keep the ID for the sentinel logic).
                    let at = rng.gen_range(2..p.len());
                    p[at] = rng.r#gen();
                }
                6 => {
                    let at = rng.gen_range(2..p.len());
                    p[at] ^= 1 << rng.gen_range(0..8);
                }
                7 => {
                    let keep = rng.gen_range(2..p.len());
                    p.truncate(keep);
                }
                8 => {
                    let n = rng.gen_range(1..8);
                    p.extend((0..n).map(|_| rng.r#gen::<u8>()));
                }
                _ => {
                    // Interesting values in the counts and the length/pointer bytes.
                    let at = rng.gen_range(2..p.len());
                    p[at] = [0x00, 0x01, 0x02, 0x3f, 0x40, 0x80, 0xc0, 0xff][rng.gen_range(0..8)];
                }
            }
        }
        fuzz.send(i, &p);
    }
    fuzz.finish("mutated queries");
}

/// The whole battery against one server, then a normal query on both transports.
#[test]
fn server_keeps_serving_after_everything() {
    let srv = TestServer::start(DEMO);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = StdRng::seed_from_u64(seed() ^ 0x77);
    for _ in 0..3 {
        for (_, p) in malformed_cases() {
            sock.send_to(&p, srv.udp).unwrap();
            let _ = raw_tcp(srv.tcp, &p, Duration::from_millis(500));
        }
        for len in 0..12 {
            sock.send_to(&vec![0xff; len], srv.udp).unwrap();
        }
        for _ in 0..200 {
            let mut p = vec![0u8; rng.gen_range(0..600)];
            rng.fill(&mut p[..]);
            sock.send_to(&p, srv.udp).unwrap();
        }
        // Half-open TCP: a length prefix promising more than is sent, then close.
        let mut s = TcpStream::connect_timeout(&srv.tcp, WAIT).unwrap();
        s.write_all(&[0x01, 0x00, 0xde, 0xad]).unwrap();
        drop(s);
        // A TCP connection sending garbage frames back to back.
        let mut s = TcpStream::connect_timeout(&srv.tcp, WAIT).unwrap();
        let mut garbage = Vec::new();
        for _ in 0..20 {
            let mut p = vec![0u8; rng.gen_range(0..100)];
            rng.fill(&mut p[..]);
            garbage.extend(framed(&p));
        }
        let _ = s.write_all(&garbage);
        drop(s);
        assert_still_serving(&srv);
    }
}

#[test]
fn oversized_udp_datagram_gets_formerr_and_batching_neighbours_are_answered() {
    let srv = TestServer::start(DEMO);
    // A valid query followed by 6,000 bytes of junk: larger than a worker's receive buffer.
    let mut big = good_query(0x5151);
    big.extend(std::iter::repeat_n(0xab, 6000));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&big, srv.udp).unwrap();
    let r = recv(&sock, Duration::from_secs(2)).expect("an answer to the oversized datagram");
    assert_bare_error(&r, 0x5151, FORMERR, "oversized datagram");
    // Many queries sent back to back (so a worker receives them in one batch) all get answers.
    for id in 0..200u16 {
        sock.send_to(&good_query(id), srv.udp).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 200 {
        let r = recv(&sock, Duration::from_secs(2)).expect("every batched query answered");
        check_good_answer(&r, be16(&r, 0), "batched");
        seen.insert(be16(&r, 0));
    }
    assert_still_serving(&srv);
}

// ---------------------------------------------------------------------------------------------
// Flags of other opcodes, compression pointers in the question, responses over TCP
// ---------------------------------------------------------------------------------------------

/// The three ways a query reaches the answer logic: the fast UDP engine (falling back to the
/// general path), hickory's UDP engine, TCP.
fn each_path(check: impl Fn(&str, &dyn Fn(&[u8]) -> Option<Vec<u8>>)) {
    let fast = TestServer::start(DEMO);
    let hickory = TestServer::start_with(DEMO, |c| {
        c.server.udp_engine = steerd::config::UdpEngine::Hickory
    });
    check("UDP (fast engine)", &|p| raw_udp(fast.udp, p, WAIT));
    check("UDP (hickory engine)", &|p| raw_udp(hickory.udp, p, WAIT));
    check("TCP", &|p| raw_tcp(fast.tcp, p, WAIT));
    assert_still_serving(&fast);
}

#[test]
fn other_opcodes_get_notimp_without_rd_and_cd() {
    each_path(|via, ask| {
        let mut failures = Vec::new();
        for opcode in 1u8..16 {
            let id = 0x6e00 | u16::from(opcode);
            // RD=1 and CD=1 in the query.
            let q = raw_msg(
                id,
                u16::from_be_bytes([(opcode << 3) | RD, 0x10]),
                &[question(STATIC, 1)],
                &[],
            );
            let Some(r) = ask(&q) else {
                failures.push(format!("opcode {opcode}: no answer"));
                continue;
            };
            let what = format!("{via} opcode {opcode}");
            let rcode = r[3] & 0x0f;
            if be16(&r, 0) != id || r[2] & QR == 0 || !matches!(rcode, 1 | 4) {
                failures.push(format!("{what}: want NOTIMP (or FORMERR), got {r:02x?}"));
            }
            if r[2] & RD != 0 || r[3] & 0x10 != 0 {
                failures.push(format!("{what}: RD or CD echoed: {:02x?}", &r[..4]));
            }
        }
        assert_no_failures(&failures, &format!("{via}: opcode cases failing"));
    });
}

#[test]
fn a_compression_pointer_in_the_question_gets_formerr_without_a_question() {
    // A pointer can only point back into the header (the question starts at byte 12).
    let cases: [(&str, Vec<u8>); 3] = [
        ("pointer into the header", with_a_in(&[0xc0, 4])),
        (
            "label + pointer into the header",
            with_a_in(&[3, b'w', b'w', b'w', 0xc0, 5]),
        ),
        ("labels + pointer to the root byte", {
            let mut n = wire("static.example");
            n.pop();
            n.extend_from_slice(&[0xc0, 5]);
            with_a_in(&n)
        }),
    ];
    each_path(|via, ask| {
        let mut failures = Vec::new();
        for (i, (what, body)) in cases.iter().enumerate() {
            let id = 0x7c00 + i as u16;
            let mut q = hdr(id, RD, 0, 1, 0, 0, 0);
            q.extend_from_slice(body);
            match ask(&q) {
                None => failures.push(format!("{via} {what}: no answer (want FORMERR)")),
                Some(r) => {
                    failures.extend(formerr_failure(&r, &q, &format!("{via} {what}")));
                    if r.len() >= 12 && (be16(&r, 4) != 0 || r.len() != 12) {
                        failures.push(format!("{via} {what}: question echoed: {r:02x?}"));
                    }
                }
            }
        }
        assert_no_failures(&failures, &format!("{via}: pointer cases failing"));
    });
}
