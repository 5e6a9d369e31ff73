//! Geography over real sockets: where a query is located (ECS subnet or resolver address, IPv4
//! and IPv6), strict ECS parsing (FORMERR), network overrides, the `geo` map and `proximity`
//! policies, ECS scopes equal to the merged-block boundaries of crafted databases, and hot
//! reload of the database and the nets file (under load, and with broken files).
//!
//! Every database is built by the test itself (`common/mmdb.rs`), so the expected answers and
//! scopes follow from the networks below. Steered answers are CNAMEs to `<target>.cdn.example.net`;
//! helpers reduce them to the target name.

mod common;
#[path = "common/mmdb.rs"]
mod mmdb;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::config::{NO_GEODB, geo_net, record, zone_ns1};
use common::{TestServer, assert_bare_error, be16, opt_rr, question, raw_msg, raw_udp_from};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;
use mmdb::{MmdbBuilder, Record, Value, replace_atomically};
use steerd::config::{UdpEngine, ValidConfig};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(2);
/// How long a rejected file is watched for: more than two reload intervals (1 s).
const HOLD: Duration = Duration::from_millis(2500);
/// How long a changed file may take to be picked up.
const PICKUP: Duration = Duration::from_secs(10);

const TYPE_A: u16 = 1;
const ECS: u16 = 8;

/// Targets: three with coordinates (Frankfurt, Ashburn, Tokyo) and three without.
/// Services: `geo` (a full region map with service nets), `eu` (EU vs default), `wgeo` (a
/// weighted region), `near` (proximity), `split` (weighted), `fo` (failover), `fonets`
/// (failover with nested service nets), and the static name `static`.
fn config() -> String {
    format!(
        "\n[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n{NO_GEODB}countries = \"geodb/countries.csv\"\nreload_interval = 1\n{}{}{STEERED}",
        zone_ns1("example.com", "192.0.2.1"),
        record("static", "A", "192.0.2.10")
    )
}

const STEERED: &str = r#"
[[targets]]
name = "fra"
cname = "fra.cdn.example.net"
latitude = 50.11
longitude = 8.68

[[targets]]
name = "iad"
cname = "iad.cdn.example.net"
latitude = 39.04
longitude = -77.49

[[targets]]
name = "nrt"
cname = "nrt.cdn.example.net"
latitude = 35.68
longitude = 139.69

[[targets]]
name = "de"
cname = "de.cdn.example.net"

[[targets]]
name = "def"
cname = "def.cdn.example.net"

[[targets]]
name = "special"
cname = "special.cdn.example.net"

[[services]]
name = "geo.example.com"
policy = "geo"
nets = [
  { cidr = "11.1.2.128/25", targets = ["special"] },
  { cidr = "2001:db8:ff::/48", targets = ["special"] },
]

[services.geo]
"EU/DE" = ["de", "fra"]
"EU" = ["fra"]
"NA" = ["iad"]
"AS" = ["nrt"]
default = ["def"]

[[services]]
name = "eu.example.com"
policy = "geo"

[services.geo]
"EU" = ["fra"]
default = ["def"]

[[services]]
name = "wgeo.example.com"
policy = "geo"

[services.geo]
"SA" = [{ target = "iad", weight = 50 }, { target = "nrt", weight = 50 }]
default = ["def"]

[[services]]
name = "near.example.com"
policy = "proximity"
targets = [{ target = "nrt" }, { target = "fra" }, { target = "iad" }]

[[services]]
name = "split.example.com"
policy = "weighted"
targets = [{ target = "fra", weight = 50 }, { target = "iad", weight = 50 }]

[[services]]
name = "fo.example.com"
policy = "failover"
targets = [{ target = "fra" }, { target = "iad" }]

[[services]]
name = "fonets.example.com"
policy = "failover"
targets = [{ target = "fra" }, { target = "iad" }]
nets = [
  { cidr = "11.1.2.0/24", targets = ["iad"] },
  { cidr = "11.1.0.0/16", targets = ["nrt"] },
]
"#;

/// `[[geo.nets]]` overrides: a /24 (listed first) inside a /16, both inside the database's
/// 11.0.0.0/8 (US); and two for resolver addresses.
fn geo_nets() -> String {
    [
        geo_net("11.1.2.0/24", "continent = \"AS\""),
        geo_net("11.1.0.0/16", "country = \"DE\""),
        geo_net("127.30.0.0/16", "country = \"FR\""),
        geo_net("127.10.5.0/24", "country = \"US\""),
    ]
    .concat()
}

/// The database most tests use (IPv6, both schemas).
fn main_db() -> MmdbBuilder {
    MmdbBuilder::v6()
        // Resolver addresses (test clients bind these loopback sources).
        .net("127.10.0.0/16", Record::flat("JP"))
        .net(
            "127.20.0.0/16",
            Record::country("DE")
                .with_continent("EU")
                .with_location(52.52, 13.40),
        )
        .net("::1/128", Record::country("DE").with_continent("EU"))
        // IPv6 networks.
        .net(
            "2001:db8:100::/48",
            Record::country("DE").with_continent("EU"),
        )
        .net("2001:db8:200::/40", Record::flat("JP"))
        // Region map: country, flat country, continent only, other continents, unknown code.
        .net("10.40.0.0/24", Record::country("DE").with_continent("EU"))
        .net("10.40.2.0/24", Record::flat("FR"))
        .net("10.40.4.0/24", Record::new().with_continent("EU"))
        .net("10.40.6.0/24", Record::flat("US"))
        .net("10.40.8.0/24", Record::flat("BR"))
        .net("10.40.10.0/24", Record::flat("ZZ"))
        // Merged blocks: two adjacent /24s of one country (separate records), two adjacent
        // /24s of two EU countries, an unaligned run (/24 + /23), a /25 and a /16 in SA.
        .net("10.20.0.0/24", Record::flat("FR"))
        .net("10.20.1.0/24", Record::flat("FR"))
        .net("10.21.0.0/24", Record::flat("DE"))
        .net("10.21.1.0/24", Record::flat("FR"))
        .net("10.22.1.0/24", Record::flat("FR"))
        .net("10.22.2.0/23", Record::flat("FR"))
        .net("10.23.0.0/25", Record::flat("BR"))
        .net("10.24.0.0/16", Record::flat("BR"))
        // Overridden by geo_nets().
        .net("11.0.0.0/8", Record::flat("US"))
}

