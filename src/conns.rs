//! Connection limits of the TCP listeners (DNS and admin): a cap per listener and per source,
//! first-message and idle timeouts (enforced by the connection loops), a descriptor budget
//! that keeps a reserve for the prober, and the `steerd_tcp_*` metrics.
//!
//! When a listener is full, a new connection closes an open one of the source with the most
//! connections open, the one of them that has made no progress (accepted, or completed a
//! message) for the longest time: idle and half-sent connections of the heaviest sources go
//! first, so a flood locks out neither new clients nor a client with a single connection
//! unless it comes from more sources than the cap. Connections over the per-source cap are
//! closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Caps and timeouts of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most.
    pub max: usize,
    /// Open connections from one source (an IPv4 address, an IPv6 /64) at most.
    pub per_source: usize,
    /// The first message (DNS query, HTTP request head) must be complete within this long of
    /// the connection opening; a later one within this long of its first byte.
    pub first_timeout: Duration,
    /// A connection with nothing in progress is closed after this long.
    pub idle_timeout: Duration,
}

/// Connections closed at once beyond the cap while evicted ones are still closing.
const EVICTION_SLACK: usize = 64;

/// Why a connection was refused or closed (metric label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Its first message (or a later one, once started) took longer than `first_timeout`.
    MessageTimeout,
    /// Nothing in progress for `idle_timeout`.
    IdleTimeout,
    /// The listener was full and this one had made no progress for the longest time.
    Evicted,
}

impl Closed {
    fn index(self) -> usize {
        self as usize
    }
    const ALL: [(Closed, &'static str); 3] = [
        (Closed::MessageTimeout, "message_timeout"),
        (Closed::IdleTimeout, "idle_timeout"),
        (Closed::Evicted, "evicted"),
    ];
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source already has `per_source` connections open.
    PerSource,
    /// Full, with too many evicted connections still closing.
    Full,
}

/// The source key of an address: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(a) >> 64 << 64) | 1,
        },
    }
}

/// One open connection, as its listener sees it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    source: u128,
    /// Connections open from its source (shared by them; changed under the state lock).
    source_open: Arc<AtomicUsize>,
    /// Milliseconds since the listener started at which the connection last made progress.
    progress_ms: AtomicU64,
    evicted: AtomicBool,
    evict: tokio::sync::Notify,
}

impl Conn {
    /// Resolves once the listener wants this connection closed (it was evicted).
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Arc<Conn>>,
    per_source: HashMap<u128, Arc<AtomicUsize>>,
    next_id: u64,
    /// Evicted connections whose task has not closed them yet.
    evicting: usize,
}

/// Counters of one listener.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_per_source: AtomicU64,
    refused_full: AtomicU64,
    closed: [AtomicU64; 3],
}

/// The connection table of one listener (DNS TCP on one address, or the admin API).
pub struct Tracker {
    /// "dns" or "admin" (the `listener` metric label).
    pub kind: &'static str,
    limits: ConnLimits,
    started: Instant,
    state: Mutex<State>,
    counters: Counters,
}

/// A connection's place in its listener; dropping it frees the place.
pub struct Permit {
    tracker: Arc<Tracker>,
    conn: Arc<Conn>,
}

impl Permit {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The connection made progress (accepted, or completed a message): it is evicted last.
    pub fn progress(&self) {
        self.conn
            .progress_ms
            .store(self.tracker.now_ms(), Ordering::Relaxed);
    }

    /// The connection is being closed for `why`.
    pub fn closing(&self, why: Closed) {
        self.tracker.counters.closed[why.index()].fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.tracker.lock();
        st.conns.remove(&self.conn.id);
        if self.conn.source_open.fetch_sub(1, Ordering::Relaxed) == 1 {
            st.per_source.remove(&self.conn.source);
        }
        if self.conn.evicted.load(Ordering::Relaxed) {
            st.evicting -= 1;
        }
    }
}

