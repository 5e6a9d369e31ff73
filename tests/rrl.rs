//! Response rate limiting and DNS cookies over real UDP sockets: one source floods a large TXT
//! answer (the reflection case), and the limiter must drop most answers, send every `slip`-th
//! one truncated (TC=1), bring the amplification below 2×, let a client with a valid server
//! cookie through, leave other prefixes alone, and count it all in `/metrics`.
//!
//! The server's clock is a `ManualClock`: the limiter's seconds only move when the test says,
//! so every count below is exact, however loaded the machine. A flood is sent in batches, each
//! followed by a sentinel query with a valid cookie on the same socket (it passes the limiter):
//! answers come back in order, so once the sentinel's is read, every answer to the batch that
//! was going to be sent has been — no waiting for silence.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::http::Http;
use common::{DEMO, TestServer, be16, opt_rr, question, raw_msg};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use steerd::clock::ManualClock;
use steerd::dns::rrl::RrlSettings;

const BIG: &str = "big.example.com";
const TXT: u16 = 16;
const A: u16 = 1;
const COOKIE: u16 = 10;
const RATE: u32 = 5;
const WINDOW: u32 = 5;
const SLIP: u8 = 2;
const WAIT: Duration = Duration::from_secs(5);

/// The demo with five `big.example.com TXT` records of 210 bytes (an answer of ~1,160 bytes, ~1,190 with our cookie).
fn config_text() -> String {
    let strings: Vec<String> = (0..5)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(210)))
        .collect();
    let record = format!(
        "[[zones.records]]\nname = \"big\"\ntype = \"TXT\"\ndata = [{}]\n\n",
        strings.join(", ")
    );
    let anchor = "# A delegated child zone";
    assert!(DEMO.contains(anchor), "the demo config changed");
    DEMO.replacen(anchor, &format!("{record}{anchor}"), 1)
}

struct Setup {
    srv: TestServer,
    clock: Arc<ManualClock>,
    http: Http,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, config_text()).unwrap();
    let clock = ManualClock::from_wall();
    let srv = TestServer::start_file_clock(&path, false, clock.clone(), |cfg| {
        cfg.alerts = Default::default();
        cfg.server.rrl = Some(RrlSettings {
            rates: [RATE; 5],
            window: WINDOW,
            slip: SLIP,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![],
            log_only: false,
            table_size: 1024,
        });
    });
    let http = Http::new(srv.admin.expect("admin API on"));
    Setup {
        srv,
        clock,
        http,
        _dir: dir,
    }
}

/// A query with EDNS (1232 bytes) and, if given, a COOKIE option.
fn query(id: u16, name: &str, qtype: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let opts: Vec<(u16, &[u8])> = cookie.map(|c| (COOKIE, c)).into_iter().collect();
    raw_msg(
        id,
        0,
        &[question(name, qtype)],
        &[opt_rr(1232, 0, false, &opts)],
    )
}

fn decode(r: &[u8]) -> Message {
    Message::from_vec(r).unwrap_or_else(|e| panic!("response decodes ({e}): {r:02x?}"))
}

/// The COOKIE option of a response.
fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.options().get(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        other => panic!("COOKIE option decoded as {other:?}"),
    }
}

/// A client socket bound to `ip` (any 127/8 address is this machine's loopback).
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    /// Client cookie + server cookie for the sentinel (valid for this client's address).
    sentinel: Vec<u8>,
}

/// What came back for a batch of queries.
#[derive(Default, Debug)]
struct Tally {
    bytes_in: usize,
    bytes_out: usize,
    full: usize,
    truncated: usize,
    badcookie: usize,
    other: Vec<String>,
    /// Server cookies of the BADCOOKIE answers.
    cookies: Vec<Vec<u8>>,
}