/// Start a server on `config` with `db` written to `<tempdir>/geo.mmdb` as its database.
fn start(
    config: &str,
    db: &MmdbBuilder,
    adjust: impl FnOnce(&mut ValidConfig),
) -> (TestServer, TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    db.write(&path);
    let p = path.clone();
    let srv = TestServer::start_with(config, move |c| {
        c.geo.database = Some(p);
        adjust(c);
    });
    (srv, dir, path)
}

fn start_main() -> TestServer {
    let (srv, dir, _) = start(&config(), &main_db(), |_| {});
    // The database is read completely at start; the directory may go.
    drop(dir);
    srv
}

// ---------------------------------------------------------------------------------------------
// Queries and responses
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// UDP: the precomputed fast path (or the general path, for what it cannot answer).
    Udp,
    /// TCP: always the hickory `RequestHandler` path.
    Tcp,
}

const VIAS: [Via; 2] = [Via::Udp, Via::Tcp];

/// EDNS options: (code, data).
type Options = Vec<(u16, Vec<u8>)>;

/// The OPT record of a query.
#[derive(Debug, Clone)]
enum Edns {
    /// No OPT record.
    None,
    /// An OPT record without options.
    Plain,
    /// An OPT record with these options.
    Options(Options),
}

impl Edns {
    /// One ECS option with this data.
    fn ecs(data: Vec<u8>) -> Self {
        Edns::Options(vec![(ECS, data)])
    }
}

/// ECS option data for a subnet: family, source prefix, scope 0, ceil(prefix/8) octets.
fn ecs(cidr: &str) -> Vec<u8> {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    assert_eq!(net, net.trunc(), "{cidr}: host bits set");
    let (family, octets) = match net.addr() {
        IpAddr::V4(a) => (1u16, a.octets().to_vec()),
        IpAddr::V6(a) => (2u16, a.octets().to_vec()),
    };
    let n = net.prefix_len().div_ceil(8) as usize;
    let mut d = family.to_be_bytes().to_vec();
    d.extend_from_slice(&[net.prefix_len(), 0]);
    d.extend_from_slice(&octets[..n]);
    d
}

/// ECS data with a source prefix of 0 (RFC 7871 §7.1.2: "use the resolver's address").
fn ecs_zero(family: u16) -> Vec<u8> {
    let mut d = family.to_be_bytes().to_vec();
    d.extend_from_slice(&[0, 0]);
    d
}

/// What the response's ECS option must be: the query's, with our scope.
fn echoed(query: &[u8], scope: u8) -> Vec<u8> {
    let mut d = query.to_vec();
    d[3] = scope;
    d
}

fn packet(id: u16, name: &str, qtype: u16, edns: &Edns) -> Vec<u8> {
    let additional = match edns {
        Edns::None => vec![],
        Edns::Plain => vec![opt_rr(1232, 0, false, &[])],
        Edns::Options(opts) => {
            let opts: Vec<(u16, &[u8])> = opts.iter().map(|(c, d)| (*c, d.as_slice())).collect();
            vec![opt_rr(1232, 0, false, &opts)]
        }
    };
    raw_msg(id, 0, &[question(name, qtype)], &additional)
}

/// Send `bytes` from source address `from` (any port); the raw response if one arrives.
fn exchange(srv: &TestServer, via: Via, from: IpAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    match via {
        Via::Udp => {
            let sock = UdpSocket::bind((from, 0))
                .unwrap_or_else(|e| panic!("bind UDP source {from}: {e}"));
            raw_udp_from(&sock, srv.udp, bytes, WAIT)
        }
        Via::Tcp => tcp_from(from, srv.tcp, bytes),
    }
}

/// One query over a new TCP connection from source address `from`.
fn tcp_from(from: IpAddr, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .unwrap();
    s.bind(&SockAddr::from(SocketAddr::new(from, 0)))
        .unwrap_or_else(|e| panic!("bind TCP source {from}: {e}"));
    s.connect_timeout(&SockAddr::from(server), WAIT).ok()?;
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    common::tcp_exchange(&mut s, bytes)
}

/// A decoded response with its raw bytes (the EDNS options are read from the bytes, so two
/// ECS options or a malformed one would show).
struct Resp {
    raw: Vec<u8>,
    msg: Message,
    what: String,
}

impl Resp {
    /// The steered target: the only answer must be a CNAME to `<target>.cdn.example.net.`.
    fn target(&self) -> String {
        let what = &self.what;
        match &self.msg.answers[..] {
            [r] => match &r.data {
                RData::CNAME(c) => {
                    let t = c.0.to_ascii();
                    let short = t
                        .strip_suffix(".cdn.example.net.")
                        .unwrap_or_else(|| panic!("{what}: unexpected CNAME target {t}"));
                    short.to_string()
                }
                other => panic!("{what}: expected a CNAME, got {other:?}"),
            },
            other => panic!("{what}: expected one answer, got {other:?}"),
        }
    }

    /// The options of the OPT record, or None without one.
    fn opt(&self) -> Option<Options> {
        opt_options(&self.raw, &self.what)
    }

    /// The data of the response's ECS option (None if there is none; two is a failure).
    fn ecs(&self) -> Option<Vec<u8>> {
        let opts = self.opt()?;
        let ecs: Vec<&Vec<u8>> = opts
            .iter()
            .filter(|(c, _)| *c == ECS)
            .map(|(_, d)| d)
            .collect();
        assert!(ecs.len() <= 1, "{}: {} ECS options", self.what, ecs.len());
        ecs.first().map(|d| d.to_vec())
    }
}

/// Skip a possibly compressed name at `p`.
fn skip_name(m: &[u8], mut p: usize) -> usize {
    loop {
        let l = m[p];
        if l == 0 {
            return p + 1;
        }
        if l & 0xc0 == 0xc0 {
            return p + 2;
        }
        p += 1 + l as usize;
    }
}

/// The options (code, data) of the OPT record of a raw message; None without OPT.
fn opt_options(m: &[u8], what: &str) -> Option<Options> {
    let (qd, an, ns, ar) = (be16(m, 4), be16(m, 6), be16(m, 8), be16(m, 10));
    let mut p = 12;
    for _ in 0..qd {
        p = skip_name(m, p) + 4;
    }
    let mut opt = None;
    for i in 0..(an + ns + ar) {
        p = skip_name(m, p);
        let rtype = be16(m, p);
        let rdlen = be16(m, p + 8) as usize;
        let rdata = &m[p + 10..p + 10 + rdlen];
        if rtype == 41 {
            assert!(i >= an + ns, "{what}: OPT outside the additional section");
            assert!(opt.is_none(), "{what}: two OPT records");
            let mut opts = Vec::new();
            let mut q = 0;
            while q < rdata.len() {
                let code = be16(rdata, q);
                let len = be16(rdata, q + 2) as usize;
                assert!(q + 4 + len <= rdata.len(), "{what}: option overruns OPT");
                opts.push((code, rdata[q + 4..q + 4 + len].to_vec()));
                q += 4 + len;
            }
            opt = Some(opts);
        }
        p += 10 + rdlen;
    }
    assert_eq!(p, m.len(), "{what}: bytes after the last record");
    opt
}

