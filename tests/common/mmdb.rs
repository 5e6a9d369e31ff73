//! A tiny MaxMind DB (.mmdb) builder for tests, on top of the `maxminddb-writer` crate: known
//! networks with records in the MaxMind GeoIP2 schema (`country.iso_code`, `continent.code`,
//! `location.latitude/longitude`) or the flat schema of the shipped CC0 database
//! (`country_code`).
//!
//! In an IPv6 database, IPv4 networks are stored where every MaxMind reader looks for them: in
//! the IPv4-compatible subtree `::a.b.c.d/(96 + len)` (`maxminddb` walks 96 zero bits to find
//! the IPv4 start node).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;

/// A value in a record. (The writer serializes `None` as `false`, so records are built from
/// maps holding only the fields that are there.)
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    F64(f64),
    U32(u32),
    Map(BTreeMap<String, Value>),
}

/// The data record of one network.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Record(BTreeMap<String, Value>);

impl Record {
    /// An empty record (no field the server reads).
    pub fn new() -> Self {
        Self::default()
    }

    /// Flat schema (the shipped CC0 database): `{"country_code": cc}`.
    pub fn flat(cc: &str) -> Self {
        Self::new().field("country_code", Value::Str(cc.to_string()))
    }

    /// MaxMind schema with a country only: `{"country": {"iso_code": cc}}`.
    pub fn country(cc: &str) -> Self {
        Self::new().with_country(cc)
    }

    /// MaxMind schema: add `country.iso_code`.
    pub fn with_country(self, cc: &str) -> Self {
        self.sub("country", "iso_code", Value::Str(cc.to_string()))
    }

    /// MaxMind schema: add `continent.code`.
    pub fn with_continent(self, code: &str) -> Self {
        self.sub("continent", "code", Value::Str(code.to_string()))
    }

    /// MaxMind schema: add `location.latitude` and `location.longitude`.
    pub fn with_location(self, lat: f64, lon: f64) -> Self {
        self.sub("location", "latitude", Value::F64(lat)).sub(
            "location",
            "longitude",
            Value::F64(lon),
        )
    }

    /// Any other top-level field.
    pub fn field(mut self, key: &str, v: Value) -> Self {
        self.0.insert(key.to_string(), v);
        self
    }

    fn sub(mut self, outer: &str, inner: &str, v: Value) -> Self {
        let entry = self
            .0
            .entry(outer.to_string())
            .or_insert_with(|| Value::Map(BTreeMap::new()));
        match entry {
            Value::Map(m) => {
                m.insert(inner.to_string(), v);
            }
            other => panic!("{outer} is not a map: {other:?}"),
        }
        self
    }
}

/// A database under construction: networks (CIDR text) and their records.
#[derive(Debug, Clone)]
pub struct MmdbBuilder {
    ipv6: bool,
    database_type: String,
    nets: Vec<(IpNet, Record)>,
}

impl MmdbBuilder {
    /// An IPv6 database (`ip_version` 6): IPv4 and IPv6 networks.
    pub fn v6() -> Self {
        Self {
            ipv6: true,
            database_type: "steerd-test-country".to_string(),
            nets: Vec::new(),
        }
    }

    /// An IPv4-only database (`ip_version` 4).
    pub fn v4() -> Self {
        Self {
            ipv6: false,
            ..Self::v6()
        }
    }

    /// Add a network. Nested networks are fine: the narrower one wins for its addresses.
    pub fn net(mut self, cidr: &str, rec: Record) -> Self {
        let net: IpNet = cidr.parse().unwrap_or_else(|e| panic!("{cidr}: {e}"));
        assert_eq!(net, net.trunc(), "{cidr}: host bits set");
        assert!(
            self.ipv6 || matches!(net, IpNet::V4(_)),
            "{cidr}: IPv6 network in an IPv4 database"
        );
        self.nets.push((net, rec));
        self
    }

    /// The database file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut db = Database::default();
        db.metadata.ip_version = if self.ipv6 {
            IpVersion::V6
        } else {
            IpVersion::V4
        };
        db.metadata.database_type = self.database_type.clone();
        db.metadata.binary_format_major_version = 2;
        db.metadata.binary_format_minor_version = 0;
        db.metadata.build_epoch = 1_767_225_600;
        db.metadata.languages = vec!["en".to_string()];
        db.metadata
            .description
            .insert("en".to_string(), "steerd test database".to_string());
        // The writer splits a data leaf when a longer prefix goes below it, but a shorter
        // prefix inserted later would overwrite a whole subtree: insert widest first.
        let mut nets: Vec<&(IpNet, Record)> = self.nets.iter().collect();
        nets.sort_by_key(|(n, _)| self.tree_prefix(n));
        for (net, rec) in nets {
            let data = db.insert_value(rec).expect("record serializes");
            let path = match (*net, self.ipv6) {
                (IpNet::V4(n), true) => IpAddrWithMask::new(
                    IpAddr::V6(Ipv6Addr::from(u32::from(n.network()) as u128)),
                    96 + n.prefix_len(),
                ),
                (n, _) => IpAddrWithMask::new(n.network(), n.prefix_len()),
            };
            db.insert_node(path, data);
        }
        let mut out = Vec::new();
        db.write_to(&mut out).expect("database writes");
        out
    }

    fn tree_prefix(&self, n: &IpNet) -> u8 {
        match n {
            IpNet::V4(n) if self.ipv6 => 96 + n.prefix_len(),
            n => n.prefix_len(),
        }
    }

    /// Write the database to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.build()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Replace `path` atomically with `bytes`: write a temporary file in the same directory, then
/// rename it over the target (a reader sees the old file or the new one, never half of one).
pub fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}
