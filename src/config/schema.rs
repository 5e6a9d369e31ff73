//! The TOML schema. Every struct rejects unknown keys; defaults live here and are documented in
//! `docs/config.md`.

use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// Which engine answers UDP queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UdpEngine {
    /// Per-core blocking workers answering from precomputed wire-format answers; every query the
    /// cache cannot answer goes through the hickory `RequestHandler`.
    #[default]
    Fast,
    /// hickory-server's own UDP loop (one task per query); kept for comparison.
    Hickory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses the DNS server listens on (UDP and TCP on each).
    #[serde(default = "default_dns_listen")]
    pub dns_listen: Vec<String>,
    /// Address of the admin HTTP API.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// UDP sockets per listen address (SO_REUSEPORT); 0 = one per available core.
    #[serde(default)]
    pub udp_sockets: usize,
    #[serde(default)]
    pub udp_engine: UdpEngine,
    /// Largest UDP response we send, whatever the client advertises (and the size we advertise).
    #[serde(default = "default_max_udp_payload")]
    pub max_udp_payload: u16,
    /// Seconds an idle TCP connection is kept open.
    #[serde(default = "default_tcp_idle_timeout")]
    pub tcp_idle_timeout: u64,
    /// Prefix lengths that define a "client" for stable weighted picks.
    #[serde(default = "default_hash_prefix_v4")]
    pub hash_prefix_v4: u8,
    #[serde(default = "default_hash_prefix_v6")]
    pub hash_prefix_v6: u8,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            dns_listen: default_dns_listen(),
            admin_listen: None,
            udp_sockets: 0,
            udp_engine: UdpEngine::default(),
            max_udp_payload: default_max_udp_payload(),
            tcp_idle_timeout: default_tcp_idle_timeout(),
            hash_prefix_v4: default_hash_prefix_v4(),
            hash_prefix_v6: default_hash_prefix_v6(),
        }
    }
}

fn default_dns_listen() -> Vec<String> {
    vec!["127.0.0.1:5353".to_string()]
}
fn default_max_udp_payload() -> u16 {
    1232
}
fn default_tcp_idle_timeout() -> u64 {
    10
}
fn default_hash_prefix_v4() -> u8 {
    24
}
fn default_hash_prefix_v6() -> u8 {
    56
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Zone apex, e.g. `example.com` (trailing dot optional).
    pub name: String,
    /// Authoritative name servers of the zone (apex NS set).
    pub ns: Vec<String>,
    /// TTL of the apex NS set.
    #[serde(default = "default_ns_ttl")]
    pub ns_ttl: u32,
    /// TTL of static records that do not set one.
    #[serde(default = "default_record_ttl")]
    pub default_ttl: u32,
    pub soa: SoaConfig,
    #[serde(default)]
    pub records: Vec<RecordConfig>,
}

fn default_ns_ttl() -> u32 {
    86400
}
fn default_record_ttl() -> u32 {
    3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    pub mname: String,
    pub rname: String,
    #[serde(default = "default_serial")]
    pub serial: u32,
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    pub retry: u32,
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    #[serde(default = "default_minimum")]
    pub minimum: u32,
    #[serde(default = "default_soa_ttl")]
    pub ttl: u32,
}

fn default_serial() -> u32 {
    1
}
fn default_refresh() -> u32 {
    7200
}
fn default_retry() -> u32 {
    3600
}
fn default_expire() -> u32 {
    1_209_600
}
fn default_minimum() -> u32 {
    300
}
fn default_soa_ttl() -> u32 {
    3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Owner name: `@` for the apex, a name relative to the zone (`www`), or an absolute name ending
    /// with a dot (`www.example.com.`).
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    /// One value or a list of values in presentation format.
    #[serde(deserialize_with = "one_or_many")]
    pub data: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// Answer as a CNAME to this host name.
    pub cname: Option<String>,
    /// Answer with these addresses.
    #[serde(default)]
    pub a: Vec<String>,
    #[serde(default)]
    pub aaaa: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Failover,
    Weighted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Steered name, absolute (trailing dot optional); must be inside a configured zone.
    pub name: String,
    #[serde(default = "default_service_ttl")]
    pub ttl: u32,
    pub policy: PolicyKind,
    pub targets: Vec<ServiceTargetConfig>,
}

fn default_service_ttl() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTargetConfig {
    pub target: String,
    /// Only for `policy = "weighted"`; must be > 0.
    pub weight: Option<i64>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected a string or a list of strings",
        )),
    }
}
