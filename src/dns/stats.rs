//! DNS query metrics: queries by service, answer target, rcode, protocol and ECS presence, and
//! the response latency per protocol, counted on the DNS path at a cost of a few nanoseconds.
//!
//! # How queries are counted
//!
//! Every label value is a small integer on the query path:
//!
//! - service and target names are *interned* process-wide into ids: while a routing table
//!   holds a name (its [`TableLabels`], computed once when it is compiled by
//!   `fast::precompute`; the fast path's precomputed answers carry the ids) its id does not
//!   change, so a count is never relabelled by a configuration change (targets renamed,
//!   reordered, services added or removed). A name no table holds any more keeps its id and
//!   series until more than [`MAX_IDLE_LABELS`] such names pile up (configurations with
//!   ever-new names); then the oldest are reclaimed with their series, so the names and
//!   series kept are bounded by the configuration plus that many;
//! - rcode, protocol and ECS presence are a few bits.
//!
//! They are packed into one `u64` ([`QueryKey`]). The counts live in [`QueryStats`], which the
//! routing table carries inside its `Arc<AnswerCounters>` (shared by every table of a
//! configuration, as the answer counters are). It is split into per-thread shards (the
//! thread's counter shard, see `table::counter_shard`), each an uncontended mutex over a hash
//! map from key to count plus the latency histograms, padded to its own cache lines. The UDP
//! workers take their shard's lock once per `recvmmsg` batch; the hickory path once per query.
//! Names are looked up only when the metrics are read ([`QueryStats::snapshot`], the
//! [`collector`]).
//!
//! # Label values
//!
//! - `service`: the steered service the answer came from (`www.example.com.`, lower case,
//!   with the final dot), also when a static CNAME led to it; for every other answer from a
//!   zone we serve (static records, NODATA, NXDOMAIN, referrals) the zone's apex
//!   (`example.com.`); `""` when no zone was consulted: REFUSED (a name outside our zones, a
//!   zone transfer, a class other than IN), FORMERR, NOTIMP and BADVERS.
//! - `target`: the target(s) of a steered answer, by configuration name, joined with `+` in
//!   the answer's order when it names several (so every query counts once); `(fallback)` for
//!   the fallback CNAME of a fail-closed service whose targets are all down; `""` for
//!   everything else (static data, errors, SERVFAIL of an all-down service).
//! - `rcode`: `noerror`, `nxdomain`, `servfail`, `refused`, `formerr`, `notimp`, or `other`
//!   (BADVERS and anything else).
//! - `proto`: `udp` or `tcp`.
//! - `ecs`: `true` when the query carried a well-formed EDNS Client Subnet option (the one the
//!   response echoes), else `false` (a malformed one is answered FORMERR with `false`).
//!
//! The latency is measured from the moment the query was taken from the socket to the moment
//! the response was handed back to the kernel. The UDP fast engine measures it per
//! `recvmmsg`/`sendmmsg` batch (every query of a batch gets the batch's time: from the end of
//! `recvmmsg` to the end of `sendmmsg`); the hickory path (TCP, and UDP with
//! `udp_engine = "hickory"`) from our handler being called, after hickory-server parsed the
//! query, to the response being queued for sending.
//!
//! Packets hickory-server cannot parse at all (TCP, or UDP with `udp_engine = "hickory"`) are
//! answered FORMERR by hickory-server itself without reaching our handler, so they are not
//! counted there; the fast UDP engine counts them (`formerr`, service `""`).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus::core::{Collector, Desc};
use prometheus::proto;
use rustc_hash::FxHashMap;

use crate::table::{RoutingTable, ServiceAnswer, TableHandle};

/// Names of the rcode label, by [`rcode_index`].
pub const RCODES: [&str; 7] = [
    "noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other",
];

/// Upper bounds (seconds) of the latency histogram's buckets, 10 µs to 100 ms.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];
/// The same bounds in nanoseconds.
const BUCKET_NS: [u64; 13] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Label value of a target answer for the fallback CNAME.
pub const FALLBACK_TARGET: &str = "(fallback)";

/// Transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Udp = 0,
    Tcp = 1,
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::Udp, Proto::Tcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// Index into [`RCODES`] of a (possibly extended) response code.
#[inline]
pub const fn rcode_index(code: u16) -> u8 {
    match code {
        0 => 0,
        3 => 1,
        2 => 2,
        5 => 3,
        1 => 4,
        4 => 5,
        _ => 6,
    }
}

/// [`rcode_index`] of a hickory response code.
#[inline]
pub fn rcode_of(code: ResponseCode) -> u8 {
    rcode_index(u16::from(code))
}

