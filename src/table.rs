//! The routing table: an immutable, precomputed snapshot of everything the DNS fast path needs,
//! published through an [`ArcSwap`]. The control plane builds a new table (see `policy::compile`)
//! and swaps it in; each query does exactly one `load()`.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::{Name, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::dns::fast::FastNode;
use crate::dns::stats::{QueryStats, TableLabels};

/// Shared handle to the current table.
pub type TableHandle = Arc<ArcSwap<RoutingTable>>;

/// Create a handle holding `table`.
pub fn handle(table: RoutingTable) -> TableHandle {
    Arc::new(ArcSwap::from_pointee(table))
}

/// Lower-case wire-format name (length-prefixed labels, terminated by 0): the key of every map in
/// the table, so the fast path can look a query up straight from packet bytes.
pub type WireKey = Box<[u8]>;

/// Build the lower-case wire key of a name.
pub fn wire_key(name: &Name) -> WireKey {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// Offsets of each suffix of a wire key, longest first (the name itself, its parent, …, root).
pub fn suffixes(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= key.len() {
            return None;
        }
        let s = &key[pos..];
        pos += key[pos] as usize + 1;
        Some(s)
    })
}

/// A zone's apex data.
#[derive(Debug)]
pub struct ZoneEntry {
    pub apex: Name,
    pub soa: Record,
    /// SOA with TTL = min(SOA TTL, minimum), for negative answers (RFC 2308 §5).
    pub negative_soa: Record,
}

/// One owner name with data.
#[derive(Debug, Default)]
pub struct Node {
    pub zone: u32,
    /// RRsets at this name, in a fixed order (used for minimal ANY answers).
    pub rrsets: Vec<(RecordType, Vec<Record>)>,
    /// Steered service at this name.
    pub service: Option<u32>,
    /// This name is a delegation point (NS below an apex).
    pub cut: bool,
}

impl Node {
    pub fn rrset(&self, t: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(rt, _)| *rt == t)
            .map(|(_, v)| v.as_slice())
    }
}

/// How a service picks its answer for a client.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Always the same answer (failover: first target; later: health decides).
    Fixed(usize),
    /// Weighted rendezvous hashing over the client's subnet.
    Weighted(Vec<WeightedMember>),
    /// Location-dependent: merged address blocks → a choice, each fixed or weighted.
    Geo {
        blocks: Arc<crate::geo::Blocks>,
        choices: Vec<Choice>,
    },
}

/// A region's pick: one answer, or a weighted split.
#[derive(Debug, Clone)]
pub enum Choice {
    Fixed(usize),
    Weighted(Vec<WeightedMember>),
}

#[derive(Debug, Clone)]
pub struct WeightedMember {
    /// Hash seed derived from the target name: stable across restarts and across nodes.
    pub seed: u64,
    pub weight: f64,
    /// Index into [`CompiledService::answers`].
    pub answer: usize,
}

/// Who is asking: the address that locates the query (the ECS subnet when the query carries
/// one with a source prefix > 0, else the resolver) and whether it came from ECS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    pub from_ecs: bool,
}

impl ClientAddr {
    pub fn resolver(ip: IpAddr) -> Self {
        Self {
            ip,
            from_ecs: false,
        }
    }
}

/// What a target answers, as ready records with the service's TTL and owner name.
#[derive(Debug, Clone)]
pub struct ServiceAnswer {
    /// The target(s) answered, for logs and `resolve`.
    pub target: String,
    pub cname: Option<Record>,
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    /// Every target is down and the service fails closed without a fallback: SERVFAIL.
    pub servfail: bool,
    /// Indices of the configuration's targets this answer sends clients to (counted).
    pub targets: Vec<usize>,
}

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Shards given to threads that never called [`set_counter_shard`] (the tokio runtime's
/// threads: TCP and the hickory UDP engine), one each in turn in the upper half.
static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Make this thread count answers in its own shard (UDP workers call it once).
pub fn set_counter_shard(i: usize) {
    SHARD.with(|s| s.set(i % SHARDS));
}

/// This thread's counter shard, `0..SHARDS`: the one set by [`set_counter_shard`], else one
/// assigned on first use, so that threads rarely share a shard.
#[inline]
pub fn counter_shard() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let n = SHARDS / 2
            + NEXT_SHARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (SHARDS / 2);
        s.set(n);
        n
    })
}

/// Shards of the per-thread counters.
pub const SHARDS: usize = 16;
/// Spacing between shards, in counters: 128 bytes, so two threads never share a cache line.
const PAD: usize = 16;

