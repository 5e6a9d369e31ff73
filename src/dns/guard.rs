//! What protects the DNS path from abuse, as the listeners see it: the response rate limiter
//! and the DNS cookies of the configuration in force, swapped on reload (the limiter's
//! accounts are kept while its settings do not change), and their `steerd_rrl_*` and
//! `steerd_dns_cookies_*` counters (sharded per thread like the answer counters).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::config::ServerSettings;
use crate::dns::cookie::{self, Cookies};
use crate::dns::query::EdnsOpts;
use crate::dns::rrl::{Rrl, Verdict};
use crate::table::{Account, SHARDS, counter_shard};

/// The counters, by index.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Count {
    RrlDropped,
    RrlSlipped,
    RrlPassedByCookie,
    RrlExempt,
    /// Would have been dropped or slipped, sent because of `log_only`.
    RrlLogOnly,
    CookieClientOnly,
    CookieValid,
    CookieInvalid,
    CookieMalformed,
    BadCookieSent,
}

const COUNTS: usize = 10;
/// 16 counters = 128 bytes per shard: two threads never share a cache line.
const STRIDE: usize = 16;
const _: () = assert!(COUNTS <= STRIDE);

/// Counters shared by every guard of one server.
pub struct GuardStats {
    cells: Box<[AtomicU64]>,
}

