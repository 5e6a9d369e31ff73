//! What the prober (and remote vantage points) report: an [`Observation`] of one [`Level`] of
//! one check run, with what a cache-status header said.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One step of a multi-level check. A level depends on the ones before it in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Dns,
    Tcp,
    Tls,
    Http,
    Content,
    Cache,
    /// The verdict of one whole check run: ok when every level reached was ok.
    Check,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::Dns,
        Level::Tcp,
        Level::Tls,
        Level::Http,
        Level::Content,
        Level::Cache,
        Level::Check,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Dns => "dns",
            Level::Tcp => "tcp",
            Level::Tls => "tls",
            Level::Http => "http",
            Level::Content => "content",
            Level::Cache => "cache",
            Level::Check => "check",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Index into `Level::ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cache-status header said about the canary object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
    /// Revalidated, bypassed, expired, dynamic…: a header was there but it is none of the above.
    Other,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Other => "OTHER",
        }
    }
    /// Counts as a hit for the cache-hit ratio (a stale answer was still served from cache).
    pub fn is_hit(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::Stale)
    }
}

/// Cache facts read off one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheObservation {
    pub status: CacheStatus,
    /// The PoP / edge that answered, when a header named it.
    pub pop: Option<String>,
    /// `Age` header, seconds.
    pub age: Option<u64>,
}

/// One result: a level of one check run of one target, from one vantage point.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub target: Arc<str>,
    pub level: Level,
    /// Where it was measured from: this node's name for local probes, the agent's name for
    /// observations pushed from elsewhere.
    pub vantage: Arc<str>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub ok: bool,
    pub latency: Duration,
    /// Human-readable reason or facts ("status 503", "connection refused", "cert expires in 12 d").
    pub detail: String,
    pub cache: Option<CacheObservation>,
}
