//! Convert a flat-schema country mmdb (`{"country_code": "DE"}`, like the shipped
//! `geodb/geo-whois-asn-country.mmdb`) into the MaxMind GeoIP2-Country schema
//! (`{"country": {"iso_code": "DE"}, "continent": {"code": "EU"}}`), which is what gdnsd's
//! geoip plugin (and every other GeoIP2 reader) understands. The continent comes from the
//! country table (`geodb/countries.csv`: `iso,continent,latitude,longitude,name`).
//!
//! ```sh
//! cargo run --release --example mmdb_to_maxmind -- IN.mmdb COUNTRIES.csv OUT.mmdb
//! ```
//!
//! The output has the same networks as the input. It is an IPv6 database (`ip_version` 6)
//! with the IPv4 networks in the IPv4-compatible subtree `::/96`, as in MaxMind's own files
//! (the `::ffff:0:0/96` and `2002::/16` aliases that MaxMind adds are not written: the writer
//! crate cannot link nodes, and gdnsd ignores those spaces anyway). A record that already
//! has the MaxMind schema is passed through (country and continent only). Networks whose
//! record has no country at all are dropped and counted.
//!
//! After writing, the program reads the output back and checks that the first and the last
//! address of every input network give the same country and continent as the input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;

use ipnetwork::IpNetwork;
use maxminddb::{Reader, WithinOptions};
use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::{Deserialize, Serialize};

/// What we read: either schema.
#[derive(Deserialize, Default)]
struct InRecord {
    country_code: Option<String>,
    country: Option<InNames>,
    continent: Option<InContinent>,
}
#[derive(Deserialize, Default)]
struct InNames {
    iso_code: Option<String>,
}
#[derive(Deserialize, Default)]
struct InContinent {
    code: Option<String>,
}

/// What we write: the GeoIP2-Country subset that gdnsd and steerd use.
#[derive(Serialize)]
struct OutRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    continent: Option<OutContinent>,
    country: OutCountry,
}
#[derive(Serialize)]
struct OutContinent {
    code: String,
}
#[derive(Serialize)]
struct OutCountry {
    iso_code: String,
}

type Loc = (String, Option<String>);

fn location(rec: &InRecord, continents: &HashMap<String, String>) -> Option<Loc> {
    let country = rec
        .country_code
        .clone()
        .or_else(|| rec.country.as_ref().and_then(|c| c.iso_code.clone()))
        .filter(|c| c.len() == 2)?
        .to_ascii_uppercase();
    let continent = rec
        .continent
        .as_ref()
        .and_then(|c| c.code.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| continents.get(&country).cloned());
    Some((country, continent))
}

/// `iso -> continent` from `iso,continent,...` (the rest of the line may be quoted).
fn read_continents(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("iso,continent") {
        return Err(format!("{path}: expected the header iso,continent,..."));
    }
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.splitn(3, ',');
        let (iso, cont) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        if iso.len() != 2 {
            return Err(format!("{path}:{}: bad country code {iso:?}", n + 2));
        }
        if !cont.is_empty() {
            out.insert(iso.to_ascii_uppercase(), cont.to_ascii_uppercase());
        }
    }
    Ok(out)
}

/// An input network as a path in an IPv6 tree: IPv4 goes to `::a.b.c.d/(96+p)`.
fn v6_path(net: IpNetwork) -> IpAddrWithMask {
    match net {
        IpNetwork::V4(n) => IpAddrWithMask::new(
            IpAddr::V6(n.network().to_ipv6_compatible()),
            n.prefix() + 96,
        ),
        IpNetwork::V6(n) => IpAddrWithMask::new(IpAddr::V6(n.network()), n.prefix()),
    }
}

/// First and last address of a network, IPv4 ones in their IPv4-compatible IPv6 form.
fn bounds(net: IpNetwork) -> [IpAddr; 2] {
    match net {
        IpNetwork::V4(n) => {
            [n.network(), n.broadcast()].map(|a| IpAddr::V6(a.to_ipv6_compatible()))
        }
        IpNetwork::V6(n) => [n.network(), n.broadcast()].map(IpAddr::V6),
    }
}