impl Default for GuardStats {
    fn default() -> Self {
        Self {
            cells: (0..STRIDE * SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl GuardStats {
    #[inline]
    pub fn add(&self, c: Count) {
        self.cells[counter_shard() * STRIDE + c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, c: Count) -> u64 {
        (0..SHARDS)
            .map(|s| self.cells[s * STRIDE + c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// The time the guard needs, read once per batch of queries.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Seconds of a monotonic clock (rate limiting).
    pub mono: u32,
    /// Unix seconds, truncated to 32 bits (cookie timestamps, RFC 9018).
    pub unix: u32,
}

impl Now {
    /// The server's clock (a test's `ManualClock` decides the limiter's seconds).
    pub fn of(clock: &crate::clock::SharedClock) -> Self {
        let n = clock.now();
        Self {
            mono: (n.mono_ms / 1000) as u32,
            unix: (n.wall_ms / 1000) as u32,
        }
    }
}

/// The rate limiter and cookies in force.
pub struct Guard {
    pub rrl: Option<Arc<Rrl>>,
    pub cookies: Option<Cookies>,
    pub stats: Arc<GuardStats>,
}

/// A query's COOKIE option, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    /// No COOKIE option, or cookies are off.
    None,
    /// A malformed COOKIE option: FORMERR (RFC 7873 §5.2.2).
    Malformed,
    Ok(cookie::Outcome),
}

impl Guard {
    /// No rate limiting, no cookies.
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            rrl: None,
            cookies: None,
            stats: Default::default(),
        }
    }

    /// Judge the COOKIE option of a query from `ip`, and count.
    #[inline]
    pub fn cookie(&self, opts: &EdnsOpts<'_>, ip: IpAddr, now: Now) -> CookieCheck {
        let (Some(c), Some(data)) = (&self.cookies, opts.cookie) else {
            return CookieCheck::None;
        };
        if opts.cookies > 1 || cookie::well_formed(data).is_err() {
            self.stats.add(Count::CookieMalformed);
            return CookieCheck::Malformed;
        }
        let o = c.process(data, ip, now.unix);
        self.stats.add(match o.state {
            cookie::State::ClientOnly => Count::CookieClientOnly,
            cookie::State::Valid => Count::CookieValid,
            cookie::State::Invalid => Count::CookieInvalid,
        });
        CookieCheck::Ok(o)
    }

    /// Rate-limit one UDP response to `ip`, and count. A valid server cookie passes (RFC 7873
    /// §5.2.5: the source address is proven).
    #[inline]
    pub fn limit(&self, ip: IpAddr, cookie: &CookieCheck, account: Account, now: Now) -> Verdict {
        let Some(rrl) = &self.rrl else {
            return Verdict::Send;
        };
        if let CookieCheck::Ok(o) = cookie
            && o.state == cookie::State::Valid
        {
            self.stats.add(Count::RrlPassedByCookie);
            return Verdict::Send;
        }
        if rrl.exempt(ip) {
            self.stats.add(Count::RrlExempt);
            return Verdict::Send;
        }
        let v = rrl.check(ip, account, now.mono);
        match v {
            Verdict::Send => Verdict::Send,
            _ if rrl.settings().log_only => {
                self.stats.add(Count::RrlLogOnly);
                Verdict::Send
            }
            Verdict::Drop => {
                self.stats.add(Count::RrlDropped);
                v
            }
            Verdict::Slip => {
                self.stats.add(Count::RrlSlipped);
                if matches!(cookie, CookieCheck::Ok(_)) {
                    self.stats.add(Count::BadCookieSent);
                }
                v
            }
        }
    }
}

/// The guard of a running server, updated by every configuration applied.
pub struct GuardHandle {
    current: ArcSwap<Guard>,
    /// Signs cookies when the environment gives no secret (drawn at start, kept on reload).
    random_secret: [u8; 16],
    stats: Arc<GuardStats>,
    clock: crate::clock::SharedClock,
}

impl GuardHandle {
    /// The guard of `settings`, reading the time from `clock` (the server's).
    pub fn new(settings: &ServerSettings, clock: crate::clock::SharedClock) -> Arc<Self> {
        let stats = Arc::new(GuardStats::default());
        let random_secret = rand::random();
        let guard = Self::build(settings, None, random_secret, &stats);
        Arc::new(Self {
            current: ArcSwap::from_pointee(guard),
            random_secret,
            stats,
            clock,
        })
    }

    /// The time, for one query or one batch.
    #[inline]
    pub fn now(&self) -> Now {
        Now::of(&self.clock)
    }

    fn build(
        s: &ServerSettings,
        old: Option<&Guard>,
        random_secret: [u8; 16],
        stats: &Arc<GuardStats>,
    ) -> Guard {
        let rrl = s
            .rrl
            .as_ref()
            .map(|r| match old.and_then(|g| g.rrl.as_ref()) {
                Some(o) if o.settings() == r => o.clone(),
                _ => Arc::new(Rrl::new(r.clone())),
            });
        let cookies = s.cookies.enabled.then(|| {
            Cookies::new(
                s.cookies
                    .secrets
                    .clone()
                    .unwrap_or_else(|| vec![random_secret]),
            )
        });
        Guard {
            rrl,
            cookies,
            stats: stats.clone(),
        }
    }

    /// The guard in force.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Guard>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Guard> {
        self.current.load_full()
    }

    /// Apply the `[server]` settings of a new configuration.
    pub fn apply(&self, settings: &ServerSettings) {
        let old = self.current.load_full();
        let new = Self::build(settings, Some(&old), self.random_secret, &self.stats);
        self.current.store(Arc::new(new));
    }

    /// The `steerd_rrl_*` and `steerd_dns_cookies_*` metric families.
    pub fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::core::Collector;
        use prometheus::{IntCounter, IntCounterVec, Opts};
        let s = &self.stats;
        let mut out = Vec::new();
        for (name, help, c) in [
            (
                "steerd_rrl_dropped_total",
                "UDP responses dropped by response rate limiting.",
                Count::RrlDropped,
            ),
            (
                "steerd_rrl_slipped_total",
                "UDP responses rate limited and sent truncated (TC=1, or BADCOOKIE to a client with a cookie).",
                Count::RrlSlipped,
            ),
            (
                "steerd_rrl_passed_by_cookie_total",
                "UDP responses not rate limited because the query had a valid server cookie.",
                Count::RrlPassedByCookie,
            ),
            (
                "steerd_rrl_exempt_total",
                "UDP responses to exempt clients (server.rrl.exempt_clients).",
                Count::RrlExempt,
            ),
            (
                "steerd_rrl_log_only_total",
                "UDP responses over the rate sent anyway (server.rrl.log_only).",
                Count::RrlLogOnly,
            ),
            (
                "steerd_dns_badcookie_total",
                "BADCOOKIE responses sent (rate-limited queries with a client cookie).",
                Count::BadCookieSent,
            ),
        ] {
            let m = IntCounter::new(name, help).expect("metric");
            m.inc_by(s.get(c));
            out.extend(m.collect());
        }
        let cookies = IntCounterVec::new(
            Opts::new(
                "steerd_dns_cookies_total",
                "Queries with a COOKIE option, by what it held: client_only, valid (our server cookie), invalid (a server cookie we did not make or an expired one), malformed (FORMERR).",
            ),
            &["result"],
        )
        .expect("metric");
        for (label, c) in [
            ("client_only", Count::CookieClientOnly),
            ("valid", Count::CookieValid),
            ("invalid", Count::CookieInvalid),
            ("malformed", Count::CookieMalformed),
        ] {
            cookies.with_label_values(&[label]).inc_by(s.get(c));
        }
        out.extend(cookies.collect());
        out
    }
}