/// DNS answers given per target since start, for the cost estimate (and metrics). Sharded per
/// thread so the UDP workers do not contend on one cache line. Also carries the DNS query
/// statistics ([`QueryStats`]) behind the `/metrics` query counters and latency histograms.
#[derive(Debug)]
pub struct AnswerCounters {
    targets: usize,
    cells: Box<[std::sync::atomic::AtomicU64]>,
    /// Queries by service, target, rcode, protocol and ECS presence, and response latency.
    /// Label ids are process-wide, so these survive any configuration change: share them with
    /// the counters of the next configuration ([`AnswerCounters::carrying`]).
    pub queries: Arc<QueryStats>,
}

impl AnswerCounters {
    pub fn new(targets: usize) -> Self {
        Self::with_queries(targets, Arc::new(QueryStats::new()))
    }

    /// Fresh answer counters for `targets` targets that keep counting queries in `queries`.
    pub fn with_queries(targets: usize, queries: Arc<QueryStats>) -> Self {
        let stride = targets + PAD;
        Self {
            targets,
            cells: (0..stride * SHARDS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            queries,
        }
    }

    /// Fresh answer counters for a new configuration with `targets` targets, sharing this
    /// one's query statistics (so `/metrics` query counters do not reset).
    pub fn carrying(&self, targets: usize) -> Self {
        Self::with_queries(targets, self.queries.clone())
    }

    #[inline]
    pub fn add(&self, target: usize, n: u64) {
        if target < self.targets {
            let shard = counter_shard();
            self.cells[shard * (self.targets + PAD) + target]
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Answers per target, all shards summed.
    pub fn totals(&self) -> Vec<u64> {
        let stride = self.targets + PAD;
        (0..self.targets)
            .map(|t| {
                (0..SHARDS)
                    .map(|s| self.cells[s * stride + t].load(std::sync::atomic::Ordering::Relaxed))
                    .sum()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct CompiledService {
    pub name: Name,
    pub ttl: u32,
    pub selector: Selector,
    pub answers: Vec<ServiceAnswer>,
}

impl CompiledService {
    /// Index of the answer this client gets, and the ECS scope prefix of that answer (0 when
    /// it does not depend on the client). Pure and cheap: a binary search and a few hashes.
    #[inline]
    pub fn select(&self, client: ClientAddr, prefix_v4: u8, prefix_v6: u8) -> (usize, u8) {
        let hash_prefix = if client.ip.is_ipv4() {
            prefix_v4
        } else {
            prefix_v6
        };
        match &self.selector {
            Selector::Fixed(i) => (*i, 0),
            Selector::Weighted(members) => (
                weighted_pick(members, client.ip, prefix_v4, prefix_v6),
                hash_prefix,
            ),
            Selector::Geo { blocks, choices } => {
                let (c, scope) = blocks.lookup(client.ip);
                match choices.get(c as usize) {
                    Some(Choice::Fixed(i)) => (*i, scope),
                    Some(Choice::Weighted(members)) => (
                        weighted_pick(members, client.ip, prefix_v4, prefix_v6),
                        scope.max(hash_prefix),
                    ),
                    None => (0, scope),
                }
            }
        }
    }

    /// Does the answer depend on where the client is?
    pub fn is_location_dependent(&self) -> bool {
        !matches!(self.selector, Selector::Fixed(_))
    }
}

/// Weighted rendezvous hashing: the member with the largest ln(u)/w wins, u uniform in (0, 1]
/// from a hash of the client's subnet and the member's seed, so each member wins with
/// probability proportional to its weight.
#[inline]
pub fn weighted_pick(
    members: &[WeightedMember],
    ip: IpAddr,
    prefix_v4: u8,
    prefix_v6: u8,
) -> usize {
    let key = client_key(ip, prefix_v4, prefix_v6);
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for m in members {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&key, m.seed);
        let u = ((h >> 11) as f64 + 1.0) / ((1u64 << 53) as f64);
        let score = u.ln() / m.weight;
        if score > best_score {
            best_score = score;
            best = m.answer;
        }
    }
    best
}

/// The bytes that identify a client for stable picks: its address masked to the hash prefix.
#[inline]
pub fn client_key(client: IpAddr, prefix_v4: u8, prefix_v6: u8) -> [u8; 17] {
    let mut key = [0u8; 17];
    match client {
        IpAddr::V4(v4) => {
            let masked = ipnet::Ipv4Net::new(v4, prefix_v4).map_or(v4, |n| n.network());
            key[0] = 4;
            key[1..5].copy_from_slice(&masked.octets());
        }
        IpAddr::V6(v6) => {
            let masked = ipnet::Ipv6Net::new(v6, prefix_v6).map_or(v6, |n| n.network());
            key[0] = 6;
            key[1..17].copy_from_slice(&masked.octets());
        }
    }
    key
}

/// Settings the fast path needs at query time.
#[derive(Debug, Clone, Copy)]
pub struct TableSettings {
    pub max_udp_payload: u16,
    pub hash_prefix_v4: u8,
    pub hash_prefix_v6: u8,
}

/// Immutable snapshot answered from by the DNS path.
#[derive(Debug)]
pub struct RoutingTable {
    /// Increases with every compiled table; shown in logs and the admin API.
    pub generation: u64,
    /// Hash of every service's choices: two tables with the same fingerprint (and the same
    /// configuration) answer alike, so the control loop swaps only when it changes.
    pub fingerprint: u64,
    pub settings: TableSettings,
    pub zones: Vec<ZoneEntry>,
    pub zone_index: FxHashMap<WireKey, u32>,
    pub nodes: FxHashMap<WireKey, Node>,
    /// Names that exist only because a name below them exists (RFC 8020: NODATA, not NXDOMAIN).
    pub empty_non_terminals: FxHashSet<WireKey>,
    pub services: Vec<CompiledService>,
    /// Precomputed wire-format answers for (name, type) pairs.
    pub fast: FxHashMap<WireKey, FastNode>,
    /// Delegation points (wire keys), so the fast path can tell a referral from an NXDOMAIN.
    pub cuts: FxHashSet<WireKey>,
    /// Per zone: the NXDOMAIN answer (negative SOA in authority) for names not in the table.
    pub fast_nx: Vec<Option<crate::dns::fast::Template>>,
    /// Where answers are counted (shared by the tables of one configuration).
    pub counters: Arc<AnswerCounters>,
    /// Services with a cell whose every candidate is down.
    pub all_down: Vec<String>,
    /// Metric label ids of the zones, services and answers (set by `fast::precompute`, else
    /// on first use); see [`RoutingTable::labels`].
    pub labels: std::sync::OnceLock<TableLabels>,
}

impl RoutingTable {
    /// Count one answer of service `service`, answer `i`.
    #[inline]
    pub fn count_answer(&self, service: usize, i: usize) {
        if let Some(a) = self.services.get(service).and_then(|s| s.answers.get(i)) {
            for &t in &a.targets {
                self.counters.add(t, 1);
            }
        }
    }
}

impl RoutingTable {
    /// The metric label ids of this table's names, interned on first use (compiling a table
    /// does it: `fast::precompute`). The table must not gain zones or services afterwards.
    #[inline]
    pub fn labels(&self) -> &TableLabels {
        self.labels.get_or_init(|| TableLabels::of(self))
    }

    /// Most specific zone containing the name with this wire key.
    pub fn find_zone(&self, key: &[u8]) -> Option<u32> {
        suffixes(key).find_map(|s| self.zone_index.get(s).copied())
    }

    /// An empty table (no zones): every query is REFUSED.
    pub fn empty(settings: TableSettings) -> Self {
        Self {
            generation: 0,
            fingerprint: 0,
            settings,
            zones: Vec::new(),
            zone_index: FxHashMap::default(),
            nodes: FxHashMap::default(),
            empty_non_terminals: FxHashSet::default(),
            services: Vec::new(),
            fast: FxHashMap::default(),
            cuts: FxHashSet::default(),
            fast_nx: Vec::new(),
            counters: Arc::new(AnswerCounters::new(0)),
            all_down: Vec::new(),
            labels: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn wire_key_lowercases_and_suffixes_walk_to_root() {
        let k = wire_key(&Name::from_str("WwW.Example.COM.").unwrap());
        assert_eq!(&*k, b"\x03www\x07example\x03com\x00");
        let s: Vec<&[u8]> = suffixes(&k).collect();
        assert_eq!(s.len(), 4);
        assert_eq!(s[1], b"\x07example\x03com\x00");
        assert_eq!(s[3], b"\x00");
    }

    #[test]
    fn client_key_masks_to_prefix() {
        let a = client_key("192.0.2.1".parse().unwrap(), 24, 56);
        let b = client_key("192.0.2.200".parse().unwrap(), 24, 56);
        let c = client_key("192.0.3.1".parse().unwrap(), 24, 56);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let d = client_key("2001:db8:0:1::1".parse().unwrap(), 24, 56);
        let e = client_key("2001:db8:0:1:ffff::1".parse().unwrap(), 24, 56);
        assert_eq!(d, e);
        assert_eq!(client_key("10.0.0.1".parse().unwrap(), 0, 0)[1..5], [0; 4]);
    }
}
