//! Operator-visible events: health failovers and recoveries, all-down entry and exit, cost caps,
//! certificate expiry, overrides and configuration changes. Every event gets a process-wide id
//! (monotonic, for pagination), is kept in a bounded log for `GET /v1/events` and goes to the
//! alert sinks.

use std::collections::VecDeque;
use std::fmt;

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A target went down (health or operator): services fail over away from it.
    Failover,
    /// A target came back (healthy again, or an override ended/was cleared).
    Recovery,
    /// A target is degraded (still answered, ranked after the healthy ones).
    Degraded,
    /// Every candidate of a service is down.
    AllDown,
    /// A service that had every candidate down has one up again.
    AllDownRecovered,
    /// A target's projected spend went over its monthly cap.
    CostCap,
    /// ... and is back under it.
    CostCapCleared,
    /// A target's TLS certificate expires within `cert_warning_days`.
    CertExpiring,
    /// ... and no longer does (renewed).
    CertOk,
    /// An operator set or cleared an override.
    Override,
    /// The configuration changed (API write or reload).
    ConfigChanged,
    /// A purge failed on a CDN (refused for good, or not confirmed within its give-up age).
    PurgeFailed,
    /// A CDN confirmed a purge later than its priority's SLA.
    PurgeSlaMissed,
    /// A CDN has served an older version of a canary object than the origin's for longer
    /// than `purge.stale_grace`.
    CdnStale,
    /// ... and serves the current version again.
    CdnFresh,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Failover,
        EventKind::Recovery,
        EventKind::Degraded,
        EventKind::AllDown,
        EventKind::AllDownRecovered,
        EventKind::CostCap,
        EventKind::CostCapCleared,
        EventKind::CertExpiring,
        EventKind::CertOk,
        EventKind::Override,
        EventKind::ConfigChanged,
        EventKind::PurgeFailed,
        EventKind::PurgeSlaMissed,
        EventKind::CdnStale,
        EventKind::CdnFresh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failover => "failover",
            EventKind::Recovery => "recovery",
            EventKind::Degraded => "degraded",
            EventKind::AllDown => "all_down",
            EventKind::AllDownRecovered => "all_down_recovered",
            EventKind::CostCap => "cost_cap",
            EventKind::CostCapCleared => "cost_cap_cleared",
            EventKind::CertExpiring => "cert_expiring",
            EventKind::CertOk => "cert_ok",
            EventKind::Override => "override",
            EventKind::ConfigChanged => "config_changed",
            EventKind::PurgeFailed => "purge_failed",
            EventKind::PurgeSlaMissed => "purge_sla_missed",
            EventKind::CdnStale => "cdn_stale",
            EventKind::CdnFresh => "cdn_fresh",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event opens an alert, closes one, or is informational.
    pub fn action(self) -> AlertAction {
        match self {
            EventKind::Failover
            | EventKind::Degraded
            | EventKind::AllDown
            | EventKind::CostCap
            | EventKind::CertExpiring
            | EventKind::PurgeFailed
            | EventKind::PurgeSlaMissed
            | EventKind::CdnStale => AlertAction::Trigger,
            EventKind::CdnFresh
            | EventKind::Recovery
            | EventKind::AllDownRecovered
            | EventKind::CostCapCleared
            | EventKind::CertOk => AlertAction::Resolve,
            EventKind::Override | EventKind::ConfigChanged => AlertAction::Info,
        }
    }

    /// The alert a trigger opens and its resolve closes: "target-health", "all-down",
    /// "cost-cap", "cert", or "info".
    pub fn family(self) -> &'static str {
        match self {
            EventKind::Failover | EventKind::Recovery | EventKind::Degraded => "target-health",
            EventKind::AllDown | EventKind::AllDownRecovered => "all-down",
            EventKind::CostCap | EventKind::CostCapCleared => "cost-cap",
            EventKind::CertExpiring | EventKind::CertOk => "cert",
            EventKind::Override | EventKind::ConfigChanged => "info",
            EventKind::PurgeFailed => "purge-failed",
            EventKind::PurgeSlaMissed => "purge-sla",
            EventKind::CdnStale | EventKind::CdnFresh => "cdn-stale",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAction {
    Trigger,
    Resolve,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increasing, starting at 1 (per process).
    pub id: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub kind: EventKind,
    pub severity: Severity,
    /// "target", "service" or "config".
    pub subject_kind: &'static str,
    /// The target or service name ("" for config events).
    pub subject: String,
    /// One line for humans: "cdn-a: healthy -> down: error rate 11.7 % > 5 % over 1m ...".
    pub summary: String,
    /// State before and after, when the event is a change of state.
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Event {
    /// An event about `subject` (its id is given by the log; no from/to).
    pub fn new(
        kind: EventKind,
        severity: Severity,
        subject_kind: &'static str,
        subject: &str,
        summary: String,
        at_ms: u64,
    ) -> Event {
        Event {
            id: 0,
            at_ms,
            kind,
            severity,
            subject_kind,
            subject: subject.to_string(),
            summary,
            from: None,
            to: None,
        }
    }

    /// Key shared by a trigger and its resolve: `steerd/<family>/<subject_kind>/<subject>`.
    pub fn dedup_key(&self) -> String {
        format!(
            "steerd/{}/{}/{}",
            self.kind.family(),
            self.subject_kind,
            self.subject
        )
    }

    /// RFC 3339 time of the event.
    pub fn time_rfc3339(&self) -> String {
        rfc3339_ms(self.at_ms)
    }
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in ms; times past year 9999 are written as
/// the number (the formatter cannot show them).
pub fn rfc3339_ms(ms: u64) -> String {
    if ms > 253_402_300_799_999 {
        return format!("@{ms}ms");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The bounded log of recent events.
#[derive(Debug)]
pub struct EventLog {
    next_id: u64,
    cap: usize,
    events: VecDeque<Event>,
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        Self::starting_at(cap, 1)
    }

    /// A log whose first event gets id `first` (≥ 1).
    pub fn starting_at(cap: usize, first: u64) -> Self {
        Self {
            next_id: first.max(1),
            cap: cap.max(1),
            events: VecDeque::new(),
        }
    }

    /// Give `ev` the next id, keep it, and return the stored copy.
    pub fn push(&mut self, mut ev: Event) -> Event {
        ev.id = self.next_id;
        self.next_id += 1;
        self.events.push_back(ev.clone());
        while self.events.len() > self.cap {
            self.events.pop_front();
        }
        ev
    }

    /// Events with an id greater than `after`, oldest first, at most `limit`, optionally of
    /// these kinds / this subject.
    pub fn page(
        &self,
        after: u64,
        limit: usize,
        kinds: &[EventKind],
        subject: Option<&str>,
    ) -> Vec<Event> {
        // Ids are consecutive within the deque: skip straight to the first candidate.
        let start = self
            .events
            .front()
            .map(|f| after.saturating_sub(f.id - 1) as usize)
            .unwrap_or(0)
            .min(self.events.len());
        self.events
            .range(start..)
            .filter(|e| e.id > after)
            .filter(|e| kinds.is_empty() || kinds.contains(&e.kind))
            .filter(|e| subject.is_none_or(|s| e.subject == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest id given so far (the first id − 1 before the first event).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The oldest id still kept.
    pub fn first_id(&self) -> Option<u64> {
        self.events.front().map(|e| e.id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, subject: &str) -> Event {
        Event {
            id: 0,
            at_ms: 1_700_000_000_000,
            kind,
            severity: Severity::Critical,
            subject_kind: "target",
            subject: subject.into(),
            summary: String::new(),
            from: None,
            to: None,
        }
    }

    #[test]
    fn pages_and_bounds() {
        let mut log = EventLog::new(5);
        for i in 0..8 {
            log.push(ev(
                if i % 2 == 0 {
                    EventKind::Failover
                } else {
                    EventKind::Recovery
                },
                if i < 4 { "a" } else { "b" },
            ));
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.first_id(), Some(4));
        assert_eq!(log.last_id(), 8);
        let ids = |v: Vec<Event>| v.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(log.page(0, 100, &[], None)), vec![4, 5, 6, 7, 8]);
        assert_eq!(ids(log.page(5, 2, &[], None)), vec![6, 7]);
        assert_eq!(ids(log.page(8, 2, &[], None)), Vec::<u64>::new());
        assert_eq!(
            ids(log.page(0, 100, &[EventKind::Failover], None)),
            vec![5, 7]
        );
        assert_eq!(ids(log.page(0, 100, &[], Some("a"))), vec![4]);
    }

    #[test]
    fn dedup_key_pairs_trigger_and_resolve() {
        let down = ev(EventKind::Failover, "cdn-a");
        let up = ev(EventKind::Recovery, "cdn-a");
        assert_eq!(down.dedup_key(), up.dedup_key());
        assert_eq!(down.dedup_key(), "steerd/target-health/target/cdn-a");
        assert_ne!(
            ev(EventKind::AllDown, "cdn-a").dedup_key(),
            down.dedup_key()
        );
        assert_eq!(down.time_rfc3339(), "2023-11-14T22:13:20.000Z");
    }
}