// ---------------------------------------------------------------------------------------------
// Label ids
// ---------------------------------------------------------------------------------------------

/// Bits of a label id in a [`QueryKey`].
const ID_BITS: u32 = 28;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// Names kept interned, with their series, after the last table that used them is dropped
/// (renamed or removed services and targets). Beyond it the oldest are reclaimed: the name
/// and its `steerd_dns_queries_total` series are dropped, and the id may name another.
pub const MAX_IDLE_LABELS: usize = 1024;

/// `refs` of a name that is never reclaimed (`""`, [`intern`]).
const PINNED: u32 = u32::MAX;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    /// Label sets ([`TableLabels`]) holding the id, or [`PINNED`].
    refs: u32,
    /// Its key in `Interner::idle` while no label set holds it; 0 otherwise.
    idle: u64,
}

/// Interned label values; id 0 is `""`. An id names one text while a routing table holds
/// it (and its counts are counted under that text); a name no table holds stays (idle) until
/// more than `max_idle` are, then the oldest idle ids are reclaimed: their counts are dropped
/// from every [`QueryStats`] before the id is given to another name.
#[derive(Debug)]
struct Interner {
    ids: FxHashMap<Arc<str>, u32>,
    /// By id; None: a free id (in `free`).
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Idle ids by when they became idle (oldest first).
    idle: BTreeMap<u64, u32>,
    seq: u64,
    max_idle: usize,
    /// The shards of every live [`QueryStats`], to drop the counts of reclaimed ids.
    stats: Vec<Weak<[Shard]>>,
    stats_gc_at: usize,
}

impl Interner {
    fn new(max_idle: usize) -> Self {
        let mut i = Self {
            ids: FxHashMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
            idle: BTreeMap::new(),
            seq: 0,
            max_idle,
            stats: Vec::new(),
            stats_gc_at: 64,
        };
        i.pin("");
        i
    }

    /// The id of `name`, held once more (0 once ids run out, which the bound prevents).
    fn acquire(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            let e = self.entries[id as usize].as_mut().expect("interned id");
            if e.refs != PINNED {
                e.refs += 1;
                if e.idle != 0 {
                    self.idle.remove(&e.idle);
                    e.idle = 0;
                }
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None if (self.entries.len() as u64) <= ID_MASK => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
            None => return 0,
        };
        let name: Arc<str> = Arc::from(name);
        self.ids.insert(name.clone(), id);
        self.entries[id as usize] = Some(Entry {
            name,
            refs: 1,
            idle: 0,
        });
        id
    }

    /// The id of `name`, never reclaimed.
    fn pin(&mut self, name: &str) -> u32 {
        let id = self.acquire(name);
        if let Some(e) = self.entries[id as usize].as_mut() {
            e.refs = PINNED;
        }
        id
    }

    /// Let go of one hold of `id`; with none left it becomes idle.
    fn release(&mut self, id: u32) {
        let Some(e) = self.entries.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if e.refs == PINNED || e.refs == 0 {
            return;
        }
        e.refs -= 1;
        if e.refs == 0 {
            self.seq += 1;
            e.idle = self.seq;
            self.idle.insert(self.seq, id);
        }
    }

    /// Reclaim the oldest idle ids beyond `max_idle`, and drop their counts.
    fn reclaim(&mut self) {
        if self.idle.len() <= self.max_idle {
            return;
        }
        let mut freed = rustc_hash::FxHashSet::default();
        while self.idle.len() > self.max_idle {
            let Some((_, id)) = self.idle.pop_first() else {
                break;
            };
            if let Some(e) = self.entries[id as usize].take() {
                self.ids.remove(&e.name);
            }
            self.free.push(id);
            freed.insert(id);
        }
        self.stats.retain(|w| w.strong_count() > 0);
        for shards in self.stats.iter().filter_map(Weak::upgrade) {
            for shard in shards.iter() {
                lock(&shard.0)
                    .counts
                    .retain(|k, _| !freed.contains(&k.service()) && !freed.contains(&k.target()));
            }
        }
    }

    fn register(&mut self, shards: &Arc<[Shard]>) {
        if self.stats.len() >= self.stats_gc_at {
            self.stats.retain(|w| w.strong_count() > 0);
            self.stats_gc_at = (2 * self.stats.len()).max(64);
        }
        self.stats.push(Arc::downgrade(shards));
    }

    fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.entries.get(id as usize)?.as_ref().map(|e| &e.name)
    }

    /// Names interned (held, pinned or idle).
    fn len(&self) -> usize {
        self.ids.len()
    }
}

