//! Events of the control plane: the health transitions kept, and every event recorded in the
//! log, counted and sent to the alert sinks in one place ([`Control::emit`]).

use crate::clock::Now;
use crate::events::{Event, EventKind, Severity};
use crate::health::machine::{EffectiveStatus, Transition};
use tracing::{info, warn};

use super::Control;
use super::live::{Live, MAX_EVENTS};

/// The event a health transition is (its time on the wall clock of `now`).
fn transition_event(tr: &Transition, now: Now) -> Event {
    let (kind, severity) = match (tr.from.usable(), tr.to) {
        (_, EffectiveStatus::Down) => (EventKind::Failover, Severity::Critical),
        (_, EffectiveStatus::ForcedDown | EffectiveStatus::Drained) => {
            (EventKind::Failover, Severity::Warning)
        }
        (_, EffectiveStatus::Degraded) => (EventKind::Degraded, Severity::Warning),
        (_, EffectiveStatus::Healthy | EffectiveStatus::ForcedUp) => {
            (EventKind::Recovery, Severity::Info)
        }
    };
    let mut ev = Event::new(
        kind,
        severity,
        "target",
        &tr.target,
        format!(
            "{}: {} -> {}: {}",
            tr.target,
            tr.from.as_str(),
            tr.to.as_str(),
            tr.reason
        ),
        now.wall_of(tr.at_ms),
    );
    ev.from = Some(tr.from.as_str().into());
    ev.to = Some(tr.to.as_str().into());
    ev
}

/// The event of an override change of `target`.
pub(super) fn override_event(target: &str, summary: String, wall_ms: u64) -> Event {
    Event::new(
        EventKind::Override,
        Severity::Info,
        "target",
        target,
        summary,
        wall_ms,
    )
}

impl Control {
    /// Record `ev` everywhere it goes: the log, the metrics, the journal and the alert sinks.
    pub(super) fn emit(&self, live: &mut Live, ev: Event) {
        let ev = live.log.push(ev);
        self.metrics
            .events
            .with_label_values(&[ev.kind.as_str()])
            .inc();
        match ev.severity {
            Severity::Critical | Severity::Warning => {
                warn!(kind = ev.kind.as_str(), id = ev.id, "event: {}", ev.summary)
            }
            Severity::Info => info!(kind = ev.kind.as_str(), id = ev.id, "event: {}", ev.summary),
        }
        if let Some(a) = self.alerter.lock().as_ref() {
            a.send(&ev);
        }
    }

    /// Record a health transition: kept, counted, and an event.
    pub(super) fn record_transition(&self, live: &mut Live, tr: Transition, now: Now) {
        self.metrics
            .transitions
            .with_label_values(&[&*tr.target, tr.from.as_str(), tr.to.as_str()])
            .inc();
        // From one unusable state to another (down → drained, forced down → down) nothing fails
        // over: the operator's override has its own event.
        let ev = (tr.from.usable() || tr.to.usable()).then(|| transition_event(&tr, now));
        live.transitions.push_back(tr);
        if live.transitions.len() > MAX_EVENTS {
            live.transitions.pop_front();
        }
        if let Some(ev) = ev {
            self.emit(live, ev);
        }
    }

    /// Health transitions so far, oldest first.
    pub fn transitions(&self) -> Vec<Transition> {
        self.inner.lock().live.transitions.iter().cloned().collect()
    }

    /// Events with an id above `after`, oldest first (see [`EventLog::page`]), and the newest
    /// id so far.
    pub fn event_page(
        &self,
        after: u64,
        limit: usize,
        kinds: &[EventKind],
        subject: Option<&str>,
    ) -> (Vec<Event>, u64, Option<u64>) {
        let st = self.inner.lock();
        (
            st.live.log.page(after, limit, kinds, subject),
            st.live.log.last_id(),
            st.live.log.first_id(),
        )
    }

    /// Records an event from another part of the server (the purger): logged, counted and
    /// sent to the alert sinks.
    pub fn record_event(&self, ev: Event) {
        let mut st = self.inner.lock();
        self.emit(&mut st.live, ev);
    }

    /// Record a configuration change (API write or reload) as an event.
    pub fn note_config_change(&self, summary: String) {
        let mut st = self.inner.lock();
        self.emit(
            &mut st.live,
            Event::new(
                EventKind::ConfigChanged,
                Severity::Info,
                "config",
                "",
                summary,
                self.now().wall_ms,
            ),
        );
    }
}