impl Client {
    fn new(ip: &str, server: SocketAddr) -> Client {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut c = Client {
            sock,
            server,
            sentinel: Vec::new(),
        };
        // Learn a server cookie with a query nobody floods.
        let r = c
            .ask(&query(0xfffe, "static.example.com", A, Some(b"sentinel")))
            .expect("the first answer to a new client");
        let cookie = cookie_of(&decode(&r)).expect("the answer carries our cookie");
        assert_eq!(cookie.len(), 24, "client cookie + 16-byte server cookie");
        assert_eq!(&cookie[..8], b"sentinel");
        c.sentinel = cookie;
        c
    }

    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 65535];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    fn ask(&self, q: &[u8]) -> Option<Vec<u8>> {
        self.sock.send_to(q, self.server).unwrap();
        self.recv()
    }

    /// Send `queries` in batches of 20, each followed by the sentinel; the answers to
    /// `queries`, tallied.
    fn flood(&self, queries: &[Vec<u8>]) -> Tally {
        let mut t = Tally::default();
        for batch in queries.chunks(20) {
            for q in batch {
                t.bytes_in += q.len();
                self.sock.send_to(q, self.server).unwrap();
            }
            let sentinel = query(0xffff, "static.example.com", A, Some(&self.sentinel));
            self.sock.send_to(&sentinel, self.server).unwrap();
            loop {
                let r = self
                    .recv()
                    .expect("the sentinel (a valid cookie) is answered within 5 s");
                if be16(&r, 0) == 0xffff {
                    let m = decode(&r);
                    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                    assert_eq!(m.answers.len(), 2, "the sentinel gets its full answer");
                    break;
                }
                t.bytes_out += r.len();
                let m = decode(&r);
                match m.metadata.response_code {
                    ResponseCode::NoError if m.metadata.truncation => {
                        assert!(m.answers.is_empty(), "a slip carries no records");
                        t.truncated += 1;
                    }
                    ResponseCode::NoError if m.answers.len() == 5 => t.full += 1,
                    ResponseCode::BADCOOKIE => {
                        assert!(!m.metadata.truncation && m.answers.is_empty());
                        t.cookies
                            .push(cookie_of(&m).expect("BADCOOKIE carries our cookie"));
                        t.badcookie += 1;
                    }
                    rcode => t.other.push(format!(
                        "id {} {rcode:?} TC={} answers={}",
                        m.metadata.id,
                        m.metadata.truncation,
                        m.answers.len()
                    )),
                }
            }
        }
        t
    }
}

fn big_queries(n: usize, cookie: Option<&[u8]>) -> Vec<Vec<u8>> {
    (0..n).map(|i| query(i as u16, BIG, TXT, cookie)).collect()
}

/// The value of the sample `name{labels}` (or `name` without labels) in a metrics text.
fn sample(text: &str, series: &str) -> u64 {
    let key = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no sample {series} in /metrics"))
}

#[test]
fn a_flood_from_one_source_is_dropped_slipped_and_no_longer_amplified() {
    let s = start();
    let flooder = Client::new("127.0.0.1", s.srv.udp);
    const N: usize = 400;
    let t = flooder.flood(&big_queries(N, None));
    assert!(t.other.is_empty(), "unexpected answers: {:?}", t.other);
    let amplification = t.bytes_out as f64 / t.bytes_in as f64;
    eprintln!(
        "flood of {N}: {} full, {} TC=1, {} B in, {} B out, amplification {amplification:.2}",
        t.full, t.truncated, t.bytes_in, t.bytes_out
    );
    // The first RATE answers of the second are sent; after that every SLIP-th limited one
    // is sent truncated and the rest dropped.
    let limited = N - RATE as usize;
    assert_eq!(t.full, RATE as usize, "full answers");
    assert_eq!(t.truncated, limited / SLIP as usize, "TC=1 slips");
    assert_eq!(t.badcookie, 0, "no cookie was sent, no BADCOOKIE");
    assert!(
        amplification < 2.0,
        "amplification {amplification:.2} (bytes out / bytes in) must be below 2"
    );

    // One full answer alone would amplify ~20×: the limit is what brings it down.
    let one = query(1, BIG, TXT, None);
    let other = Client::new("127.0.1.1", s.srv.udp);
    let r = other.ask(&one).expect("another /24 is answered");
    let m = decode(&r);
    assert_eq!(m.answers.len(), 5, "another /24 gets the full answer");
    assert!(
        r.len() > 15 * one.len(),
        "the TXT answer ({} B) is large",
        r.len()
    );
    // The same /24 (another address in it) shares the limited account.
    let neighbour = Client::new("127.0.0.2", s.srv.udp);
    let t2 = neighbour.flood(&big_queries(2, None));
    assert_eq!(t2.full, 0, "the same /24 is limited too: {t2:?}");

    let m = s.http.get("/metrics").expect(200).text;
    let dropped = sample(&m, "steerd_rrl_dropped_total");
    let slipped = sample(&m, "steerd_rrl_slipped_total");
    assert_eq!(
        (dropped + slipped) as usize,
        limited + 2,
        "every limited answer counted"
    );
    assert_eq!(slipped as usize, t.truncated + t2.truncated);
    assert!(sample(&m, "steerd_rrl_passed_by_cookie_total") >= (N / 20) as u64);
    assert_eq!(sample(&m, "steerd_rrl_log_only_total"), 0);

    // After the window (the balance went down to -WINDOW × RATE), the account has its full
    // rate again.
    s.clock.advance(Duration::from_secs(u64::from(WINDOW) + 1));
    let t = flooder.flood(&big_queries(RATE as usize + 2, None));
    assert_eq!(t.full, RATE as usize, "after the window: {t:?}");
}

