//! The per-target health state machine: from window statistics to Healthy / Degraded / Down,
//! with operator overrides on top.
//!
//! Pure: every input, the time included, is passed in. Nothing here reads the clock, sleeps or
//! does I/O. Time is a [`Now`]: durations, windows and dwell run on its monotonic health time
//! (`mono_ms`); an override's `until_ms` is wall time (an operator's clock); reasons show wall
//! times. A plain `u64` converts to a `Now` with both clocks at that reading.
//!
//! # Rules (defaults are the design's failover policy; everything is in [`Thresholds`])
//!
//! Fail rules (any one tripping takes the target Down):
//! - error rate: the Wilson score lower bound (z = 1.96) of failures / count over 1m is above
//!   5 %, with at least 10 checks in that window. Recovery condition: the point error rate over
//!   1m is below 1 % (at least one check), held for 5 min.
//! - p95 latency: p95 over 1m above 2 s, with at least 5 checks in that window. Recovery
//!   condition: p95 over 1m below 500 ms (at least one latency sample), held for 5 min.
//! - availability: availability over 5m below 99 %, with at least 10 checks in that window.
//!   Recovery condition: availability over 1m above 99.9 %, held for 10 min.
//! - hard failure: the prober confirmed a failure (`Signals::confirmed_down_at`) later than the
//!   machine's last transition and not superseded by a newer passing check
//!   (`Signals::last_ok_at`): Down at once, whatever the dwell.
//!
//! RUM complaints (Healthy ⇄ Degraded, never Down): the complaint rate is RUM failures / count
//! over 5m. The baseline is a bias-corrected, time-weighted EWMA of that rate (half-life 1 h;
//! each sample weighs the time since the previous step; while the history is short next to the
//! half-life it is simply the time-average of what was seen), sampled at every step where the
//! rate is not spiking and comes from at least 20 beacons; time not sampled (spiking, too few
//! beacons, no RUM) does not count. Spiking starts when the rate is above 3 × baseline, at
//! least 1 %, from at least 20 beacons; it ends when the rate is at most 1.5 × baseline, or
//! below 1 %, or there are fewer than 20 beacons (or no RUM data). Degraded while spiking; back
//! to Healthy once it has not been spiking for `rum.recover_for` (default 0: the 3× / 1.5× band
//! and the 5m window are the hysteresis). No spike can be seen before the first baseline sample.
//!
//! Recovery from Down: every fail rule that is *active* (enabled and has data in its recovery
//! window: a check for the error rate, a latency sample for p95, a known availability) is in its
//! recovery condition and has held it for its `recover_for`; at least one rule is active (a Down
//! target with no data in its recovery windows stays Down); and no newer hard failure. After a hard failure, a passing
//! check newer than the failure is needed as well, and the recovery durations count from the
//! failure at the earliest. The target comes back Healthy, or Degraded when RUM is spiking.
//!
//! Continuity: at every step each recovery condition is evaluated; the time since which it has
//! held is kept, and any step where it does not hold resets it. Durations are therefore
//! measured between steps: the condition is assumed to have held between two steps where it
//! held. The caller steps each target at least once a second.
//!
//! Minimum dwell (30 s): no machine transition sooner than `min_dwell` after the previous
//! machine transition, except for hard failures; a transition that is due waits (it is taken at
//! the first step after the dwell if its condition still holds). This holds for going Down too
//! (Degraded by RUM, then failing 10 s later: Down 30 s after the Degraded). There is no dwell
//! before the first transition. Override changes are not machine transitions: they neither
//! wait for nor restart the dwell.
//!
//! Overrides: the effective state is the override's while there is one. The machine keeps
//! stepping underneath (its transitions are then silent: no event, [`TargetMachine::state`] and
//! [`TargetMachine::explain`] show them); setting, clearing or expiring an override is
//! an event when the effective state changes, and its reason tells the machine's state when
//! that is not Healthy. An override whose `until_ms` has passed goes at the next step.
//!
//! When several fail rules trip at the same step, the reason names them all ("; "-separated).
//!
//! Hysteresis comes from the separate fail and recovery thresholds and the recovery durations.
//! With no data at all the target is Healthy (fail-open), reason "no data yet". A Down target
//! whose windows have held no observation for the longest window (10 min: its vantage points
//! fell silent, e.g. a remote agent that reported failures and stopped) goes back to that
//! default: Healthy, "no health data for 10 min", as Route 53 and NS1 fail open on missing
//! data. Hysteresis (after a recovery, the fail rules judge only what came after it) holds for
//! that return too.

mod evaluate;
mod rules;
mod rum;
mod signals;
mod status;
mod text;

