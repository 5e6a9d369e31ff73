//! What the control plane keeps between compiles: the targets' machines, the events, the
//! pushed reports and the month's answer counts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::clock::Now;
use crate::config;
use crate::events::EventLog;
use crate::health::machine::{TargetMachine, Transition};
use crate::policy;
use crate::policy::cost::{CostStatus, Usage};

use super::CacheReport;

/// Health state of the targets, kept across compiles.
pub struct Live {
    pub machines: BTreeMap<Arc<str>, TargetMachine>,
    /// Latest failure confirmed by the prober's burst, per target.
    pub confirmed: rustc_hash::FxHashMap<Arc<str>, u64>,
    /// Latency incumbents of the last compile.
    pub memory: policy::chain::Memory,
    /// Transitions, newest last (bounded).
    pub transitions: VecDeque<Transition>,
    /// Every event (failover, recovery, all-down, cost cap, cert, override, config), bounded.
    pub log: EventLog,
    /// Targets over their monthly cap, and with a certificate close to expiry.
    pub over_cap: BTreeSet<String>,
    /// Per target, the vantage points whose latest TLS check warned of expiry (and the detail).
    pub cert_warn: BTreeMap<String, BTreeMap<String, String>>,
    /// Usage reported by the CDNs' billing, per target.
    pub usage: BTreeMap<String, Usage>,
    /// Cache metrics reported per target, for all its clients…
    pub cache_reports: BTreeMap<String, CacheReport>,
    /// … and per target and region (continent code).
    pub cache_regions: BTreeMap<String, BTreeMap<String, CacheReport>>,
    /// Overrides limited to a region (from the configuration).
    pub region_overrides: Vec<config::OverrideSpec>,
    /// Cost status per target as of the last compile.
    pub costs: BTreeMap<String, CostStatus>,
    /// Targets serving stale content (`purge.demote_stale`): why, and since when (wall ms).
    pub stale: BTreeMap<String, (String, u64)>,
    /// Answers per target (shared with every table of the configuration in force).
    pub counters: Arc<crate::table::AnswerCounters>,
    /// Answer totals at the start of the current month, and which month that is.
    pub month_base: (u64, Vec<u64>),
    /// The purger's confirmed purges of the last 5 minutes, once it runs (`control::purges`).
    pub purges: Option<crate::purge::recent::RecentHandle>,
}

impl Live {
    pub(super) fn new(targets: usize, now: Now) -> Self {
        Self {
            machines: Default::default(),
            confirmed: Default::default(),
            memory: Default::default(),
            transitions: Default::default(),
            // Ids start from the time (µs) so they keep increasing across restarts.
            log: EventLog::starting_at(MAX_EVENTS, now.wall_ms.saturating_mul(1000).max(1)),
            over_cap: Default::default(),
            cert_warn: Default::default(),
            usage: Default::default(),
            cache_reports: Default::default(),
            cache_regions: Default::default(),
            region_overrides: Vec::new(),
            costs: Default::default(),
            stale: Default::default(),
            counters: Arc::new(crate::table::AnswerCounters::new(targets)),
            // This month from the start: answers given before the first compile are this
            // month's too.
            month_base: (
                crate::policy::cost::Month::containing(now.wall_ms).start_ms,
                vec![0; targets],
            ),
            purges: None,
        }
    }
}

/// Events kept in memory.
pub(super) const MAX_EVENTS: usize = 10_000;