fn run(input: &str, countries: &str, output: &str) -> Result<(), String> {
    let continents = read_continents(countries)?;
    let reader = Reader::open_readfile(input).map_err(|e| format!("{input}: {e}"))?;
    let meta = reader.metadata().clone();
    let all: IpNetwork = if meta.ip_version == 6 {
        "::/0"
    } else {
        "0.0.0.0/0"
    }
    .parse()
    .expect("valid literal");

    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    // gdnsd warns about a type that does not say Country (like "GeoLite2-Country").
    db.metadata.database_type = "steerd-GeoIP2-Country".into();
    db.metadata.binary_format_major_version = 2;
    db.metadata.binary_format_minor_version = 0;
    db.metadata.build_epoch = meta.build_epoch;
    db.metadata.languages = vec!["en".into()];
    db.metadata.description.insert(
        "en".into(),
        format!(
            "{} ({}) in the GeoIP2-Country schema, continents from {}",
            input, meta.database_type, countries
        ),
    );

    // One data record per (country, continent); the tree points at them.
    let mut data = HashMap::new();
    // By input data offset: decode each distinct input record once.
    let mut by_offset: HashMap<usize, Option<Loc>> = HashMap::new();
    let mut written: Vec<(IpNetwork, Loc)> = Vec::new();
    let (mut dropped, mut no_continent) = (0usize, 0usize);
    for item in reader
        .within(all, WithinOptions::default())
        .map_err(|e| format!("{input}: {e}"))?
    {
        let item = item.map_err(|e| format!("{input}: {e}"))?;
        let net = item.network().map_err(|e| format!("{input}: {e}"))?;
        let Some(off) = item.offset() else { continue };
        let loc = match by_offset.get(&off) {
            Some(loc) => loc.clone(),
            None => {
                let rec: InRecord = item
                    .decode()
                    .map_err(|e| format!("{input}: {net}: {e}"))?
                    .unwrap_or_default();
                let loc = location(&rec, &continents);
                by_offset.insert(off, loc.clone());
                loc
            }
        };
        let Some(loc) = loc else {
            dropped += 1;
            continue;
        };
        if loc.1.is_none() {
            no_continent += 1;
        }
        let dref = match data.get(&loc) {
            Some(d) => *d,
            None => {
                let rec = OutRecord {
                    continent: loc.1.clone().map(|code| OutContinent { code }),
                    country: OutCountry {
                        iso_code: loc.0.clone(),
                    },
                };
                let d = db
                    .insert_value(rec)
                    .map_err(|e| format!("serialize {loc:?}: {e}"))?;
                data.insert(loc.clone(), d);
                d
            }
        };
        db.insert_node(v6_path(net), dref);
        written.push((net, loc));
    }
    if written.is_empty() {
        return Err(format!("{input}: no network with a country"));
    }

    let file = std::fs::File::create(output).map_err(|e| format!("{output}: {e}"))?;
    let mut w = std::io::BufWriter::new(file);
    db.write_to(&mut w).map_err(|e| format!("{output}: {e}"))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("{output}: {e}"))?;
    drop(w);

    // Read the output back: both ends of every network must give the same location.
    let check = Reader::open_readfile(output).map_err(|e| format!("{output}: {e}"))?;
    for (net, loc) in &written {
        for addr in bounds(*net) {
            let got = check
                .lookup(addr)
                .and_then(|r| r.decode::<InRecord>())
                .map_err(|e| format!("{output}: lookup {addr}: {e}"))?
                .and_then(|rec| location(&rec, &HashMap::new()));
            if got.as_ref() != Some(loc) {
                return Err(format!(
                    "{output}: {addr} (in {net}) gives {got:?}, the input gives {loc:?}"
                ));
            }
        }
    }
    // IPv4 lookups (the reader's IPv4 view) land in ::/96 too.
    if let Some((net @ IpNetwork::V4(n), loc)) = written.iter().find(|(n, _)| n.is_ipv4()) {
        let got = check
            .lookup(IpAddr::V4(n.network()))
            .and_then(|r| r.decode::<InRecord>())
            .map_err(|e| format!("{output}: lookup {net}: {e}"))?
            .and_then(|rec| location(&rec, &HashMap::new()));
        if got.as_ref() != Some(loc) {
            return Err(format!("{output}: IPv4 lookup of {net} gives {got:?}"));
        }
    }

    let v4 = written.iter().filter(|(n, _)| n.is_ipv4()).count();
    let v6 = written.len() - v4;
    eprintln!(
        "{output}: {} networks ({v4} IPv4 in ::/96, {v6} IPv6), {} distinct records, \
         {dropped} input networks without a country dropped, {no_continent} without a continent; \
         verified both ends of every network",
        written.len(),
        data.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, countries, output] = args.as_slice() else {
        eprintln!("usage: mmdb_to_maxmind IN.mmdb COUNTRIES.csv OUT.mmdb");
        return ExitCode::from(2);
    };
    match run(input, countries, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmdb_to_maxmind: {e}");
            ExitCode::FAILURE
        }
    }
}