impl Tracker {
    pub fn new(kind: &'static str, limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            kind,
            limits,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent under every panic (plain inserts and removals).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Admit a new connection from `peer`, evicting the least active one when full.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refused> {
        let source = source_key(peer);
        let now = self.now_ms();
        let mut st = self.lock();
        let open_here = st
            .per_source
            .get(&source)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        if open_here >= self.limits.per_source {
            drop(st);
            self.counters
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerSource);
        }
        if st.conns.len() - st.evicting >= self.limits.max {
            if st.evicting >= EVICTION_SLACK {
                drop(st);
                self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Full);
            }
            let victim = st
                .conns
                .values()
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
                .min_by_key(|c| {
                    (
                        std::cmp::Reverse(c.source_open.load(Ordering::Relaxed)),
                        c.progress_ms.load(Ordering::Relaxed),
                    )
                })
                .cloned();
            if let Some(v) = victim {
                v.evicted.store(true, Ordering::Relaxed);
                v.evict.notify_one();
                st.evicting += 1;
                self.counters.closed[Closed::Evicted.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
        let source_open = st.per_source.entry(source).or_default().clone();
        source_open.fetch_add(1, Ordering::Relaxed);
        let id = st.next_id;
        st.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            source,
            source_open,
            progress_ms: AtomicU64::new(now),
            evicted: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        st.conns.insert(id, conn.clone());
        drop(st);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            tracker: self.clone(),
            conn,
        })
    }
}

/// Wait a little after `accept` failed, so that running out of descriptors (or any other
/// persistent error) does not spin the accept loop; logs it once a second at most.
pub async fn accept_error(kind: &str, e: &std::io::Error, last_log: &mut Option<Instant>) {
    if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        warn!(listener = kind, error = %e, "accept failed");
        *last_log = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The trackers of one server, for `/metrics`.
#[derive(Default, Clone)]
pub struct Registry {
    trackers: Arc<Mutex<Vec<Arc<Tracker>>>>,
    fd_limit: Arc<AtomicU64>,
}

impl Registry {
    pub fn add(&self, t: Arc<Tracker>) {
        self.trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(t);
    }

    /// The `steerd_tcp_*` and `steerd_fd_*` metric families.
    pub fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::core::Collector;
        use prometheus::{IntCounterVec, IntGaugeVec, Opts};
        let trackers = self
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let open = IntGaugeVec::new(
            Opts::new("steerd_tcp_connections", "Open TCP connections."),
            &["listener"],
        )
        .expect("metric");
        let limit = IntGaugeVec::new(
            Opts::new(
                "steerd_tcp_connections_limit",
                "Open TCP connections allowed (per listen address for dns, after the descriptor budget).",
            ),
            &["listener"],
        )
        .expect("metric");
        let accepted = IntCounterVec::new(
            Opts::new(
                "steerd_tcp_connections_accepted_total",
                "TCP connections accepted.",
            ),
            &["listener"],
        )
        .expect("metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "steerd_tcp_connections_refused_total",
                "TCP connections closed at once: per_source = the source had its maximum open, full = the listener was full.",
            ),
            &["listener", "reason"],
        )
        .expect("metric");
        let closed = IntCounterVec::new(
            Opts::new(
                "steerd_tcp_connections_closed_total",
                "TCP connections closed by steerd: message_timeout, idle_timeout, evicted (the listener was full).",
            ),
            &["listener", "reason"],
        )
        .expect("metric");
        for t in &trackers {
            let l = [t.kind];
            open.with_label_values(&l).add(t.open() as i64);
            limit.with_label_values(&l).set(t.limits.max as i64);
            let c = &t.counters;
            accepted
                .with_label_values(&l)
                .inc_by(c.accepted.load(Ordering::Relaxed));
            refused
                .with_label_values(&[t.kind, "per_source"])
                .inc_by(c.refused_per_source.load(Ordering::Relaxed));
            refused
                .with_label_values(&[t.kind, "full"])
                .inc_by(c.refused_full.load(Ordering::Relaxed));
            for (why, name) in Closed::ALL {
                closed
                    .with_label_values(&[t.kind, name])
                    .inc_by(c.closed[why.index()].load(Ordering::Relaxed));
            }
        }
        let fds = IntGaugeVec::new(
            Opts::new(
                "steerd_fd",
                "File descriptors: limit = RLIMIT_NOFILE (soft) at start, open = in use now.",
            ),
            &["kind"],
        )
        .expect("metric");
        fds.with_label_values(&["limit"])
            .set(self.fd_limit.load(Ordering::Relaxed) as i64);
        if let Some(n) = open_fds() {
            fds.with_label_values(&["open"]).set(n as i64);
        }
        let mut out = Vec::new();
        for c in [&open, &limit] {
            out.extend(c.collect());
        }
        for c in [&accepted, &refused, &closed] {
            out.extend(c.collect());
        }
        out.extend(fds.collect());
        out
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; the (soft, hard) limits in force after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        r.rlim_cur = r.rlim_max;
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// The soft RLIMIT_NOFILE.
pub fn nofile_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r.rlim_cur)
}

