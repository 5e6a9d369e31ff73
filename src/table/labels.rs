//! Metric label ids: the names of zones, services and targets interned process-wide into
//! small ids (so a count keeps its name across configuration changes), the ids a routing table
//! holds ([`TableLabels`]), and one query's labels packed into a `u64` ([`QueryKey`]). See
//! `dns::stats` for how queries are counted and what the label values are.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use hickory_proto::op::ResponseCode;
use rustc_hash::{FxHashMap, FxHashSet};

use super::service::ServiceAnswer;

/// Names of the rcode label, by [`rcode_of`].
pub const RCODES: [&str; 7] = [
    "noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other",
];

/// Label value of a target answer for the fallback CNAME.
const FALLBACK_TARGET: &str = "(fallback)";

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
const fn rcode_index(code: u16) -> u8 {
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

/// Index into [`RCODES`] of a hickory response code.
#[inline]
pub fn rcode_of(code: ResponseCode) -> u8 {
    rcode_index(u16::from(code))
}

/// Bits of a label id in a [`QueryKey`].
const ID_BITS: u32 = 28;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// Names kept interned, with their series, after the last table that used them is dropped
/// (renamed or removed services and targets). Beyond it the oldest are reclaimed: the name
/// and its `steerd_dns_queries_total` series are dropped, and the id may name another.
pub const MAX_IDLE_LABELS: usize = 1024;

/// `refs` of a name that is never reclaimed (`""`, and names tests pin).
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
/// from every holder ([`ForgetIds`]) before the id is given to another name.
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
    /// Every live holder of counts by id, to drop the counts of reclaimed ids.
    stats: Vec<Weak<dyn ForgetIds>>,
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
        let mut freed = FxHashSet::default();
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
        for holder in self.stats.iter().filter_map(Weak::upgrade) {
            holder.forget(&freed);
        }
    }

    fn register(&mut self, holder: Weak<dyn ForgetIds>) {
        if self.stats.len() >= self.stats_gc_at {
            self.stats.retain(|w| w.strong_count() > 0);
            self.stats_gc_at = (2 * self.stats.len()).max(64);
        }
        self.stats.push(holder);
    }

    fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.entries.get(id as usize)?.as_ref().map(|e| &e.name)
    }

    /// Names interned (held, pinned or idle).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

static LABELS: LazyLock<Mutex<Interner>> =
    LazyLock::new(|| Mutex::new(Interner::new(MAX_IDLE_LABELS)));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keep counts by label id: told which ids are reclaimed, before they name other texts.
pub(super) trait ForgetIds: Send + Sync {
    /// Drop every count under one of these ids.
    fn forget(&self, ids: &FxHashSet<u32>);
}

/// Tell `holder` of every id reclaimed from now on, while it lives.
pub(super) fn register(holder: Weak<dyn ForgetIds>) {
    lock(&LABELS).register(holder);
}

/// The interned names, locked: no id is reclaimed (and given to another text) while held.
pub(super) struct Names(MutexGuard<'static, Interner>);

impl Names {
    pub(super) fn lock() -> Self {
        Self(lock(&LABELS))
    }

    /// The text of `id` (`""` for an unknown id).
    pub(super) fn name(&self, id: u32) -> String {
        self.0.name(id).map(|n| n.to_string()).unwrap_or_default()
    }
}

/// The `target` label value of a steered answer.
pub(super) fn target_label(a: &ServiceAnswer) -> &str {
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

/// The id of a label value, pinned: the same id for the same text for the process' life.
#[cfg(test)]
pub fn intern(name: &str) -> u32 {
    lock(&LABELS).pin(name)
}

/// The text of a label id (`""` for an unknown id).
#[cfg(test)]
pub fn label(id: u32) -> Arc<str> {
    let l = lock(&LABELS);
    l.name(id)
        .or_else(|| l.name(0))
        .expect("id 0 is pinned")
        .clone()
}

/// Label values interned process-wide (held by a table, pinned, or idle).
#[cfg(test)]
pub fn interned_labels() -> usize {
    lock(&LABELS).len()
}

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

    #[cfg(test)]
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

#[cfg(test)]
mod tests;