static LABELS: LazyLock<Mutex<Interner>> =
    LazyLock::new(|| Mutex::new(Interner::new(MAX_IDLE_LABELS)));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The id of a label value, pinned: the same id for the same text for the process' life
/// (fixed names and tests; a table's names are held by its [`TableLabels`]).
pub fn intern(name: &str) -> u32 {
    lock(&LABELS).pin(name)
}

/// The text of a label id (`""` for an unknown id).
pub fn label(id: u32) -> Arc<str> {
    let l = lock(&LABELS);
    l.name(id)
        .or_else(|| l.name(0))
        .expect("id 0 is pinned")
        .clone()
}

/// Label values interned process-wide (held by a table, pinned, or idle: at most
/// [`MAX_IDLE_LABELS`] of these).
pub fn interned_labels() -> usize {
    lock(&LABELS).len()
}

/// The `target` label value of a steered answer.
pub fn target_label(a: &ServiceAnswer) -> &str {
    if a.servfail {
        ""
    } else if a.targets.is_empty() {
        if a.cname.is_some() {
            FALLBACK_TARGET
        } else {
            ""
        }
    } else {
        &a.target
    }
}

/// A routing table's names as label ids: zone apexes, service names, answer targets. It
/// holds its ids while it lives (so the ids keep naming these texts), and lets go of them
/// when dropped (with the table).
#[derive(Debug, Default)]
pub struct TableLabels {
    zones: Box<[u32]>,
    services: Box<[u32]>,
    targets: Box<[Box<[u32]>]>,
}

impl TableLabels {
    /// Intern every name of `table` (one lock for the whole table).
    pub fn of(table: &RoutingTable) -> Self {
        let name = |n: &hickory_proto::rr::Name| n.to_lowercase().to_string();
        Self::from_names(
            table.zones.iter().map(|z| name(&z.apex)),
            table.services.iter().map(|s| name(&s.name)),
            table
                .services
                .iter()
                .map(|s| s.answers.iter().map(target_label)),
        )
    }

    /// Intern these zone apexes, service names and answer targets (per service).
    pub fn from_names<Z, S, T, A>(zones: Z, services: S, targets: T) -> Self
    where
        Z: IntoIterator<Item: AsRef<str>>,
        S: IntoIterator<Item: AsRef<str>>,
        T: IntoIterator<Item = A>,
        A: IntoIterator<Item: AsRef<str>>,
    {
        let mut l = lock(&LABELS);
        let labels = Self {
            zones: zones.into_iter().map(|n| l.acquire(n.as_ref())).collect(),
            services: services
                .into_iter()
                .map(|n| l.acquire(n.as_ref()))
                .collect(),
            targets: targets
                .into_iter()
                .map(|a| a.into_iter().map(|n| l.acquire(n.as_ref())).collect())
                .collect(),
        };
        // Ids let go of by dropped tables are reclaimed here, on the control plane.
        l.reclaim();
        labels
    }

    /// Label id of zone `zone`'s apex.
    #[inline]
    pub fn zone(&self, zone: u32) -> u32 {
        self.zones.get(zone as usize).copied().unwrap_or(0)
    }

    /// Label id of service `service`'s name.
    #[inline]
    pub fn service(&self, service: u32) -> u32 {
        self.services.get(service as usize).copied().unwrap_or(0)
    }

    /// Label id of the target(s) of answer `answer` of service `service`.
    #[inline]
    pub fn target(&self, service: u32, answer: usize) -> u32 {
        self.targets
            .get(service as usize)
            .and_then(|t| t.get(answer))
            .copied()
            .unwrap_or(0)
    }

    /// The (service, target) ids of an answer: the steered service's if any, else the zone's.
    #[inline]
    pub fn answer(&self, steered: Option<(u32, usize)>, zone: Option<u32>) -> (u32, u32) {
        match (steered, zone) {
            (Some((s, i)), _) => (self.service(s), self.target(s, i)),
            (None, Some(z)) => (self.zone(z), 0),
            (None, None) => (0, 0),
        }
    }
}