pub use evaluate::{RecoveryCheck, Rule};
pub use rules::{AvailabilityRule, ErrorRateRule, LatencyRule, RumRule, Thresholds};
pub use signals::Signals;
pub use status::{EffectiveStatus, Override, OverrideKind, Status, Transition};

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Now, shift};
use evaluate::Tracks;
use rum::RumTrack;
use text::{fmt_utc, hms};

const NO_DATA: &str = "no data yet";
/// A Down target with no observation for this long goes back to the no-data default.
const SILENT_MS: u64 = crate::health::window::HORIZON_SECS * 1000;
const NO_RULE: &str = "no failure rule tripped";

/// The health state machine of one target.
#[derive(Debug, Clone)]
pub struct TargetMachine {
    target: Arc<str>,
    state: Status,
    machine_since: u64,
    machine_reason: String,
    /// Time of the last machine transition (dwell, hard-failure freshness).
    last_transition: Option<u64>,
    ovr: Option<Override>,
    /// Effective state: since, why, last change.
    since: u64,
    reason: String,
    changed: Option<u64>,
    /// The hard failure the machine is Down for (cleared on recovery).
    hard_at: Option<u64>,
    /// The time of the last recovery: observations up to it were judged already.
    judged_until: Option<u64>,
    tracks: Tracks,
    rum: RumTrack,
    last_ok_at: Option<u64>,
    last_step: Option<u64>,
    recovering: bool,
    /// The thresholds of the last step (for explain and unstable).
    th: Thresholds,
    /// Wall time minus health time at the last step (to show wall times).
    wall_offset: i64,
}

impl TargetMachine {
    /// Healthy, "no data yet".
    pub fn new(target: Arc<str>, now_ms: u64) -> Self {
        TargetMachine {
            target,
            state: Status::Healthy,
            machine_since: now_ms,
            machine_reason: NO_DATA.into(),
            last_transition: None,
            ovr: None,
            since: now_ms,
            reason: NO_DATA.into(),
            changed: None,
            hard_at: None,
            judged_until: None,
            tracks: Tracks::default(),
            rum: RumTrack::new(now_ms),
            last_ok_at: None,
            last_step: None,
            recovering: false,
            th: Thresholds::default(),
            wall_offset: 0,
        }
    }

    /// A health-time instant on the wall clock, formatted relative to the health time `now`.
    fn utc(&self, t: u64, now: u64) -> String {
        fmt_utc(shift(t, self.wall_offset), shift(now, self.wall_offset))
    }

    pub fn target(&self) -> &Arc<str> {
        &self.target
    }

    /// The override when there is one, else the machine's state.
    pub fn effective(&self) -> EffectiveStatus {
        match &self.ovr {
            Some(o) => o.kind.into(),
            None => self.state.into(),
        }
    }

    /// The machine's own state (what it would be without an override).
    pub fn state(&self) -> Status {
        self.state
    }

    /// Time of the last effective-state change (creation time before any).
    pub fn since_ms(&self) -> u64 {
        self.since
    }