/// Ask `name` (type A) from `from` over `via`; the response must be a NOERROR response to it.
fn ask(srv: &TestServer, via: Via, from: IpAddr, name: &str, edns: &Edns) -> Resp {
    let what = format!("{name} from {from} over {via:?} with {edns:?}");
    let id: u16 = rand::random();
    let raw = exchange(srv, via, from, &packet(id, name, TYPE_A, edns))
        .unwrap_or_else(|| panic!("{what}: no answer within 2 s"));
    let msg = Message::from_vec(&raw).unwrap_or_else(|e| panic!("{what}: decodes: {e}"));
    assert_eq!(msg.metadata.id, id, "{what}: ID");
    assert_eq!(
        msg.metadata.message_type,
        MessageType::Response,
        "{what}: QR"
    );
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NoError,
        "{what}: rcode"
    );
    Resp { raw, msg, what }
}

fn lo(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The default client source.
fn localhost() -> IpAddr {
    lo("127.0.0.1")
}

/// Ask `name` with the ECS subnet `cidr` over UDP and TCP: both must answer `want` and echo
/// the ECS option (family, source prefix, address) with scope `scope`.
fn expect_ecs(srv: &TestServer, from: IpAddr, name: &str, cidr: &str, want: &str, scope: u8) {
    let data = ecs(cidr);
    for via in VIAS {
        let r = ask(srv, via, from, name, &Edns::ecs(data.clone()));
        assert_eq!(r.target(), want, "{}: target", r.what);
        assert_eq!(
            r.ecs(),
            Some(echoed(&data, scope)),
            "{}: the ECS option echoed with scope {scope}",
            r.what
        );
    }
}

/// Ask `name` from resolver address `from` without ECS (no OPT, and an OPT without options),
/// over UDP and TCP: every answer is `want`, and no response carries an ECS option.
fn expect_resolver(srv: &TestServer, from: IpAddr, name: &str, want: &str) {
    for via in VIAS {
        for edns in [Edns::None, Edns::Plain] {
            let r = ask(srv, via, from, name, &edns);
            assert_eq!(r.target(), want, "{}: target", r.what);
            match edns {
                Edns::None => assert_eq!(r.opt(), None, "{}: no OPT without one", r.what),
                _ => assert_eq!(
                    r.opt(),
                    Some(vec![]),
                    "{}: OPT without an ECS option",
                    r.what
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test database builder itself
// ---------------------------------------------------------------------------------------------

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Iso {
    iso_code: Option<String>,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Loc {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Rec {
    country_code: Option<String>,
    country: Option<Iso>,
    location: Option<Loc>,
}

/// The helper writes what `maxminddb` (the server's reader) reads back, in both schemas and
/// both database versions; nested networks inserted narrowest first still nest.
#[test]
fn mmdb_builder_writes_what_maxminddb_reads() {
    let db = MmdbBuilder::v6()
        .net("11.1.0.0/16", Record::flat("DE"))
        .net("11.0.0.0/8", Record::flat("US"))
        .net("2001:db8:100::/48", Record::country("FR"))
        .net(
            "10.50.0.0/24",
            Record::country("US").with_location(48.85, 2.35),
        )
        .build();
    let r = maxminddb::Reader::from_source(db).expect("opens");
    assert_eq!(r.metadata().ip_version, 6);
    let get = |ip: &str| -> Option<Rec> { r.lookup(lo(ip)).unwrap().decode().unwrap() };
    let cc = |ip: &str| get(ip).and_then(|x| x.country_code);
    assert_eq!(cc("11.1.2.3").as_deref(), Some("DE"));
    assert_eq!(cc("11.2.0.1").as_deref(), Some("US"));
    assert_eq!(cc("12.0.0.1"), None);
    let fr = get("2001:db8:100:1::1").unwrap();
    assert_eq!(fr.country.unwrap().iso_code.as_deref(), Some("FR"));
    let paris = get("10.50.0.9").unwrap().location.unwrap();
    assert_eq!((paris.latitude, paris.longitude), (Some(48.85), Some(2.35)));
    // IPv4 networks live in the IPv4-compatible subtree, as MaxMind's own databases do.
    let v4 = r.lookup(lo("11.1.2.3")).unwrap();
    assert_eq!(
        v4.network().unwrap(),
        "11.1.0.0/16".parse::<ipnetwork::IpNetwork>().unwrap()
    );

    let db = MmdbBuilder::v4()
        .net("10.50.3.0/24", Record::flat("BR"))
        .build();
    let r = maxminddb::Reader::from_source(db).expect("opens");
    assert_eq!(r.metadata().ip_version, 4);
    let rec: Option<Rec> = r.lookup(lo("10.50.3.1")).unwrap().decode().unwrap();
    assert_eq!(rec.unwrap().country_code.as_deref(), Some("BR"));
}

// ---------------------------------------------------------------------------------------------
// 1. ECS vs resolver address
// ---------------------------------------------------------------------------------------------

/// With ECS and a source prefix > 0 the ECS subnet locates the query; without ECS, or with a
/// source prefix of 0, the resolver's (socket source) address does. The response has an ECS
/// option exactly when the query had one: family, source prefix and address echoed, scope 0
/// for a source prefix of 0.
#[test]
fn ecs_subnet_locates_the_query_else_the_resolver_address() {
    let srv = start_main();
    let jp = lo("127.10.0.1"); // JP (flat) → AS → nrt
    let de = lo("127.20.0.1"); // DE (MaxMind) → EU/DE → de
    let nowhere = localhost(); // not in the database → default

    // Resolver address only.
    expect_resolver(&srv, jp, "geo.example.com.", "nrt");
    expect_resolver(&srv, de, "geo.example.com.", "de");
    expect_resolver(&srv, nowhere, "geo.example.com.", "def");

    // ECS wins over the resolver address, whatever the resolver.
    for from in [jp, de, nowhere] {
        expect_ecs(&srv, from, "geo.example.com.", "10.20.0.0/24", "fra", 23);
        expect_ecs(&srv, from, "geo.example.com.", "10.40.6.0/24", "iad", 24);
        expect_ecs(&srv, from, "geo.example.com.", "10.41.0.0/24", "def", 16);
    }
    // Source prefixes other than /24: the subnet address locates; the echo keeps the prefix.
    expect_ecs(&srv, jp, "geo.example.com.", "10.20.0.0/20", "fra", 23);
    expect_ecs(&srv, jp, "geo.example.com.", "10.40.2.77/32", "fra", 24);
    expect_ecs(&srv, jp, "geo.example.com.", "10.40.2.64/27", "fra", 24);

    // Source prefix 0 (either family): the resolver address locates, scope 0.
    for (from, want) in [(jp, "nrt"), (de, "de"), (nowhere, "def")] {
        for family in [1, 2] {
            let data = ecs_zero(family);
            for via in VIAS {
                let r = ask(
                    &srv,
                    via,
                    from,
                    "geo.example.com.",
                    &Edns::ecs(data.clone()),
                );
                assert_eq!(r.target(), want, "{}: located by the resolver", r.what);
                assert_eq!(r.ecs(), Some(echoed(&data, 0)), "{}: echo, scope 0", r.what);
            }
        }
    }

    // The same through another service and an ECS option among other options.
    let data = ecs("10.21.0.0/24");
    for via in VIAS {
        let edns = Edns::Options(vec![
            (10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            (ECS, data.clone()),
        ]);
        let r = ask(&srv, via, jp, "eu.example.com.", &edns);
        assert_eq!(r.target(), "fra", "{}", r.what);
        assert_eq!(r.ecs(), Some(echoed(&data, 23)), "{}", r.what);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. IPv6
// ---------------------------------------------------------------------------------------------

/// IPv6 ECS subnets are located through the database's IPv6 networks, and IPv6 echoes carry
/// the family-2 address bytes.
#[test]
fn ipv6_ecs_subnets_are_located() {
    let srv = start_main();
    let jp = lo("127.10.0.1");
    let g = "geo.example.com.";
    expect_ecs(&srv, jp, g, "2001:db8:100::/48", "de", 48);
    expect_ecs(&srv, jp, g, "2001:db8:100:ab00::/56", "de", 48);
    expect_ecs(&srv, jp, g, "2001:db8:100:ab00::/64", "de", 48);
    expect_ecs(&srv, jp, g, "2001:db8:234::/48", "nrt", 40);
    expect_ecs(&srv, jp, g, "2001:db8:200::/40", "nrt", 40);
    expect_ecs(&srv, jp, g, "2001:db8:300::/48", "def", 40);
    // Service nets in IPv6.
    expect_ecs(&srv, jp, g, "2001:db8:ff::/48", "special", 48);
    expect_ecs(&srv, jp, g, "2001:db8:ff:1::/64", "special", 48);
    // A source prefix that is not a multiple of 8 (41 bits: 6 octets).
    expect_ecs(&srv, jp, g, "2001:db8:200::/41", "nrt", 40);
}

fn ipv6_server(config: &str, db: &MmdbBuilder) -> TestServer {
    let (srv, dir, _) = start(config, db, |c| {
        c.server.dns_listen = vec!["[::1]:0".parse().unwrap()];
    });
    drop(dir);
    assert!(srv.udp.is_ipv6() && srv.tcp.is_ipv6(), "listening on ::1");
    srv
}

/// An IPv6 resolver (::1) is located through the database's ::1 network.
#[test]
fn ipv6_resolver_is_located_through_the_database() {
    let srv = ipv6_server(&config(), &main_db());
    let v6 = lo("::1");
    // ::1/128 is DE (MaxMind schema) → "EU/DE" → de.
    expect_resolver(&srv, v6, "geo.example.com.", "de");
    for family in [1, 2] {
        let data = ecs_zero(family);
        for via in VIAS {
            let r = ask(&srv, via, v6, "geo.example.com.", &Edns::ecs(data.clone()));
            assert_eq!(r.target(), "de", "{}: located by the resolver", r.what);
            assert_eq!(r.ecs(), Some(echoed(&data, 0)), "{}", r.what);
        }
    }
}

/// An IPv6 resolver (::1) answers from its ECS option when it sends one, and is located by a
/// `[[geo.nets]]` override for ::1 otherwise.
#[test]
fn ipv6_resolver_with_ecs_and_through_a_nets_override() {
    let config = format!(
        "{}\n[[geo.nets]]\ncidr = \"::1/128\"\ncountry = \"US\"\n",
        config()
    );
    let srv = ipv6_server(&config, &main_db());
    let v6 = lo("::1");
    expect_resolver(&srv, v6, "geo.example.com.", "iad");
    expect_ecs(&srv, v6, "geo.example.com.", "10.20.0.0/24", "fra", 23);
    expect_ecs(&srv, v6, "geo.example.com.", "2001:db8:234::/48", "nrt", 40);
}

// ---------------------------------------------------------------------------------------------
// 3. Malformed ECS → FORMERR
// ---------------------------------------------------------------------------------------------

/// Every malformed ECS option (RFC 7871 §6, §7.1) gets FORMERR with the query's ID and QR=1,
/// over UDP and TCP, for a steered name and for a static one; valid queries still answer.
#[test]
fn malformed_ecs_options_get_formerr() {
    let srv = start_main();
    let mut v6_129 = vec![0, 2, 129, 0];
    v6_129.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    v6_129.extend_from_slice(&[0; 13]);
    let cases: Vec<(&str, Options)> = vec![
        (
            "IPv4 source prefix 33",
            vec![(ECS, vec![0, 1, 33, 0, 10, 20, 0, 0, 0])],
        ),
        ("IPv6 source prefix 129", vec![(ECS, v6_129)]),
        ("family 3", vec![(ECS, vec![0, 3, 8, 0, 10])]),
        ("family 0", vec![(ECS, vec![0, 0, 0, 0])]),
        (
            "IPv4 address bit beyond /20",
            vec![(ECS, vec![0, 1, 20, 0, 10, 1, 0x71])],
        ),
        (
            "IPv4 address bit beyond /23",
            vec![(ECS, vec![0, 1, 23, 0, 10, 20, 1])],
        ),
        (
            "IPv6 address bit beyond /33",
            vec![(ECS, vec![0, 2, 33, 0, 0x20, 0x01, 0x0d, 0xb8, 0x40])],
        ),
        (
            "IPv4 too few address octets",
            vec![(ECS, vec![0, 1, 24, 0, 10, 20])],
        ),
        (
            "IPv4 too many address octets",
            vec![(ECS, vec![0, 1, 16, 0, 10, 20, 0])],
        ),
        (
            "IPv4 /24 with 4 octets",
            vec![(ECS, vec![0, 1, 24, 0, 10, 20, 0, 0])],
        ),
        (
            "source 0 with an address octet",
            vec![(ECS, vec![0, 1, 0, 0, 0])],
        ),
        (
            "IPv6 too few address octets",
            vec![(ECS, vec![0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8])],
        ),
        (
            "non-zero scope in the query",
            vec![(ECS, vec![0, 1, 24, 8, 10, 20, 0])],
        ),
        (
            "two ECS options",
            vec![(ECS, ecs("10.20.0.0/24")), (ECS, ecs("10.40.6.0/24"))],
        ),
        ("ECS option of 2 bytes", vec![(ECS, vec![0, 1])]),
    ];
    for name in ["geo.example.com.", "static.example.com."] {
        for (case, opts) in &cases {
            for via in VIAS {
                let id: u16 = rand::random();
                let bytes = packet(id, name, TYPE_A, &Edns::Options(opts.clone()));
                let what = format!("{case} ({name} over {via:?})");
                let r = exchange(&srv, via, localhost(), &bytes)
                    .unwrap_or_else(|| panic!("{what}: no answer within 2 s"));
                assert_bare_error(&r, id, 1, &what);
            }
        }
    }
    // The server is fine afterwards.
    expect_ecs(
        &srv,
        localhost(),
        "geo.example.com.",
        "10.20.0.0/24",
        "fra",
        23,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Network overrides
// ---------------------------------------------------------------------------------------------

/// `[[geo.nets]]` win over the database, longest prefix first (whatever their order in the
/// config), for ECS subnets and resolver addresses; service `nets` win over the geo map and
/// over the overrides. Scopes follow the painted blocks.
#[test]
fn network_overrides_win_longest_prefix_first() {
    let config = format!("{}\n{}", config(), geo_nets());
    let (srv, _dir, _) = start(&config, &main_db(), |_| {});
    let from = localhost();
    let g = "geo.example.com.";
    // The database's 11.0.0.0/8 (US → iad) around the /16 override.
    expect_ecs(&srv, from, g, "11.0.5.0/24", "iad", 16);
    expect_ecs(&srv, from, g, "11.2.0.0/24", "iad", 15);
    expect_ecs(&srv, from, g, "11.200.0.0/24", "iad", 9);
    // The /16 override (DE → de) around the /24 override.
    expect_ecs(&srv, from, g, "11.1.3.0/24", "de", 24);
    expect_ecs(&srv, from, g, "11.1.0.0/24", "de", 23);
    expect_ecs(&srv, from, g, "11.1.200.0/24", "de", 17);
    // The /24 override (AS → nrt), minus the service net 11.1.2.128/25 (→ special).
    expect_ecs(&srv, from, g, "11.1.2.0/24", "nrt", 25);
    expect_ecs(&srv, from, g, "11.1.2.0/25", "nrt", 25);
    expect_ecs(&srv, from, g, "11.1.2.128/25", "special", 25);
    expect_ecs(&srv, from, g, "11.1.2.200/32", "special", 25);

    // Resolver addresses: an override where the database has nothing, and one inside a
    // database network of another country.
    expect_resolver(&srv, lo("127.30.0.1"), g, "fra");
    expect_resolver(&srv, lo("127.10.5.1"), g, "iad");
    expect_resolver(&srv, lo("127.10.6.1"), g, "nrt");

    // A failover service with nested service nets (the /24 listed before the /16): the
    // longest net's target inside, the first target outside.
    let f = "fonets.example.com.";
    expect_ecs(&srv, from, f, "11.1.2.0/24", "iad", 24);
    expect_ecs(&srv, from, f, "11.1.3.0/24", "nrt", 24);
    expect_ecs(&srv, from, f, "11.1.200.0/24", "nrt", 17);
    expect_ecs(&srv, from, f, "11.2.0.0/24", "fra", 15);
    expect_ecs(&srv, from, f, "8.8.8.0/24", "fra", 7);
}

// ---------------------------------------------------------------------------------------------
// 5. Geo map: most specific region wins
// ---------------------------------------------------------------------------------------------

/// "EU/DE" beats "EU" beats default; a country in an unmapped continent, an unknown country
/// code and an address outside the database get the default; continent-only records work.
#[test]
fn geo_map_most_specific_region_wins() {
    let srv = start_main();
    let from = localhost();
    let g = "geo.example.com.";
    expect_ecs(&srv, from, g, "10.40.0.0/24", "de", 24); // DE (MaxMind): EU/DE
    expect_ecs(&srv, from, g, "10.40.2.0/24", "fra", 24); // FR (flat): EU
    expect_ecs(&srv, from, g, "10.40.4.0/24", "fra", 24); // continent EU only
    expect_ecs(&srv, from, g, "10.40.6.0/24", "iad", 24); // US: NA
    expect_ecs(&srv, from, g, "10.40.8.0/24", "def", 21); // BR: SA is not in the map
    expect_ecs(&srv, from, g, "10.40.10.0/24", "def", 21); // ZZ: unknown country
    expect_ecs(&srv, from, g, "10.41.0.0/24", "def", 16); // not in the database
    expect_ecs(&srv, from, g, "192.0.2.0/24", "def", 1); // not in the database
    // Without "EU/DE" in the map, DE falls to "EU".
    let e = "eu.example.com.";
    expect_ecs(&srv, from, e, "10.40.0.0/24", "fra", 24);
    expect_ecs(&srv, from, e, "10.40.6.0/24", "def", 23);
    // The same regions for resolver addresses (flat JP → AS, MaxMind DE → EU/DE).
    expect_resolver(&srv, lo("127.10.0.1"), g, "nrt");
    expect_resolver(&srv, lo("127.20.0.1"), g, "de");
    expect_resolver(&srv, lo("127.20.0.1"), e, "fra");
    expect_resolver(&srv, lo("127.10.0.1"), e, "def");
}

// ---------------------------------------------------------------------------------------------
// 6. Proximity
// ---------------------------------------------------------------------------------------------

/// Proximity answers the target nearest to the client: by the record's own coordinates when it
/// has them (even against its country), else by the country's point from the country table;
/// clients without coordinates get the first configured target. An IPv4-only database.
#[test]
fn proximity_answers_the_nearest_target() {
    let db = MmdbBuilder::v4()
        // MaxMind records with a location: the location wins over the country.
        .net(
            "10.50.0.0/24",
            Record::country("US").with_location(48.85, 2.35),
        ) // Paris
        .net(
            "10.50.1.0/24",
            Record::country("JP").with_location(40.71, -74.01),
        ) // New York
        .net(
            "10.50.2.0/24",
            Record::country("KR").with_location(37.57, 126.98),
        ) // Seoul
        // Country only (flat and MaxMind): the country table's point.
        .net("10.50.3.0/24", Record::flat("BR"))
        .net("10.50.4.0/24", Record::flat("ZA"))
        .net("10.50.5.0/24", Record::flat("AU"))
        .net("10.50.6.0/24", Record::flat("IN"))
        .net("10.50.7.0/24", Record::flat("CA"))
        .net("10.50.8.0/24", Record::country("PL"))
        .net("10.50.9.0/24", Record::country("AR"))
        // No coordinates anywhere.
        .net("10.50.10.0/24", Record::flat("ZZ"))
        // Resolvers.
        .net(
            "127.50.0.0/16",
            Record::country("US").with_location(41.88, -87.63),
        ) // Chicago
        .net("127.51.0.0/16", Record::flat("DE"));
    let (srv, _dir, _) = start(&config(), &db, |_| {});
    let from = localhost();
    let n = "near.example.com.";
    // Targets in order: nrt, fra, iad.
    let cases = [
        ("10.50.0.0/24", "fra", 24),
        ("10.50.1.0/24", "iad", 24),
        ("10.50.2.0/24", "nrt", 24),
        ("10.50.3.0/24", "iad", 24),
        ("10.50.4.0/24", "fra", 24),
        ("10.50.5.0/24", "nrt", 24),
        ("10.50.6.0/24", "nrt", 24),
        ("10.50.7.0/24", "iad", 24),
        ("10.50.8.0/24", "fra", 24),
        ("10.50.9.0/24", "iad", 24),
        ("10.50.10.0/24", "nrt", 23),
        ("10.51.0.0/24", "nrt", 16),
        ("2001:db8::/48", "nrt", 0),
    ];
    for (cidr, want, scope) in cases {
        expect_ecs(&srv, from, n, cidr, want, scope);
    }
    expect_resolver(&srv, lo("127.50.0.1"), n, "iad");
    expect_resolver(&srv, lo("127.51.0.1"), n, "fra");
    expect_resolver(&srv, from, n, "nrt");
}

// ---------------------------------------------------------------------------------------------
// 7. Scopes are merged-block boundaries
// ---------------------------------------------------------------------------------------------

/// The ECS scope is the prefix of the largest aligned block around the client within which the
/// service answers the same: adjacent /24s merge to a /23 when the map gives them one answer
/// and stay /24s when it does not; an unaligned run splits into a /24 and a /23. The same on
/// the fast UDP path, the hickory UDP engine and TCP.
#[test]
fn scope_is_the_merged_block_boundary() {
    for engine in [UdpEngine::Fast, UdpEngine::Hickory] {
        let (srv, _dir, _) = start(&config(), &main_db(), |c| c.server.udp_engine = engine);
        let from = localhost();
        let (g, e) = ("geo.example.com.", "eu.example.com.");
        // Two /24s of FR: one /23 in both services.
        for svc in [g, e] {
            expect_ecs(&srv, from, svc, "10.20.0.0/24", "fra", 23);
            expect_ecs(&srv, from, svc, "10.20.1.0/24", "fra", 23);
            expect_ecs(&srv, from, svc, "10.20.1.9/32", "fra", 23);
        }
        // DE next to FR: two answers in `geo` (EU/DE vs EU), one in `eu`.
        expect_ecs(&srv, from, g, "10.21.0.0/24", "de", 24);
        expect_ecs(&srv, from, g, "10.21.1.0/24", "fra", 24);
        expect_ecs(&srv, from, e, "10.21.0.0/24", "fra", 23);
        expect_ecs(&srv, from, e, "10.21.1.0/24", "fra", 23);
        // 10.22.1.0 – 10.22.3.255: /24 + /23; the default around it.
        for svc in [g, e] {
            expect_ecs(&srv, from, svc, "10.22.1.0/24", "fra", 24);
            expect_ecs(&srv, from, svc, "10.22.2.0/24", "fra", 23);
            expect_ecs(&srv, from, svc, "10.22.3.0/24", "fra", 23);
            expect_ecs(&srv, from, svc, "10.22.0.0/24", "def", 24);
            expect_ecs(&srv, from, svc, "10.22.4.0/24", "def", 22);
        }
        drop(srv);
    }
}

/// A weighted region's scope is its block's prefix, but at least the hash prefix (/24): the
/// pick changes from one /24 to the next inside a /16 region, and a /25 region keeps /25.
#[test]
fn weighted_region_scope_is_at_least_the_hash_prefix() {
    let srv = start_main();
    let from = localhost();
    let w = "wgeo.example.com.";
    let mut seen = BTreeMap::new();
    for i in 0..48u8 {
        let data = ecs(&format!("10.24.{i}.0/24"));
        let mut picks = Vec::new();
        for via in VIAS {
            let r = ask(&srv, via, from, w, &Edns::ecs(data.clone()));
            assert_eq!(r.ecs(), Some(echoed(&data, 24)), "{}: scope 24", r.what);
            picks.push(r.target());
        }
        assert_eq!(
            picks[0], picks[1],
            "10.24.{i}.0/24: same pick over UDP and TCP"
        );
        assert!(
            ["iad", "nrt"].contains(&picks[0].as_str()),
            "10.24.{i}.0/24: a target of the SA split, got {}",
            picks[0]
        );
        *seen.entry(picks[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both targets of the 50/50 split: {seen:?}");
    // A /16 ECS source still gets scope 24 (the pick depends on the /24).
    expect_ecs_any(&srv, w, "10.24.0.0/16", &["iad", "nrt"], 24);
    // A /25 region keeps its /25 (longer than the hash prefix); the default /25 next to it too.
    expect_ecs_any(&srv, w, "10.23.0.0/25", &["iad", "nrt"], 25);
    expect_ecs(&srv, from, w, "10.23.0.128/25", "def", 25);
}

/// Like `expect_ecs`, for a weighted answer: one of `want`, the same over UDP and TCP.
fn expect_ecs_any(srv: &TestServer, name: &str, cidr: &str, want: &[&str], scope: u8) {
    let data = ecs(cidr);
    let mut picks = Vec::new();
    for via in VIAS {
        let r = ask(srv, via, localhost(), name, &Edns::ecs(data.clone()));
        assert!(want.contains(&r.target().as_str()), "{}: target", r.what);
        assert_eq!(r.ecs(), Some(echoed(&data, scope)), "{}: scope", r.what);
        picks.push(r.target());
    }
    assert_eq!(picks[0], picks[1], "{cidr}: same pick over UDP and TCP");
}

// ---------------------------------------------------------------------------------------------
// 11. Location-independent answers
// ---------------------------------------------------------------------------------------------

/// Static records, NXDOMAIN and failover answers do not depend on the client: ECS scope 0 (the
/// option still echoed). A weighted service depends on the hash prefix: /24 for IPv4, /56 for
/// IPv6, whatever the source prefix.
#[test]
fn scope_0_for_location_independent_answers_hash_prefix_for_weighted() {
    let srv = start_main();
    let from = localhost();
    for cidr in ["10.20.0.0/24", "10.40.6.0/24", "2001:db8:100::/48"] {
        let data = ecs(cidr);
        for via in VIAS {
            let r = ask(
                &srv,
                via,
                from,
                "static.example.com.",
                &Edns::ecs(data.clone()),
            );
            assert_eq!(r.msg.answers.len(), 1, "{}: the static A record", r.what);
            assert_eq!(r.ecs(), Some(echoed(&data, 0)), "{}: scope 0", r.what);

            let r = ask(&srv, via, from, "fo.example.com.", &Edns::ecs(data.clone()));
            assert_eq!(r.target(), "fra", "{}", r.what);
            assert_eq!(r.ecs(), Some(echoed(&data, 0)), "{}: scope 0", r.what);

            let id: u16 = rand::random();
            let raw = exchange(
                &srv,
                via,
                from,
                &packet(id, "nx.example.com.", TYPE_A, &Edns::ecs(data.clone())),
            )
            .expect("NXDOMAIN answer");
            let m = Message::from_vec(&raw).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            let what = format!("NXDOMAIN over {via:?} with {cidr}");
            let opts = opt_options(&raw, &what).expect("OPT echoed");
            assert_eq!(opts, vec![(ECS, echoed(&data, 0))], "{what}: scope 0");
        }
    }
    let s = "split.example.com.";
    for (cidr, scope) in [
        ("10.20.0.0/24", 24),
        ("10.20.0.0/16", 24),
        ("10.20.0.128/25", 24),
        ("192.0.2.7/32", 24),
        ("2001:db8:100::/48", 56),
        ("2001:db8:100:ab00::/64", 56),
        ("2001:db8:100:ab00::1/128", 56),
    ] {
        expect_ecs_any(&srv, s, cidr, &["fra", "iad"], scope);
    }
}

// ---------------------------------------------------------------------------------------------
// 8–10. Hot reload
// ---------------------------------------------------------------------------------------------

/// One query over `via` with ECS `data`; the target, or None if no answer came within 2 s.
fn try_target(srv_udp: SocketAddr, srv_tcp: SocketAddr, via: Via, data: &[u8]) -> Option<String> {
    let id: u16 = rand::random();
    let bytes = packet(id, "geo.example.com.", TYPE_A, &Edns::ecs(data.to_vec()));
    let raw = match via {
        Via::Udp => {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            raw_udp_from(&sock, srv_udp, &bytes, WAIT)
        }
        Via::Tcp => tcp_from(localhost(), srv_tcp, &bytes),
    }?;
    let m = Message::from_vec(&raw).expect("response decodes");
    assert_eq!(m.metadata.id, id, "ID");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let r = Resp {
        raw,
        msg: m,
        what: format!("reload client over {via:?}"),
    };
    Some(r.target())
}

/// The target for ECS subnet `cidr`, over UDP and TCP (which must agree).
fn target_now(srv: &TestServer, cidr: &str) -> String {
    let data = ecs(cidr);
    let u = try_target(srv.udp, srv.tcp, Via::Udp, &data).expect("UDP answer within 2 s");
    let t = try_target(srv.udp, srv.tcp, Via::Tcp, &data).expect("TCP answer within 2 s");
    assert_eq!(u, t, "{cidr}: UDP and TCP agree");
    u
}

/// Poll until `cidr` is answered with `want` over UDP and TCP (deadline PICKUP); the time it
/// took. (While the table is swapped the two may differ for a moment.)
fn wait_for(srv: &TestServer, cidr: &str, want: &str, what: &str) -> Duration {
    let data = ecs(cidr);
    let start = Instant::now();
    loop {
        let got: Vec<String> = VIAS
            .iter()
            .map(|&via| {
                try_target(srv.udp, srv.tcp, via, &data)
                    .unwrap_or_else(|| panic!("{what}: no {via:?} answer within 2 s"))
            })
            .collect();
        if got.iter().all(|g| g == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PICKUP,
            "{what}: {cidr} still answers {got:?} (UDP, TCP) after {:?}, want {want}",
            start.elapsed()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// For HOLD (more than two reload intervals), `cidr` keeps answering `want`: checked every
/// 100 ms or so, and once more after HOLD has passed however slow the machine is.
fn holds(srv: &TestServer, cidr: &str, want: &str, what: &str) {
    let start = Instant::now();
    let data = ecs(cidr);
    loop {
        let past = start.elapsed() >= HOLD;
        for via in VIAS {
            let got = try_target(srv.udp, srv.tcp, via, &data)
                .unwrap_or_else(|| panic!("{what}: no {via:?} answer within 2 s"));
            assert_eq!(
                got,
                want,
                "{what}: after {:?} the old data no longer answers {cidr} over {via:?}",
                start.elapsed()
            );
        }
        if past {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The database is replaced (atomic rename) under UDP and TCP query load: no query is lost,
/// every answer is the old or the new one, the new one comes within seconds and the old one
/// never comes back after it.
#[test]
fn database_reload_under_query_load_loses_nothing() {
    let old = MmdbBuilder::v6()
        .net("10.60.0.0/24", Record::flat("FR"))
        .net("127.10.0.0/16", Record::flat("JP"));
    let new = MmdbBuilder::v6()
        .net("10.60.0.0/24", Record::country("US").with_continent("NA"))
        .net("127.10.0.0/16", Record::flat("JP"))
        .net("2001:db8:100::/48", Record::flat("DE"));
    let (srv, _dir, path) = start(&config(), &old, |_| {});
    assert_eq!(target_now(&srv, "10.60.0.0/24"), "fra");

    struct Progress {
        answers: AtomicUsize,
        seen_new: AtomicBool,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (udp, tcp) = (srv.udp, srv.tcp);
    let clients: Vec<_> = VIAS
        .iter()
        .map(|&via| {
            let stop = stop.clone();
            let progress = Arc::new(Progress {
                answers: AtomicUsize::new(0),
                seen_new: AtomicBool::new(false),
            });
            let p = progress.clone();
            let handle = thread::spawn(move || {
                let data = ecs("10.60.0.0/24");
                let mut log: Vec<Option<String>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let got = try_target(udp, tcp, via, &data);
                    if got.as_deref() == Some("iad") {
                        p.seen_new.store(true, Ordering::Relaxed);
                    }
                    log.push(got);
                    p.answers.fetch_add(1, Ordering::Relaxed);
                }
                log
            });
            (via, progress, handle)
        })
        .collect();

    // Let the load run, then swap the file.
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients
        .iter()
        .any(|(_, p, _)| p.answers.load(Ordering::Relaxed) < 20)
    {
        assert!(Instant::now() < deadline, "clients are not getting answers");
        thread::sleep(Duration::from_millis(10));
    }
    replace_atomically(&path, &new.build());
    let swapped = Instant::now();
    while !clients
        .iter()
        .all(|(_, p, _)| p.seen_new.load(Ordering::Relaxed))
    {
        assert!(
            swapped.elapsed() < PICKUP,
            "the new database was not picked up within {PICKUP:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let picked_up = swapped.elapsed();
    // Keep the load on a little after the swap.
    let after: Vec<usize> = clients
        .iter()
        .map(|(_, p, _)| p.answers.load(Ordering::Relaxed))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients
        .iter()
        .zip(&after)
        .any(|((_, p, _), n)| p.answers.load(Ordering::Relaxed) < n + 20)
    {
        assert!(Instant::now() < deadline, "clients stalled after the swap");
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for (via, _, handle) in clients {
        let log = handle.join().expect("client thread");
        let lost = log.iter().filter(|x| x.is_none()).count();
        assert_eq!(lost, 0, "{via:?}: {lost} of {} queries lost", log.len());
        let targets: Vec<&str> = log.iter().flatten().map(String::as_str).collect();
        for t in &targets {
            assert!(
                ["fra", "iad"].contains(t),
                "{via:?}: answer {t} is neither old nor new"
            );
        }
        let first_new = targets.iter().position(|t| *t == "iad").unwrap();
        assert!(first_new > 0, "{via:?}: the old answer came first");
        assert!(
            targets[first_new..].iter().all(|t| *t == "iad"),
            "{via:?}: the old answer came back after the new one: {targets:?}"
        );
    }
    // The new data is complete: its other networks answer too.
    assert_eq!(target_now(&srv, "2001:db8:100::/48"), "de");
    eprintln!("new database picked up after {picked_up:?}");
}

/// A corrupt database (random bytes, a truncated copy, a valid file with no geography in it)
/// written over the file is rejected and the old data keeps answering; a later valid file is
/// picked up.
#[test]
fn corrupt_database_is_rejected_and_the_old_one_keeps_answering() {
    let good = MmdbBuilder::v6().net("10.61.0.0/24", Record::flat("JP"));
    let next = MmdbBuilder::v6()
        .net("10.61.0.0/24", Record::country("DE").with_continent("EU"))
        .net("10.62.0.0/16", Record::flat("US"));
    let (srv, _dir, path) = start(&config(), &good, |_| {});
    assert_eq!(target_now(&srv, "10.61.0.0/24"), "nrt");

    let random: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    let full = next.build();
    let truncated = full[..full.len() / 2].to_vec();
    let cut_tail = full[..full.len() - 8].to_vec();
    let no_geo = MmdbBuilder::v6()
        .net(
            "10.61.0.0/24",
            Record::new().field("autonomous_system_number", Value::U32(64500)),
        )
        .build();
    for (what, bytes) in [
        ("random bytes", random),
        ("truncated copy (first half)", truncated),
        ("truncated copy (last 8 bytes cut)", cut_tail),
        ("valid file without geography", no_geo),
    ] {
        replace_atomically(&path, &bytes);
        holds(&srv, "10.61.0.0/24", "nrt", what);
    }
    replace_atomically(&path, &full);
    let took = wait_for(&srv, "10.61.0.0/24", "de", "valid file after corrupt ones");
    assert_eq!(target_now(&srv, "10.62.0.0/24"), "iad");
    eprintln!("valid database picked up after {took:?}");
}

/// A `nets_file` changed on disk is picked up; a broken one (TOML syntax, or one bad entry
/// next to good ones) is rejected as a whole and the overrides in force keep answering.
#[test]
fn nets_file_changes_are_picked_up_and_broken_ones_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let nets = dir.path().join("nets.toml");
    let entry = |cidr: &str, key: &str, val: &str| -> String {
        format!("[[nets]]\ncidr = \"{cidr}\"\n{key} = \"{val}\"\n\n")
    };
    std::fs::write(&nets, entry("10.70.0.0/16", "country", "DE")).unwrap();
    let p = nets.clone();
    let srv = TestServer::start_with(&config(), move |c| {
        c.geo.nets_file = Some(p);
    });
    assert_eq!(target_now(&srv, "10.70.1.0/24"), "de");
    assert_eq!(target_now(&srv, "10.71.0.0/24"), "def");

    write_nets(&nets, &entry("10.70.0.0/16", "country", "US"));
    wait_for(&srv, "10.70.1.0/24", "iad", "nets file changed to US");

    let broken: [(&str, String); 4] = [
        (
            "TOML syntax error",
            "[[nets]\ncidr = \"10.70.0.0/16\"\n".to_string(),
        ),
        (
            "bad CIDR next to a good entry",
            entry("10.70.0.0/16", "continent", "AS") + &entry("10.71.0.0/33", "country", "FR"),
        ),
        (
            "unknown country next to a good entry",
            entry("10.70.0.0/16", "continent", "AS") + &entry("10.71.0.0/16", "country", "XX"),
        ),
        (
            "unknown key",
            entry("10.70.0.0/16", "continent", "AS") + "colour = \"blue\"\n",
        ),
    ];
    for (what, text) in &broken {
        write_nets(&nets, text);
        holds(&srv, "10.70.1.0/24", "iad", what);
        assert_eq!(target_now(&srv, "10.71.0.0/24"), "def", "{what}");
    }
    write_nets(
        &nets,
        &(entry("10.70.0.0/16", "continent", "AS") + &entry("10.71.0.0/16", "country", "FR")),
    );
    wait_for(
        &srv,
        "10.70.1.0/24",
        "nrt",
        "valid nets file after broken ones",
    );
    assert_eq!(target_now(&srv, "10.71.0.0/24"), "fra");
}

fn write_nets(path: &Path, text: &str) {
    replace_atomically(path, text.as_bytes());
}