impl Drop for TableLabels {
    fn drop(&mut self) {
        let mut l = lock(&LABELS);
        let ids = self.zones.iter().chain(&*self.services);
        for &id in ids.chain(self.targets.iter().flat_map(|t| t.iter())) {
            l.release(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and counters
// ---------------------------------------------------------------------------------------------

/// One query's labels packed in a `u64`: service id (28 bits), target id (28 bits), rcode
/// index (3 bits), protocol (1 bit), ECS (1 bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct QueryKey(u64);

const TARGET_SHIFT: u32 = ID_BITS;
const RCODE_SHIFT: u32 = 2 * ID_BITS;
const PROTO_SHIFT: u32 = RCODE_SHIFT + 3;
const ECS_SHIFT: u32 = PROTO_SHIFT + 1;

impl QueryKey {
    #[inline]
    pub const fn new(service: u32, target: u32, rcode: u8, proto: Proto, ecs: bool) -> Self {
        Self(
            (service as u64 & ID_MASK)
                | (target as u64 & ID_MASK) << TARGET_SHIFT
                | ((rcode & 7) as u64) << RCODE_SHIFT
                | (proto as u64) << PROTO_SHIFT
                | (ecs as u64) << ECS_SHIFT,
        )
    }

    /// A FORMERR answered before the question was read: no service, no target, no ECS.
    #[inline]
    pub const fn formerr(proto: Proto) -> Self {
        Self::new(0, 0, rcode_index(1), proto, false)
    }

    #[inline]
    pub const fn with_ecs(self, ecs: bool) -> Self {
        Self(self.0 & !(1 << ECS_SHIFT) | (ecs as u64) << ECS_SHIFT)
    }

    #[inline]
    pub const fn with_proto(self, proto: Proto) -> Self {
        Self(self.0 & !(1 << PROTO_SHIFT) | (proto as u64) << PROTO_SHIFT)
    }

    pub const fn service(self) -> u32 {
        (self.0 & ID_MASK) as u32
    }

    pub const fn target(self) -> u32 {
        (self.0 >> TARGET_SHIFT & ID_MASK) as u32
    }

    pub const fn rcode(self) -> u8 {
        (self.0 >> RCODE_SHIFT & 7) as u8
    }

    pub const fn proto(self) -> Proto {
        if self.0 >> PROTO_SHIFT & 1 == 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        }
    }

    pub const fn ecs(self) -> bool {
        self.0 >> ECS_SHIFT & 1 == 1
    }
}

/// Latency histogram of one shard and protocol: per-bucket (not cumulative) counts, the last
/// one above every bound, and the sum.
#[derive(Debug, Clone, Copy, Default)]
struct Hist {
    buckets: [u64; BUCKET_NS.len() + 1],
    sum_ns: u64,
}

impl Hist {
    #[inline]
    fn observe_n(&mut self, ns: u64, n: u64) {
        let i = BUCKET_NS.partition_point(|&b| b < ns);
        self.buckets[i] += n;
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    fn add(&mut self, o: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
    }
}

#[derive(Debug, Default)]
struct ShardData {
    counts: FxHashMap<QueryKey, u64>,
    latency: [Hist; 2],
}

/// One shard, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<ShardData>);

/// Query counts and latency histograms, sharded per thread (see the module documentation).
#[derive(Debug)]
pub struct QueryStats {
    shards: Arc<[Shard]>,
}

impl Default for QueryStats {
    fn default() -> Self {
        Self::new()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `CLOCK_MONOTONIC` in nanoseconds: what `Instant::now` reads, without its checks (the UDP
/// workers read it twice per batch).
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

impl QueryStats {
    pub fn new() -> Self {
        let shards: Arc<[Shard]> = (0..crate::table::SHARDS)
            .map(|_| Shard::default())
            .collect();
        lock(&LABELS).register(&shards);
        Self { shards }
    }

    #[inline]
    fn shard(&self) -> MutexGuard<'_, ShardData> {
        lock(&self.shards[crate::table::counter_shard() % self.shards.len()].0)
    }

    /// Count one query answered after `elapsed`.
    #[inline]
    pub fn record(&self, key: QueryKey, elapsed: Duration) {
        let mut s = self.shard();
        *s.counts.entry(key).or_insert(0) += 1;
        s.latency[key.proto() as usize].observe_n(nanos(elapsed), 1);
    }

    /// Count a batch of queries over `proto`, each answered after `elapsed_ns` nanoseconds
    /// (one lock).
    #[inline]
    pub fn record_batch(&self, keys: &[QueryKey], proto: Proto, elapsed_ns: u64) {
        let Some(&first) = keys.first() else {
            return;
        };
        let mut s = self.shard();
        // Runs of equal keys (a busy name) cost one map update.
        let (mut run, mut n) = (first, 0u64);
        for &k in keys {
            if k != run {
                *s.counts.entry(run).or_insert(0) += n;
                (run, n) = (k, 0);
            }
            n += 1;
        }
        *s.counts.entry(run).or_insert(0) += n;
        s.latency[proto as usize].observe_n(elapsed_ns, keys.len() as u64);
    }

    /// Every shard summed, with label ids resolved to names.
    pub fn snapshot(&self) -> Snapshot {
        // The interner first (as `Interner::reclaim` takes it before the shards): no id is
        // reclaimed and given to another name between reading the counts and naming them.
        let labels = lock(&LABELS);
        let mut counts: FxHashMap<QueryKey, u64> = FxHashMap::default();
        let mut latency = [Hist::default(); 2];
        for shard in self.shards.iter() {
            let s = lock(&shard.0);
            for (k, v) in &s.counts {
                *counts.entry(*k).or_insert(0) += v;
            }
            for (a, b) in latency.iter_mut().zip(&s.latency) {
                a.add(b);
            }
        }
        let name =
            |id: u32| -> String { labels.name(id).map(|n| n.to_string()).unwrap_or_default() };
        let mut queries = BTreeMap::new();
        for (k, v) in counts {
            let l = QueryLabels {
                service: name(k.service()),
                target: name(k.target()),
                rcode: RCODES[k.rcode() as usize % RCODES.len()],
                proto: k.proto().as_str(),
                ecs: k.ecs(),
            };
            *queries.entry(l).or_insert(0) += v;
        }
        drop(labels);
        let latency = latency.map(|h| {
            let mut cumulative = 0;
            let buckets = LATENCY_BUCKETS
                .iter()
                .zip(&h.buckets)
                .map(|(le, n)| {
                    cumulative += n;
                    (*le, cumulative)
                })
                .collect();
            LatencySnapshot {
                count: h.buckets.iter().sum(),
                sum_seconds: h.sum_ns as f64 / 1e9,
                buckets,
            }
        });
        Snapshot { queries, latency }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// The labels of one `steerd_dns_queries_total` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryLabels {
    pub service: String,
    pub target: String,
    pub rcode: &'static str,
    pub proto: &'static str,
    pub ecs: bool,
}

/// One protocol's latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Responses measured (the `+Inf` bucket).
    pub count: u64,
    pub sum_seconds: f64,
    /// (upper bound in seconds, cumulative count), for [`LATENCY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
}

/// Query counts and latency at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub queries: BTreeMap<QueryLabels, u64>,
    /// Indexed by [`Proto`].
    pub latency: [LatencySnapshot; 2],
}

impl Snapshot {
    /// The count of one label set (0 if never seen).
    pub fn count(&self, service: &str, target: &str, rcode: &str, proto: Proto, ecs: bool) -> u64 {
        self.queries
            .iter()
            .filter(|(l, _)| {
                l.service == service
                    && l.target == target
                    && l.rcode == rcode
                    && l.proto == proto.as_str()
                    && l.ecs == ecs
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every query counted.
    pub fn total(&self) -> u64 {
        self.queries.values().sum()
    }

    pub fn latency(&self, proto: Proto) -> &LatencySnapshot {
        &self.latency[proto as usize]
    }
}

/// The query statistics of the table in force.
pub fn snapshot(table: &TableHandle) -> Snapshot {
    table.load().counters.queries.snapshot()
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

pub const QUERIES_METRIC: &str = "steerd_dns_queries_total";
pub const LATENCY_METRIC: &str = "steerd_dns_response_duration_seconds";
const QUERIES_HELP: &str =
    "DNS queries answered, by service, answer target, response code, protocol and ECS presence.";
const LATENCY_HELP: &str =
    "Time from taking a DNS query off the socket to handing its response to the kernel.";

/// A Prometheus collector of the query statistics carried by the table in force, read at
/// collect time: `steerd_dns_queries_total{ecs,proto,rcode,service,target}` and
/// `steerd_dns_response_duration_seconds{proto}`.
pub struct DnsCollector {
    table: TableHandle,
    descs: [Desc; 2],
}

impl std::fmt::Debug for DnsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCollector").finish_non_exhaustive()
    }
}

const QUERY_LABELS: [&str; 5] = ["ecs", "proto", "rcode", "service", "target"];

/// The collector to register (e.g. `registry.register(Box::new(collector(table)))`).
pub fn collector(table: TableHandle) -> DnsCollector {
    let desc = |name: &str, help: &str, labels: &[&str]| {
        Desc::new(
            name.into(),
            help.into(),
            labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .expect("valid metric description")
    };
    DnsCollector {
        table,
        descs: [
            desc(QUERIES_METRIC, QUERIES_HELP, &QUERY_LABELS),
            desc(LATENCY_METRIC, LATENCY_HELP, &["proto"]),
        ],
    }
}

fn label_pair(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// The two metric families of a snapshot.
pub fn families(snap: &Snapshot) -> Vec<proto::MetricFamily> {
    let mut queries = proto::MetricFamily::default();
    queries.set_name(QUERIES_METRIC.into());
    queries.set_help(QUERIES_HELP.into());
    queries.set_field_type(proto::MetricType::COUNTER);
    let metrics = snap
        .queries
        .iter()
        .map(|(l, v)| {
            let mut m = proto::Metric::default();
            // Sorted by label name, as prometheus' own vectors are.
            m.set_label(vec![
                label_pair("ecs", if l.ecs { "true" } else { "false" }),
                label_pair("proto", l.proto),
                label_pair("rcode", l.rcode),
                label_pair("service", &l.service),
                label_pair("target", &l.target),
            ]);
            let mut c = proto::Counter::default();
            c.set_value(*v as f64);
            m.set_counter(c);
            m
        })
        .collect();
    queries.set_metric(metrics);

    let mut latency = proto::MetricFamily::default();
    latency.set_name(LATENCY_METRIC.into());
    latency.set_help(LATENCY_HELP.into());
    latency.set_field_type(proto::MetricType::HISTOGRAM);
    let metrics = Proto::ALL
        .iter()
        .map(|p| {
            let s = snap.latency(*p);
            let mut h = proto::Histogram::default();
            h.set_sample_count(s.count);
            h.set_sample_sum(s.sum_seconds);
            h.set_bucket(
                s.buckets
                    .iter()
                    .map(|(le, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*le);
                        b.set_cumulative_count(*n);
                        b
                    })
                    .collect(),
            );
            let mut m = proto::Metric::default();
            m.set_label(vec![label_pair("proto", p.as_str())]);
            m.set_histogram(h);
            m
        })
        .collect();
    latency.set_metric(metrics);
    vec![queries, latency]
}

impl Collector for DnsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        families(&snapshot(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_packs_and_unpacks_every_field() {
        let k = QueryKey::new(ID_MASK as u32, 12345, 6, Proto::Tcp, true);
        assert_eq!(k.service(), ID_MASK as u32);
        assert_eq!(k.target(), 12345);
        assert_eq!(k.rcode(), 6);
        assert_eq!(k.proto(), Proto::Tcp);
        assert!(k.ecs());
        let k = k.with_ecs(false).with_proto(Proto::Udp);
        assert_eq!(
            (k.service(), k.target(), k.rcode()),
            (ID_MASK as u32, 12345, 6)
        );
        assert_eq!(k.proto(), Proto::Udp);
        assert!(!k.ecs());
        let f = QueryKey::formerr(Proto::Udp);
        assert_eq!((f.service(), f.target()), (0, 0));
        assert_eq!(RCODES[f.rcode() as usize], "formerr");
    }

    #[test]
    fn rcodes_map_to_their_names() {
        let names: Vec<&str> = [
            ResponseCode::NoError,
            ResponseCode::NXDomain,
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::FormErr,
            ResponseCode::NotImp,
            ResponseCode::BADVERS,
            ResponseCode::YXDomain,
        ]
        .into_iter()
        .map(|c| RCODES[rcode_of(c) as usize])
        .collect();
        assert_eq!(
            names,
            [
                "noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other", "other"
            ]
        );
    }

    #[test]
    fn interned_ids_are_stable_and_distinct() {
        let a = intern("stats-test-a.example.");
        let b = intern("stats-test-b.example.");
        assert_ne!(a, b);
        assert_ne!(a, 0);
        assert_eq!(intern("stats-test-a.example."), a);
        assert_eq!(intern(""), 0);
        assert_eq!(&*label(a), "stats-test-a.example.");
        assert_eq!(&*label(u32::MAX), "");
    }

    #[test]
    fn interner_reclaims_the_oldest_idle_names_beyond_its_bound() {
        let mut i = Interner::new(2);
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| i.acquire(n));
        let pinned = i.pin("p");
        assert_eq!(i.acquire("a"), a, "the same text, the same id");
        i.release(a);
        for id in [a, b, c, d, pinned] {
            i.release(id);
        }
        // Idle in the order a, b, c, d (a was held twice); two idle names are kept.
        i.reclaim();
        assert_eq!(i.len(), 1 + 2 + 1, "\"\", c, d and the pinned name");
        assert_eq!(i.name(a), None);
        assert_eq!(i.name(b), None);
        assert_eq!(i.name(c).map(|n| &**n), Some("c"));
        assert_eq!(i.name(pinned).map(|n| &**n), Some("p"));
        // A held idle name is no longer idle: d is reclaimed before it.
        assert_eq!(i.acquire("c"), c);
        let e = i.acquire("e");
        assert!([a, b].contains(&e), "a freed id is given again");
        i.release(e);
        let f = i.acquire("f");
        i.release(f);
        i.reclaim();
        assert_eq!(i.name(d), None, "the oldest idle name went first");
        assert_eq!(i.name(c).map(|n| &**n), Some("c"));
        assert_eq!(i.len(), 1 + 1 + 2 + 1, "\"\", c held, e and f idle, p");
    }

    #[test]
    fn names_no_table_holds_are_bounded() {
        // Configurations with ever-new names (reloads, API writes): the names of dropped
        // tables do not pile up beyond the bound.
        let before = interned_labels();
        for i in 0..3 * MAX_IDLE_LABELS {
            let svc = format!("churn-{i}.example.");
            let tgt = format!("churn-cdn-{i}");
            drop(TableLabels::from_names(["churn.example."], [svc], [[tgt]]));
        }
        // Slack for the names the other tests intern meanwhile.
        assert!(
            interned_labels() <= before + MAX_IDLE_LABELS + 256,
            "{} names interned, {before} before",
            interned_labels()
        );
    }

    #[test]
    fn counts_of_reclaimed_names_are_dropped_not_relabelled() {
        let stats = QueryStats::new();
        let held = TableLabels::from_names(["kept.example."], ["kept-svc.example."], [["kept"]]);
        let gone = TableLabels::from_names(["gone.example."], ["gone-svc.example."], [["gone"]]);
        for l in [&held, &gone] {
            let key = QueryKey::new(l.service(0), l.target(0, 0), 0, Proto::Udp, false);
            stats.record(key, Duration::from_micros(20));
        }
        let gone_ids = [gone.service(0), gone.target(0, 0)];
        assert_eq!(
            stats
                .snapshot()
                .count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
            1
        );
        drop(gone);
        // Still counted under its name while fewer names than the bound are idle…
        assert_eq!(
            stats
                .snapshot()
                .count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
            1
        );
        // … and dropped, not given to another name, once they are reclaimed.
        for i in 0..MAX_IDLE_LABELS + 300 {
            let svc = format!("new-{i}.example.");
            drop(TableLabels::from_names(
                ["new.example."],
                [svc],
                [["new-cdn"]],
            ));
        }
        let snap = stats.snapshot();
        assert_eq!(
            snap.count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
            0
        );
        assert_eq!(
            snap.count("kept-svc.example.", "kept", "noerror", Proto::Udp, false),
            1
        );
        assert_eq!(
            snap.total(),
            1,
            "no other name took the reclaimed counts: {snap:?}"
        );
        assert!(
            gone_ids
                .iter()
                .all(|&id| &*label(id) != "gone-svc.example.")
        );
    }

    #[test]
    fn shards_of_many_threads_sum_up() {
        let stats = Arc::new(QueryStats::new());
        let svc = intern("stats-test-svc.example.");
        let tgt = intern("stats-test-cdn");
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    if t % 2 == 0 {
                        crate::table::set_counter_shard(t + 1);
                    }
                    let key = QueryKey::new(svc, tgt, 0, Proto::Udp, t % 3 == 0);
                    for _ in 0..1000 {
                        stats.record(key, Duration::from_micros(20));
                    }
                    let batch = [key, key, QueryKey::formerr(Proto::Udp), key];
                    stats.record_batch(&batch, Proto::Udp, 200_000_000);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = stats.snapshot();
        let with_ecs = s.count(
            "stats-test-svc.example.",
            "stats-test-cdn",
            "noerror",
            Proto::Udp,
            true,
        );
        let without = s.count(
            "stats-test-svc.example.",
            "stats-test-cdn",
            "noerror",
            Proto::Udp,
            false,
        );
        // Threads 0 and 3 sent ECS.
        assert_eq!(with_ecs, 2 * 1003);
        assert_eq!(without, 4 * 1003);
        assert_eq!(s.count("", "", "formerr", Proto::Udp, false), 6);
        assert_eq!(s.total(), 6 * 1004);
        let udp = s.latency(Proto::Udp);
        assert_eq!(udp.count, 6 * 1004);
        // 20 µs lands in the 25 µs bucket; the 200 ms batch in no bucket but +Inf.
        assert_eq!(udp.buckets[0], (0.000_01, 0));
        assert_eq!(udp.buckets[1], (0.000_025, 6000));
        assert_eq!(udp.buckets.last().unwrap().1, 6000);
        assert!((udp.sum_seconds - (6000.0 * 20e-6 + 24.0 * 0.2)).abs() < 1e-6);
        assert_eq!(s.latency(Proto::Tcp).count, 0);
    }

    #[test]
    fn bucket_bounds_are_inclusive() {
        let mut h = Hist::default();
        h.observe_n(10_000, 1);
        h.observe_n(10_001, 2);
        h.observe_n(0, 1);
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 2);
        h.observe_n(u64::MAX, 1);
        assert_eq!(h.buckets[BUCKET_NS.len()], 1);
    }

    fn compile(text: &str) -> RoutingTable {
        let cfg = crate::config::parse(text, "stats test").unwrap();
        let geo = crate::geo::GeoData::new(None, cfg.countries.clone(), cfg.geo.nets.clone());
        crate::policy::compile(&cfg, &geo)
    }

    /// The fast path's metrics labels for one query.
    fn fast_labels(
        t: &RoutingTable,
        name: &str,
        ecs: bool,
    ) -> (String, String, &'static str, bool) {
        use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
        use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
        use hickory_proto::rr::{Name, RecordType};
        use std::str::FromStr;
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        if ecs {
            let mut e = Edns::new();
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                "81.2.69.0".parse().unwrap(),
                24,
                0,
            )));
            m.set_edns(e);
        }
        let mut out = [0u8; crate::dns::fast::MAX_FAST_RESPONSE];
        let q = m.to_vec().unwrap();
        let key = match crate::dns::fast::try_answer(t, &q, "192.0.2.1".parse().unwrap(), &mut out)
        {
            crate::dns::fast::FastOutcome::Answered(_, key) => key,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(key.proto(), Proto::Udp);
        (
            label(key.service()).to_string(),
            label(key.target()).to_string(),
            RCODES[key.rcode() as usize],
            key.ecs(),
        )
    }

    const DEMO: &str = include_str!("../../config/steerd.toml");

    #[test]
    fn fast_path_keys_name_the_answer_across_renames_and_reorders() {
        let a = compile(DEMO);
        let l = |svc: &str, tgt: &str, rc: &'static str, ecs: bool| {
            (svc.to_string(), tgt.to_string(), rc, ecs)
        };
        assert_eq!(
            fast_labels(&a, "assets.example.com.", false),
            l("assets.example.com.", "cdn-a", "noerror", false)
        );
        assert_eq!(
            fast_labels(&a, "ASSETS.example.com.", true),
            l("assets.example.com.", "cdn-a", "noerror", true)
        );
        assert_eq!(
            fast_labels(&a, "static.example.com.", false),
            l("example.com.", "", "noerror", false)
        );
        assert_eq!(
            fast_labels(&a, "nosuch.example.com.", true),
            l("example.com.", "", "nxdomain", true)
        );
        // Rename cdn-a, and put cdn-b first for assets: new table, new labels; the ids of
        // the names both tables share do not move.
        let renamed = DEMO.replace("\"cdn-a\"", "\"cdn-x\"").replace(
            "targets = [{ target = \"cdn-x\" }, { target = \"cdn-b\" }, { target = \"origin\" }]",
            "targets = [{ target = \"cdn-b\" }, { target = \"cdn-x\" }, { target = \"origin\" }]",
        );
        let b = compile(&renamed);
        assert_eq!(
            fast_labels(&b, "assets.example.com.", false),
            l("assets.example.com.", "cdn-b", "noerror", false)
        );
        assert_eq!(a.labels().service(3), b.labels().service(3));
        assert_eq!(a.labels().zone(0), b.labels().zone(0));
        assert_eq!(&*label(a.labels().zone(0)), "example.com.");
        // Every answer of the old table still resolves to its own names.
        assert_eq!(
            fast_labels(&a, "assets.example.com.", false),
            l("assets.example.com.", "cdn-a", "noerror", false)
        );
    }

    #[test]
    fn collector_renders_both_families() {
        let stats = QueryStats::new();
        let svc = intern("render.example.");
        stats.record(
            QueryKey::new(svc, 0, 1, Proto::Tcp, false),
            Duration::from_micros(60),
        );
        let fams = families(&stats.snapshot());
        let mut out = Vec::new();
        use prometheus::Encoder;
        prometheus::TextEncoder::new()
            .encode(&fams, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(
            "steerd_dns_queries_total{ecs=\"false\",proto=\"tcp\",rcode=\"nxdomain\",service=\"render.example.\",target=\"\"} 1\n"
        ), "{text}");
        assert!(
            text.contains(
                "steerd_dns_response_duration_seconds_bucket{proto=\"tcp\",le=\"0.0001\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "steerd_dns_response_duration_seconds_bucket{proto=\"tcp\",le=\"0.00005\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("steerd_dns_response_duration_seconds_count{proto=\"udp\"} 0\n"),
            "{text}"
        );
    }
}