#[test]
fn a_client_with_a_valid_cookie_keeps_getting_full_answers_under_the_flood() {
    let s = start();
    let flooder = Client::new("127.0.0.1", s.srv.udp);
    let t = flooder.flood(&big_queries(200, None));
    assert_eq!(t.full, RATE as usize);

    // A legitimate client behind the same (spoofed) prefix, with a client cookie only: it is
    // limited like the flood, and its slips are BADCOOKIE answers with our cookie (RFC 7873
    // §5.2.3), never full answers.
    let client = Client::new("127.0.0.3", s.srv.udp);
    let t = client.flood(&big_queries(4, Some(b"legit-cl")));
    assert_eq!(
        (t.full, t.truncated, t.badcookie),
        (0, 0, 2),
        "client cookie only: {t:?}"
    );
    let cookie = t.cookies[0].clone();
    assert_eq!(&cookie[..8], b"legit-cl");
    assert_eq!(cookie.len(), 24);

    // With the server cookie it proved its address: every answer in full.
    let t = client.flood(&big_queries(60, Some(&cookie)));
    assert_eq!((t.full, t.truncated, t.badcookie), (60, 0, 0), "{t:?}");
    // The flood goes on and is still limited.
    let t = flooder.flood(&big_queries(20, None));
    assert_eq!(t.full, 0);

    // A forged server cookie (one bit flipped) proves nothing.
    let mut forged = cookie.clone();
    forged[23] ^= 1;
    let t = client.flood(&big_queries(4, Some(&forged)));
    assert_eq!(t.full, 0, "a forged cookie is limited: {t:?}");
    assert!(t.badcookie >= 1);

    // Our cookie is bound to the address it was given to.
    let elsewhere = Client::new("127.0.0.4", s.srv.udp);
    let t = elsewhere.flood(&big_queries(4, Some(&cookie)));
    assert_eq!(t.full, 0, "a cookie of another address is limited: {t:?}");

    let m = s.http.get("/metrics").expect(200).text;
    assert!(sample(&m, "steerd_rrl_passed_by_cookie_total") >= 60);
    assert!(sample(&m, "steerd_dns_badcookie_total") >= 4);
    assert!(sample(&m, "steerd_dns_cookies_total{result=\"valid\"}") >= 60);
    assert!(sample(&m, "steerd_dns_cookies_total{result=\"invalid\"}") >= 8);
    assert!(sample(&m, "steerd_dns_cookies_total{result=\"client_only\"}") >= 4);
}

/// TCP proves the source address: it is never rate limited.
#[test]
fn tcp_is_not_rate_limited() {
    let s = start();
    let flooder = Client::new("127.0.0.1", s.srv.udp);
    let t = flooder.flood(&big_queries(100, None));
    assert_eq!(t.full, RATE as usize);
    for i in 0..20 {
        let r = common::raw_tcp(s.srv.tcp, &query(i, BIG, TXT, None), WAIT)
            .expect("TCP answers under the UDP flood");
        assert_eq!(decode(&r).answers.len(), 5);
    }
}
