//! The routing table: an immutable, precomputed snapshot of everything the DNS path needs,
//! published through an [`ArcSwap`]. The control plane builds a new table (see `policy::compile`)
//! and swaps it in; each query does exactly one `load()`. The table is data: the DNS path reads
//! it (and counts into it), nothing here knows the DNS path.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use hickory_proto::rr::{Name, Record, RecordType};
use rustc_hash::{FxHashMap, FxHashSet};

pub mod counters;
pub mod labels;
pub mod queries;
pub mod service;
pub mod shard;
pub mod wire;

pub use counters::AnswerCounters;
pub use labels::{Proto, QueryKey, TableLabels};
pub use service::{Choice, ClientAddr, CompiledService, Selector, ServiceAnswer, WeightedMember};
pub use shard::{SHARDS, counter_shard, set_counter_shard};
pub use wire::{Account, Class, FastEntry, FastNode, Sections, Template};

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
    pub fast_nx: Vec<Option<Template>>,
    /// Where answers are counted (shared by the tables of one configuration).
    pub counters: Arc<AnswerCounters>,
    /// Services with a cell whose every candidate is down.
    pub all_down: Vec<String>,
    /// Metric label ids of the zones, services and answers (set by `dns::precompute`, else
    /// on first use); see [`RoutingTable::labels`].
    pub labels: OnceLock<TableLabels>,
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

    /// The metric label ids of this table's names, interned on first use (compiling a table
    /// does it: `dns::precompute`). The table must not gain zones or services afterwards.
    #[inline]
    pub fn labels(&self) -> &TableLabels {
        self.labels.get_or_init(|| {
            // One lock of the interner for the whole table.
            let name = |n: &Name| n.to_lowercase().to_string();
            TableLabels::from_names(
                self.zones.iter().map(|z| name(&z.apex)),
                self.services.iter().map(|s| name(&s.name)),
                self.services
                    .iter()
                    .map(|s| s.answers.iter().map(labels::target_label)),
            )
        })
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
            labels: OnceLock::new(),
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
}