/// Descriptors open now (Linux: entries of /proc/self/fd).
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Fit the listeners' caps into the descriptors left once `reserve` and `fixed` (sockets and
/// files the server is about to open) are set aside: each entry is (label, number of
/// listeners with these limits, limits); the caps are lowered proportionally (to 8 at least)
/// when they do not fit, with a warning. Each listener may briefly hold `EVICTION_SLACK` more
/// while evicted connections close.
pub fn fit_budget(
    registry: &Registry,
    caps: &mut [(&'static str, usize, &mut ConnLimits)],
    reserve: usize,
    fixed: usize,
) {
    let Some(limit) = nofile_limit() else {
        return;
    };
    registry.fd_limit.store(limit, Ordering::Relaxed);
    let open = open_fds().unwrap_or(0);
    let avail = (limit as usize).saturating_sub(open + reserve + fixed);
    let want: usize = caps
        .iter()
        .map(|(_, n, c)| n * (c.max + EVICTION_SLACK))
        .sum();
    if want <= avail {
        info!(
            fd_limit = limit,
            fd_open = open,
            fd_reserve = reserve,
            "TCP connection caps fit the descriptor budget"
        );
        return;
    }
    let slack: usize = caps.iter().map(|(_, n, _)| n * EVICTION_SLACK).sum();
    let room = avail.saturating_sub(slack);
    let total: usize = caps.iter().map(|(_, n, c)| n * c.max).sum();
    for (kind, _, c) in caps.iter_mut() {
        let max = (c.max * room / total.max(1)).max(8);
        warn!(
            listener = *kind,
            configured = c.max,
            lowered_to = max,
            fd_limit = limit,
            fd_open = open,
            fd_reserve = reserve,
            "TCP connection cap lowered to fit RLIMIT_NOFILE minus the descriptor reserve \
             (raise LimitNOFILE / ulimit -n)"
        );
        c.max = max;
        c.per_source = c.per_source.min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_source: usize) -> ConnLimits {
        ConnLimits {
            max,
            per_source,
            first_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn per_source_cap_and_eviction_of_the_least_active() {
        let t = Tracker::new("dns", limits(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        let p1 = t.admit(a).unwrap();
        let p2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refused::PerSource));
        // Another address of the same IPv6 /64 is the same source.
        let p3 = t.admit(c).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        p1.progress();
        p3.progress();
        // Full: the one without progress since it was accepted (p2) is evicted.
        let p4 = t.admit(b).unwrap();
        assert!(p2.conn().evicted.load(Ordering::Relaxed));
        assert!(!p1.conn().evicted.load(Ordering::Relaxed));
        assert_eq!(t.open(), 4);
        drop(p2);
        assert_eq!(t.open(), 3);
        assert_eq!(t.lock().evicting, 0);
        // The source has room again.
        drop(p1);
        let _p5 = t.admit(a).unwrap();
        assert_eq!(
            t.admit("2001:db8::ffff".parse().unwrap()).map(|_| ()).err(),
            None
        );
        drop((p3, p4));
    }

    #[test]
    fn a_full_listener_evicts_from_the_source_with_the_most_connections() {
        let t = Tracker::new("admin", limits(4, 3));
        let lone: IpAddr = "192.0.2.9".parse().unwrap();
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        // The lone client's connection is the oldest.
        let old = t.admit(lone).unwrap();
        std::thread::sleep(Duration::from_millis(3));
        let f: Vec<Permit> = (0..3).map(|_| t.admit(flood).unwrap()).collect();
        let _new = t.admit("203.0.113.5".parse().unwrap()).unwrap();
        assert!(
            !old.conn().evicted.load(Ordering::Relaxed),
            "the lone client stays"
        );
        let evicted = f
            .iter()
            .filter(|p| p.conn().evicted.load(Ordering::Relaxed))
            .count();
        assert_eq!(evicted, 1, "one of the flooding source's connections goes");
        drop(f);
        assert!(
            t.lock().per_source.len() == 2,
            "the flooding source is forgotten"
        );
    }

    #[test]
    fn the_budget_lowers_caps_that_do_not_fit() {
        let r = Registry::default();
        let limit = nofile_limit().unwrap() as usize;
        let mut dns = limits(limit, 10);
        let mut admin = limits(limit / 4, 10);
        fit_budget(
            &r,
            &mut [("dns", 2, &mut dns), ("admin", 1, &mut admin)],
            64,
            0,
        );
        assert!(2 * dns.max + admin.max + 3 * EVICTION_SLACK + 64 <= limit.max(8 * 3 + 256));
        assert!(dns.max >= admin.max);
        let mut small = limits(10, 10);
        fit_budget(&r, &mut [("dns", 1, &mut small)], 64, 0);
        assert_eq!(small.max, 10, "a cap that fits is kept");
    }
}