    /// Why it is in its effective state: the last transition's reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn current_override(&self) -> Option<&Override> {
        self.ovr.as_ref()
    }

    /// When the machine last recovered from Down. Everything observed up to then was judged
    /// already (it took the target down, then its recovery conditions held), so the signals of
    /// later steps must count only what came after it ([`Signals::from_target`]): a recovered
    /// target cannot be failed again by the outage it recovered from, whatever the fail and
    /// recovery windows are.
    pub fn judged_until(&self) -> Option<u64> {
        self.judged_until
    }

    /// Recovering (Down with every active recovery condition holding, or Degraded and no longer
    /// spiking; not under an override), or the effective state changed less than
    /// `unstable_for` ago. TTL shaping shortens TTLs while this is true.
    pub fn unstable(&self, now_ms: u64) -> bool {
        let window = ms(self.th.unstable_for);
        self.changed
            .is_some_and(|c| now_ms < c.saturating_add(window))
            || (self.ovr.is_none() && self.recovering)
    }

    /// Sets (Some) or clears (None) the operator override. An event when the effective state
    /// changes; replacing an override by one of the same kind only updates the reason.
    pub fn set_override(&mut self, o: Option<Override>, now: impl Into<Now>) -> Vec<Transition> {
        let now: Now = now.into();
        self.wall_offset = now.wall_offset_ms();
        let now_ms = now.mono_ms;
        let mut out = Vec::new();
        let from = self.effective();
        let reason = match &o {
            Some(o) => o.describe(now.wall_ms),
            None if self.ovr.is_none() => return out,
            None => self.with_machine("override cleared by operator".into(), now_ms),
        };
        self.ovr = o;
        let to = self.effective();
        if from != to {
            self.emit(from, to, reason, now_ms, &mut out);
        } else {
            self.reason = reason;
        }
        out
    }

    /// One step: evaluates every rule on `signals`, takes at most one machine transition and
    /// expires the override when its time has come. Returns the effective-state changes.
    pub fn step(
        &mut self,
        signals: &Signals,
        th: &Thresholds,
        now: impl Into<Now>,
    ) -> Vec<Transition> {
        let clock: Now = now.into();
        let now = clock.mono_ms;
        self.wall_offset = clock.wall_offset_ms();
        let mut out = Vec::new();
        self.th = *th;
        self.last_step = Some(now);
        self.last_ok_at = signals.last_ok_at;
        let fails = self.evaluate(signals, th, now);
        if self.machine_reason == NO_DATA && signals.has_data() {
            // Not a transition: Healthy it was, Healthy it stays, but now from data.
            self.machine_reason = NO_RULE.into();
            if self.ovr.is_none() && self.reason == NO_DATA {
                self.reason = NO_RULE.into();
            }
        }
        let hard = signals.confirmed_down_at.filter(|&c| {
            self.last_transition.is_none_or(|t| c > t)
                && signals.last_ok_at.is_none_or(|ok| ok <= c)
        });
        let dwell_over = self
            .last_transition
            .is_none_or(|t| now >= t.saturating_add(ms(th.min_dwell)));
        match self.state {
            Status::Healthy | Status::Degraded => {
                if let Some(c) = hard {
                    self.hard_at = Some(c);
                    let reason = format!(
                        "hard failure confirmed by the prober at {}",
                        self.utc(c, now)
                    );
                    self.machine_to(Status::Down, reason, now, &mut out);
                } else if !fails.is_empty() {
                    if dwell_over {
                        self.machine_to(Status::Down, fails.join("; "), now, &mut out);
                    }
                } else if self.state == Status::Healthy && self.rum.spiking {
                    if dwell_over {
                        let reason = self.rum.spike_text(&th.rum);
                        self.machine_to(Status::Degraded, reason, now, &mut out);
                    }
                } else if self.state == Status::Degraded
                    && self
                        .rum
                        .calm_for(now)
                        .is_some_and(|c| c >= ms(th.rum.recover_for))
                    && dwell_over
                {
                    let reason = self.rum.back_text(&th.rum);
                    self.machine_to(Status::Healthy, reason, now, &mut out);
                }
            }
            Status::Down => {
                if let Some(c) = hard {
                    // Down already: recovery now has to wait for this newer failure.
                    self.hard_at = Some(self.hard_at.map_or(c, |h| h.max(c)));
                } else if dwell_over && signals.silent() && self.machine_since + SILENT_MS <= now {
                    let reason = format!(
                        "no health data for {} (down since {}): back to the no-data default",
                        hms(Duration::from_millis(SILENT_MS)),
                        self.utc(self.machine_since, now)
                    );
                    self.hard_at = None;
                    self.judged_until = Some(now);
                    self.machine_to(Status::Healthy, reason, now, &mut out);
                } else if dwell_over && let Some(reason) = self.recovery_reason(now) {
                    let to = if self.rum.spiking {
                        Status::Degraded
                    } else {
                        Status::Healthy
                    };
                    let reason = if to == Status::Degraded {
                        format!("{reason}; still degraded: {}", self.rum.spike_text(&th.rum))
                    } else {
                        reason
                    };
                    self.hard_at = None;
                    self.judged_until = Some(now);
                    self.machine_to(to, reason, now, &mut out);
                }
            }
        }
        self.recovering = match self.state {
            Status::Healthy => false,
            Status::Degraded => !self.rum.spiking,
            Status::Down => {
                let checks = self.recovery(now);
                checks.iter().any(|c| c.active)
                    && checks.iter().all(|c| !c.active || c.held.is_some())
            }
        };
        if let Some(o) = &self.ovr
            && o.until_ms.is_some_and(|u| clock.wall_ms >= u)
        {
            let from = self.effective();
            let what = match o.reason.as_str() {
                "" => o.kind.words().to_string(),
                r => format!("{}: {r}", o.kind.words()),
            };
            self.ovr = None;
            let reason = self.with_machine(format!("override expired ({what})"), now);
            self.emit(from, self.effective(), reason, now, &mut out);
        }
        out
    }

    /// Updates the recovery trackers and the RUM state; returns the fail rules that trip.
    fn evaluate(&mut self, sig: &Signals, th: &Thresholds, now: u64) -> Vec<String> {
        let fails = self.tracks.evaluate(sig, th, now);
        self.rum.evaluate(sig, &th.rum, now);
        fails
    }

    /// Where each enabled fail rule's recovery condition stands: whether it held at the last
    /// step, and for how long by `now_ms` (from the hard failure at the earliest while Down).
    pub fn recovery(&self, now_ms: u64) -> Vec<RecoveryCheck> {
        let floor = if self.state == Status::Down {
            self.hard_at
        } else {
            None
        };
        self.tracks.checks(&self.th, floor, now_ms)
    }

    /// Some(reason) when a Down machine may come back now (dwell aside).
    fn recovery_reason(&self, now: u64) -> Option<String> {
        if let Some(h) = self.hard_at
            && self.last_ok_at.is_none_or(|ok| ok <= h)
        {
            return None;
        }
        let checks = self.recovery(now);
        let active: Vec<&RecoveryCheck> = checks.iter().filter(|c| c.active).collect();
        if active.is_empty() || !active.iter().all(|c| c.met()) {
            return None;
        }
        let parts: Vec<String> = active
            .iter()
            .map(|c| format!("{} for {}", c.condition, hms(c.held.unwrap_or_default())))
            .collect();
        Some(match self.hard_at {
            Some(h) => format!(
                "recovered after the hard failure at {}: {}",
                self.utc(h, now),
                parts.join(", ")
            ),
            None => format!("recovered: {}", parts.join(", ")),
        })
    }

    fn machine_to(&mut self, to: Status, reason: String, now: u64, out: &mut Vec<Transition>) {
        let from = self.effective();
        self.state = to;
        self.machine_since = now;
        self.machine_reason = reason.clone();
        self.last_transition = Some(now);
        if self.ovr.is_none() {
            self.emit(from, to.into(), reason, now, out);
        }
    }

    fn emit(
        &mut self,
        from: EffectiveStatus,
        to: EffectiveStatus,
        reason: String,
        now: u64,
        out: &mut Vec<Transition>,
    ) {
        self.since = now;
        self.changed = Some(now);
        self.reason = reason.clone();
        out.push(Transition {
            target: self.target.clone(),
            from,
            to,
            reason,
            at_ms: now,
        });
    }

    /// `head`, plus the machine's state and reason when it is not Healthy.
    fn with_machine(&self, head: String, now: u64) -> String {
        if self.state == Status::Healthy {
            return head;
        }
        format!(
            "{head}; {} since {}: {}",
            self.state,
            self.utc(self.machine_since, now),
            self.machine_reason
        )
    }

    /// One line: state, since, reason; under an override the machine's state too; for a Down
    /// machine what recovery is waiting for, for a Degraded one what would end it.
    pub fn explain(&self) -> String {
        let now = self.last_step.unwrap_or(self.since);
        let mut s = format!(
            "{} since {}: {}",
            self.effective(),
            self.utc(self.since, now),
            self.reason
        );
        if self.ovr.is_some() {
            s += &format!(
                "; underneath {} since {}: {}",
                self.state,
                self.utc(self.machine_since, now),
                self.machine_reason
            );
        }
        match self.state {
            Status::Healthy => {}
            Status::Degraded => {
                s += "; ";
                s += &self.rum.healthy_again_text(&self.th.rum);
            }
            Status::Down => s += &format!("; recovery waits for {}", self.waiting_for(now)),
        }
        s
    }

    fn waiting_for(&self, now: u64) -> String {
        let mut parts = Vec::new();
        if let Some(h) = self.hard_at
            && self.last_ok_at.is_none_or(|ok| ok <= h)
        {
            parts.push(format!(
                "a passing check after the hard failure at {}",
                self.utc(h, now)
            ));
        }
        let checks = self.recovery(now);
        for c in &checks {
            if !c.active {
                continue;
            }
            let cur = c.current.as_deref().unwrap_or("-");
            parts.push(match c.held {
                Some(h) if h >= c.need => {
                    format!("{} held {} of {} (met)", c.condition, hms(h), hms(c.need))
                }
                Some(h) => format!("{} held {} of {}", c.condition, hms(h), hms(c.need)),
                None => format!("{} (now {cur})", c.condition),
            });
        }
        if !checks.iter().any(|c| c.active) {
            parts.push("check data (none in the recovery windows)".into());
        }
        if let Some(t) = self.last_transition {
            let until = t.saturating_add(ms(self.th.min_dwell));
            if now < until {
                parts.push(format!("the minimum dwell until {}", self.utc(until, now)));
            }
        }
        parts.join(", ")
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
