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
//! [`TargetMachine::machine_reason`] show them); setting, clearing or expiring an override is
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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Level, TargetHealth, Win, WindowStats};
use crate::clock::{Now, shift};

const NO_DATA: &str = "no data yet";
/// A Down target with no observation for this long goes back to the no-data default.
const SILENT_MS: u64 = super::window::HORIZON_SECS * 1000;
const NO_RULE: &str = "no failure rule tripped";

// ---------------------------------------------------------------------------------------------
// States

/// The machine's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Healthy,
    Degraded,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        EffectiveStatus::from(self).as_str()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideKind {
    /// Routed as if Healthy, whatever the machine says.
    ForcedUp,
    /// Routed as if Down.
    ForcedDown,
    /// Given to no new client (dropped like Down by the policies), reported distinctly.
    Drained,
}

impl OverrideKind {
    pub const ALL: [OverrideKind; 3] = [
        OverrideKind::ForcedUp,
        OverrideKind::ForcedDown,
        OverrideKind::Drained,
    ];

    /// "forced_up", "forced_down", "drained".
    pub fn as_str(self) -> &'static str {
        EffectiveStatus::from(self).as_str()
    }

    pub fn parse(s: &str) -> Option<OverrideKind> {
        OverrideKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// "forced up", "forced down", "drained".
    fn words(self) -> &'static str {
        match self {
            OverrideKind::ForcedUp => "forced up",
            OverrideKind::ForcedDown => "forced down",
            OverrideKind::Drained => "drained",
        }
    }
}

impl fmt::Display for OverrideKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator override. It disappears at the first step at or after `until_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub kind: OverrideKind,
    pub until_ms: Option<u64>,
    pub reason: String,
    pub set_at_ms: u64,
}

impl Override {
    /// "forced down by operator until 12:03:10 UTC: maintenance" (`now_ms` decides whether the
    /// date is shown).
    pub fn describe(&self, now_ms: u64) -> String {
        let mut s = format!("{} by operator", self.kind.words());
        if let Some(u) = self.until_ms {
            s += &format!(" until {}", fmt_utc(u, now_ms));
        }
        if !self.reason.is_empty() {
            s += ": ";
            s += &self.reason;
        }
        s
    }
}

/// What routing goes by: the override when there is one, else the machine's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EffectiveStatus {
    Healthy,
    Degraded,
    Down,
    ForcedUp,
    ForcedDown,
    Drained,
}

impl EffectiveStatus {
    pub const ALL: [EffectiveStatus; 6] = [
        EffectiveStatus::Healthy,
        EffectiveStatus::Degraded,
        EffectiveStatus::Down,
        EffectiveStatus::ForcedUp,
        EffectiveStatus::ForcedDown,
        EffectiveStatus::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EffectiveStatus::Healthy => "healthy",
            EffectiveStatus::Degraded => "degraded",
            EffectiveStatus::Down => "down",
            EffectiveStatus::ForcedUp => "forced_up",
            EffectiveStatus::ForcedDown => "forced_down",
            EffectiveStatus::Drained => "drained",
        }
    }

    pub fn parse(s: &str) -> Option<EffectiveStatus> {
        EffectiveStatus::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// May be given to new clients: Healthy, Degraded, ForcedUp.
    pub fn usable(self) -> bool {
        matches!(
            self,
            EffectiveStatus::Healthy | EffectiveStatus::Degraded | EffectiveStatus::ForcedUp
        )
    }

    pub fn is_degraded(self) -> bool {
        self == EffectiveStatus::Degraded
    }
}

impl fmt::Display for EffectiveStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Status> for EffectiveStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Healthy => EffectiveStatus::Healthy,
            Status::Degraded => EffectiveStatus::Degraded,
            Status::Down => EffectiveStatus::Down,
        }
    }
}

impl From<OverrideKind> for EffectiveStatus {
    fn from(k: OverrideKind) -> Self {
        match k {
            OverrideKind::ForcedUp => EffectiveStatus::ForcedUp,
            OverrideKind::ForcedDown => EffectiveStatus::ForcedDown,
            OverrideKind::Drained => EffectiveStatus::Drained,
        }
    }
}

/// A change of [`EffectiveStatus`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub target: Arc<str>,
    pub from: EffectiveStatus,
    pub to: EffectiveStatus,
    pub reason: String,
    pub at_ms: u64,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}: {}",
            self.target, self.from, self.to, self.reason
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Thresholds

/// Error rate over `window` (Check level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRateRule {
    pub enabled: bool,
    pub window: Win,
    /// Fail when the Wilson lower bound of the error rate is above this (fraction).
    pub fail_above: f64,
    /// z of the Wilson score interval (1.96: 95 % two-sided).
    pub z: f64,
    /// Checks needed in `window` before the rule can fail.
    pub min_samples: u64,
    pub recover_window: Win,
    /// Recovery condition: point error rate over `recover_window` below this (fraction).
    pub recover_below: f64,
    pub recover_for: Duration,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            enabled: true,
            window: Win::M1,
            fail_above: 0.05,
            z: 3.0,
            min_samples: 10,
            recover_window: Win::M1,
            recover_below: 0.01,
            recover_for: Duration::from_secs(300),
        }
    }
}

/// p95 latency over `window` (Check level; ok checks only feed the percentiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRule {
    pub enabled: bool,
    pub window: Win,
    pub fail_above: Duration,
    /// Checks needed in `window` before the rule can fail.
    pub min_samples: u64,
    pub recover_window: Win,
    pub recover_below: Duration,
    pub recover_for: Duration,
}

impl Default for LatencyRule {
    fn default() -> Self {
        LatencyRule {
            enabled: true,
            window: Win::M1,
            fail_above: Duration::from_secs(2),
            min_samples: 5,
            recover_window: Win::M1,
            recover_below: Duration::from_millis(500),
            recover_for: Duration::from_secs(300),
        }
    }
}

/// Time-weighted availability (Check level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AvailabilityRule {
    pub enabled: bool,
    pub window: Win,
    /// Fail when availability over `window` is below this (fraction).
    pub fail_below: f64,
    /// Checks needed in `window` before the rule can fail (so that one failed check of a target
    /// just added, when little time is known, does not take it down).
    pub min_samples: u64,
    pub recover_window: Win,
    /// Recovery condition: availability over `recover_window` above this (fraction).
    pub recover_above: f64,
    pub recover_for: Duration,
}

impl Default for AvailabilityRule {
    fn default() -> Self {
        AvailabilityRule {
            enabled: true,
            window: Win::M5,
            fail_below: 0.99,
            min_samples: 10,
            recover_window: Win::M1,
            recover_above: 0.999,
            recover_for: Duration::from_secs(600),
        }
    }
}

/// RUM complaint spikes (Degraded, not Down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RumRule {
    pub enabled: bool,
    pub window: Win,
    /// Spiking when the complaint rate is above `spike_factor` × baseline …
    pub spike_factor: f64,
    /// … and at least this (fraction) …
    pub min_rate: f64,
    /// … from at least this many beacons.
    pub min_samples: u64,
    /// Spiking ends when the rate is at most `back_factor` × baseline (or below `min_rate`, or
    /// fewer than `min_samples` beacons).
    pub back_factor: f64,
    pub baseline_half_life: Duration,
    /// How long it must not have been spiking before Degraded goes back to Healthy.
    pub recover_for: Duration,
}

impl Default for RumRule {
    fn default() -> Self {
        RumRule {
            enabled: true,
            window: Win::M5,
            spike_factor: 3.0,
            min_rate: 0.01,
            min_samples: 20,
            back_factor: 1.5,
            baseline_half_life: Duration::from_secs(3600),
            recover_for: Duration::ZERO,
        }
    }
}

/// Everything the machine is configured by. `Default` is the seed policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub error_rate: ErrorRateRule,
    pub latency: LatencyRule,
    pub availability: AvailabilityRule,
    pub rum: RumRule,
    /// No machine transition sooner than this after the previous one (hard failures excepted).
    pub min_dwell: Duration,
    /// [`TargetMachine::unstable`] for this long after an effective-state change.
    pub unstable_for: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            error_rate: ErrorRateRule::default(),
            latency: LatencyRule::default(),
            availability: AvailabilityRule::default(),
            rum: RumRule::default(),
            min_dwell: Duration::from_secs(30),
            unstable_for: Duration::from_secs(600),
        }
    }
}

impl Thresholds {
    /// Combinations worth explaining (not errors), as (config field, text): a recovery that
    /// can complete before its fail rule's window has forgotten the outage. Hysteresis holds
    /// anyway (see [`TargetMachine::judged_until`]); the note says how.
    pub fn notes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let e = &self.error_rate;
        let a = &self.availability;
        let rules = [
            (
                "health.recover_for",
                "error rate",
                e.recover_for,
                e.recover_window,
                e.window,
                format!("{} checks", e.min_samples),
            ),
            (
                "health.availability_recover_for",
                "availability",
                a.recover_for,
                a.recover_window,
                a.window,
                format!(
                    "{} checks and {} of known time",
                    a.min_samples,
                    hms(a.window.duration() / 5)
                ),
            ),
        ];
        for (field, what, recover_for, recover_window, window, needs) in rules {
            if recover_for + recover_window.duration() < window.duration() {
                out.push((
                    field,
                    format!(
                        "a target can recover {} after its {what} is clean over {recover_window}, \
                         while the {what} fail rule reads {window}: after a recovery that rule \
                         judges only what came after it (it needs {needs} from then on before \
                         it can fail the target again), so the outage it recovered from cannot \
                         fail it again",
                        hms(recover_for)
                    ),
                ));
            }
        }
        out
    }

    /// Problems with the values, one message each (empty: fine).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut frac = |name: &str, v: f64| {
            if !(0.0..=1.0).contains(&v) {
                out.push(format!(
                    "{name} must be a fraction between 0 and 1 (got {v})"
                ));
            }
        };
        let e = &self.error_rate;
        frac("error_rate.fail_above", e.fail_above);
        frac("error_rate.recover_below", e.recover_below);
        let a = &self.availability;
        frac("availability.fail_below", a.fail_below);
        frac("availability.recover_above", a.recover_above);
        frac("rum.min_rate", self.rum.min_rate);
        if e.recover_below > e.fail_above {
            out.push("error_rate.recover_below must not be above error_rate.fail_above".into());
        }
        if !(e.z.is_finite() && e.z >= 0.0) {
            out.push(format!(
                "error_rate.z must be a non-negative number (got {})",
                e.z
            ));
        }
        let l = &self.latency;
        if l.recover_below > l.fail_above {
            out.push("latency.recover_below must not be above latency.fail_above".into());
        }
        if a.recover_above < a.fail_below {
            out.push("availability.recover_above must not be below availability.fail_below".into());
        }
        let r = &self.rum;
        if !(r.back_factor.is_finite() && r.back_factor > 0.0) {
            out.push(format!(
                "rum.back_factor must be positive (got {})",
                r.back_factor
            ));
        }
        if !(r.spike_factor.is_finite() && r.spike_factor >= r.back_factor) {
            out.push(format!(
                "rum.spike_factor must be at least rum.back_factor (got {} < {})",
                r.spike_factor, r.back_factor
            ));
        }
        if r.baseline_half_life.is_zero() {
            out.push("rum.baseline_half_life must be positive".into());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Signals

/// What one step looks at, built by the caller from the target's windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Check level, windows 1m, 5m, 10m (index `Win::index()`).
    pub stats: [WindowStats; 3],
    /// RUM beacons (ok = false is a complaint), when there are any.
    pub rum: Option<[WindowStats; 3]>,
    /// The prober confirmed a hard failure (a whole burst failed) at this time.
    pub confirmed_down_at: Option<u64>,
    /// The newest passing check.
    pub last_ok_at: Option<u64>,
}

impl Signals {
    /// Check-level statistics of the three windows at `now_ms`, of what happened after
    /// `judged_until` (see [`TargetMachine::judged_until`]); `last_ok_at` is the newest passing
    /// check among the latest observation of each vantage point; no RUM.
    pub fn from_target(
        t: &mut TargetHealth,
        now_ms: u64,
        confirmed_down_at: Option<u64>,
        judged_until: Option<u64>,
    ) -> Signals {
        let stats = t.series(Level::Check).all_stats_since(now_ms, judged_until);
        let last_ok_at = t
            .last(Level::Check)
            .iter()
            .filter(|o| o.ok)
            .map(|o| o.at_ms)
            .max();
        Signals {
            stats,
            rum: None,
            confirmed_down_at,
            last_ok_at,
        }
    }

    /// No data at all.
    pub fn empty() -> Signals {
        Signals {
            stats: super::WINDOWS.map(WindowStats::empty),
            rum: None,
            confirmed_down_at: None,
            last_ok_at: None,
        }
    }

    /// Nothing observed in the longest window (10 min).
    fn silent(&self) -> bool {
        self.stats
            .iter()
            .all(|s| s.count == 0 && s.availability.is_none())
    }

    fn has_data(&self) -> bool {
        self.stats.iter().any(|s| s.count > 0)
            || self
                .rum
                .as_ref()
                .is_some_and(|r| r.iter().any(|s| s.count > 0))
            || self.last_ok_at.is_some()
    }
}

/// Lower bound of the Wilson score interval of `failures / n` (0 when `n == 0`).
pub fn wilson_lower(failures: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let p = failures.min(n) as f64 / nf;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * nf);
    let margin = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    ((centre - margin) / (1.0 + z2 / nf)).max(0.0)
}

// ---------------------------------------------------------------------------------------------
// The machine

/// A fail rule with a recovery condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    ErrorRate,
    Latency,
    Availability,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::ErrorRate, Rule::Latency, Rule::Availability];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ErrorRate => "error_rate",
            Rule::Latency => "latency",
            Rule::Availability => "availability",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where one recovery condition stands (as of the last step).
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryCheck {
    pub rule: Rule,
    /// "error rate < 1 %".
    pub condition: String,
    /// Enabled and has data in its recovery window: only active rules gate a recovery.
    pub active: bool,
    /// How long the condition has held (counted from the hard failure at the earliest, while
    /// Down after one); None when it does not hold.
    pub held: Option<Duration>,
    pub need: Duration,
    /// The figure now: "1.7 % over 1m"; None without data.
    pub current: Option<String>,
}

impl RecoveryCheck {
    pub fn met(&self) -> bool {
        self.held.is_some_and(|h| h >= self.need)
    }
}

/// Per fail rule, as of the last step.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    active: bool,
    /// Since when the recovery condition has held.
    since: Option<u64>,
    /// The recovery window's figure (error rate, p95 in seconds, availability).
    value: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct RumTrack {
    spiking: bool,
    /// Since when it has not been spiking.
    calm_since: Option<u64>,
    /// Bias-corrected EWMA of the rate: `sum / weight` (a mean of what was seen while that is
    /// short next to the half-life).
    sum: f64,
    weight: f64,
    baseline_at: u64,
    /// The baseline the last step judged the rate by.
    judged_by: f64,
    rate: Option<f64>,
    count: u64,
}

impl RumTrack {
    fn baseline(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }

    /// Time-weighted EWMA: the rate counts for the time since the previous sample (the first
    /// one for at least a millisecond).
    fn add_sample(&mut self, rate: f64, now: u64, half_life: Duration) {
        let mut dt = now.saturating_sub(self.baseline_at) as f64;
        if self.weight == 0.0 {
            dt = dt.max(1.0);
        }
        let hl = half_life.as_secs_f64() * 1000.0;
        let decay = if hl > 0.0 { 0.5f64.powf(dt / hl) } else { 0.0 };
        self.sum = self.sum * decay + (1.0 - decay) * rate;
        self.weight = self.weight * decay + (1.0 - decay);
        self.baseline_at = now;
    }
}

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
    tracks: [Track; 3],
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
            tracks: [Track::default(); 3],
            rum: RumTrack {
                spiking: false,
                calm_since: Some(now_ms),
                sum: 0.0,
                weight: 0.0,
                baseline_at: now_ms,
                judged_by: 0.0,
                rate: None,
                count: 0,
            },
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

    /// Since when the machine has been in [`Self::state`].
    pub fn machine_since_ms(&self) -> u64 {
        self.machine_since
    }

    /// Why the machine is in [`Self::state`] (differs from [`Self::reason`] under an override).
    pub fn machine_reason(&self) -> &str {
        &self.machine_reason
    }

    pub fn current_override(&self) -> Option<&Override> {
        self.ovr.as_ref()
    }

    /// The hard failure a Down machine is waiting to recover from.
    pub fn hard_failure_at(&self) -> Option<u64> {
        self.hard_at
    }

    /// When the machine last recovered from Down. Everything observed up to then was judged
    /// already (it took the target down, then its recovery conditions held), so the signals of
    /// later steps must count only what came after it ([`Signals::from_target`]): a recovered
    /// target cannot be failed again by the outage it recovered from, whatever the fail and
    /// recovery windows are.
    pub fn judged_until(&self) -> Option<u64> {
        self.judged_until
    }

    /// The RUM complaint-rate baseline, once there is one.
    pub fn rum_baseline(&self) -> Option<f64> {
        self.rum.baseline()
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
                        let reason = self.rum_spike_text(th);
                        self.machine_to(Status::Degraded, reason, now, &mut out);
                    }
                } else if self.state == Status::Degraded
                    && self
                        .rum_calm_for(now)
                        .is_some_and(|c| c >= ms(th.rum.recover_for))
                    && dwell_over
                {
                    let reason = self.rum_back_text(th);
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
                        format!("{reason}; still degraded: {}", self.rum_spike_text(th))
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
        let mut fails = Vec::new();
        let e = &th.error_rate;
        let (active, holds, value) = if e.enabled {
            let s = &sig.stats[e.window.index()];
            if s.count >= e.min_samples.max(1) {
                let lb = wilson_lower(s.failures, s.count, e.z);
                if lb > e.fail_above {
                    fails.push(format!(
                        "error rate {} > {} over {} (lower bound {}, {} checks)",
                        pct(s.failures as f64 / s.count as f64),
                        pct_th(e.fail_above),
                        e.window,
                        pct(lb),
                        s.count
                    ));
                }
            }
            let r = &sig.stats[e.recover_window.index()];
            let v = r.error_rate.filter(|_| r.count > 0);
            (v.is_some(), v.is_some_and(|x| x < e.recover_below), v)
        } else {
            (false, false, None)
        };
        self.track(Rule::ErrorRate, active, holds, value, now);

        let l = &th.latency;
        let (active, holds, value) = if l.enabled {
            let s = &sig.stats[l.window.index()];
            if let Some(p) = s.p95
                && s.count >= l.min_samples
                && p > l.fail_above
            {
                fails.push(format!(
                    "p95 {} > {} over {}",
                    secs(p),
                    dur_th(l.fail_above),
                    l.window
                ));
            }
            let v = sig.stats[l.recover_window.index()].p95;
            (
                v.is_some(),
                v.is_some_and(|p| p < l.recover_below),
                v.map(|p| p.as_secs_f64()),
            )
        } else {
            (false, false, None)
        };
        self.track(Rule::Latency, active, holds, value, now);

        let a = &th.availability;
        let (active, holds, value) = if a.enabled {
            let s = &sig.stats[a.window.index()];
            // A target seen for a few seconds says little about its availability over
            // minutes: the rule needs a fifth of its window known.
            if let Some(av) = s.availability
                && s.count >= a.min_samples
                && s.availability_known >= a.window.duration() / 5
                && av < a.fail_below
            {
                fails.push(format!(
                    "availability {} < {} over {}",
                    pct(av),
                    pct_th(a.fail_below),
                    a.window
                ));
            }
            let v = sig.stats[a.recover_window.index()].availability;
            (v.is_some(), v.is_some_and(|x| x > a.recover_above), v)
        } else {
            (false, false, None)
        };
        self.track(Rule::Availability, active, holds, value, now);

        self.evaluate_rum(sig, &th.rum, now);
        fails
    }

    fn track(&mut self, rule: Rule, active: bool, holds: bool, value: Option<f64>, now: u64) {
        let t = &mut self.tracks[rule.index()];
        t.active = active;
        t.value = value;
        t.since = if holds {
            Some(t.since.unwrap_or(now))
        } else {
            None
        };
    }

    fn evaluate_rum(&mut self, sig: &Signals, r: &RumRule, now: u64) {
        let stats = sig
            .rum
            .as_ref()
            .filter(|_| r.enabled)
            .map(|s| &s[r.window.index()]);
        let rt = &mut self.rum;
        // Time not sampled (spiking, too few beacons, no data) does not count toward the
        // baseline: the next sample weighs one step, not the whole gap.
        let skip = |rt: &mut RumTrack| rt.baseline_at = now;
        let Some(s) = stats else {
            skip(rt);
            rt.rate = None;
            rt.count = 0;
            if rt.spiking {
                rt.spiking = false;
                rt.calm_since = Some(now);
            }
            return;
        };
        let rate = if s.count > 0 {
            s.failures as f64 / s.count as f64
        } else {
            0.0
        };
        rt.rate = (s.count > 0).then_some(rate);
        rt.count = s.count;
        let enough = s.count >= r.min_samples.max(1);
        let Some(base) = rt.baseline() else {
            if enough {
                rt.add_sample(rate, now, r.baseline_half_life);
            } else {
                skip(rt);
            }
            return;
        };
        rt.judged_by = base;
        let spike = enough && rate >= r.min_rate && rate > r.spike_factor * base;
        let back = !enough || rate < r.min_rate || rate <= r.back_factor * base;
        if rt.spiking && back {
            rt.spiking = false;
            rt.calm_since = Some(now);
        } else if !rt.spiking && spike {
            rt.spiking = true;
            rt.calm_since = None;
        }
        if !rt.spiking && enough {
            rt.add_sample(rate, now, r.baseline_half_life);
        } else {
            skip(rt);
        }
    }

    /// How long it has not been spiking; None while spiking.
    fn rum_calm_for(&self, now: u64) -> Option<u64> {
        self.rum.calm_since.map(|c| now.saturating_sub(c))
    }

    fn rum_spike_text(&self, th: &Thresholds) -> String {
        let r = &th.rum;
        format!(
            "RUM complaint rate {} > {} × baseline {} over {} ({} beacons)",
            pct(self.rum.rate.unwrap_or(0.0)),
            num(r.spike_factor),
            pct(self.rum.judged_by),
            r.window,
            self.rum.count
        )
    }

    fn rum_back_text(&self, th: &Thresholds) -> String {
        let r = &th.rum;
        let base = self.rum.judged_by;
        match self.rum.rate {
            _ if !r.enabled => "RUM complaints no longer watched".into(),
            None if self.rum.count == 0 => "no RUM data".into(),
            _ if self.rum.count < r.min_samples => format!(
                "too few RUM beacons ({} < {} over {})",
                self.rum.count, r.min_samples, r.window
            ),
            Some(rate) if rate < r.min_rate => format!(
                "RUM complaint rate {} < {} over {}",
                pct(rate),
                pct_th(r.min_rate),
                r.window
            ),
            rate => format!(
                "RUM complaints back to baseline: {} ≤ {} × baseline {} over {}",
                pct(rate.unwrap_or(0.0)),
                num(r.back_factor),
                pct(base),
                r.window
            ),
        }
    }

    /// Where each enabled fail rule's recovery condition stands: whether it held at the last
    /// step, and for how long by `now_ms`.
    pub fn recovery(&self, now_ms: u64) -> Vec<RecoveryCheck> {
        let th = &self.th;
        let floor = if self.state == Status::Down {
            self.hard_at
        } else {
            None
        };
        let mut out = Vec::new();
        for rule in Rule::ALL {
            let t = &self.tracks[rule.index()];
            let (enabled, condition, need, win) = match rule {
                Rule::ErrorRate => {
                    let e = &th.error_rate;
                    let c = format!("error rate < {}", pct_th(e.recover_below));
                    (e.enabled, c, e.recover_for, e.recover_window)
                }
                Rule::Latency => {
                    let l = &th.latency;
                    let c = format!("p95 < {}", dur_th(l.recover_below));
                    (l.enabled, c, l.recover_for, l.recover_window)
                }
                Rule::Availability => {
                    let a = &th.availability;
                    let c = format!("availability > {}", pct_th(a.recover_above));
                    (a.enabled, c, a.recover_for, a.recover_window)
                }
            };
            if !enabled {
                continue;
            }
            let held = t.since.map(|s| {
                let s = floor.map_or(s, |f| s.max(f));
                Duration::from_millis(now_ms.saturating_sub(s))
            });
            let current = t.value.map(|v| match rule {
                Rule::Latency => format!("{} over {win}", secs(Duration::from_secs_f64(v))),
                _ => format!("{} over {win}", pct(v)),
            });
            out.push(RecoveryCheck {
                rule,
                condition,
                active: t.active,
                held,
                need,
                current,
            });
        }
        out
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
                let r = &self.th.rum;
                s += &format!(
                    "; healthy again when the RUM complaint rate is ≤ {} × baseline {} or < {} \
                     (now {} over {}, {} beacons)",
                    num(r.back_factor),
                    pct(self.rum.baseline().unwrap_or(0.0)),
                    pct_th(r.min_rate),
                    self.rum.rate.map_or_else(|| "-".into(), pct),
                    r.window,
                    self.rum.count
                );
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

// ---------------------------------------------------------------------------------------------
// Formatting

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A measured fraction: "7.2 %".
fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// A number without trailing zeros: 3 → "3", 1.5 → "1.5".
fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A configured fraction: 0.05 → "5 %", 0.999 → "99.9 %".
fn pct_th(x: f64) -> String {
    format!("{} %", num(x * 100.0))
}

/// A measured latency: "2.31 s", "312 ms".
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

/// A configured latency: "2 s", "500 ms", "1.5 s".
fn dur_th(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{} s", num(s))
    } else {
        format!("{} ms", num(s * 1000.0))
    }
}

/// A span: "5m0s", "2m10s", "45s", "1h2m3s" (whole seconds, rounded down).
pub fn hms(d: Duration) -> String {
    let t = d.as_secs();
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// "12:03:10 UTC", or "2024-05-01 12:03:10 UTC" when `at_ms` is not on the same UTC day as
/// `ref_ms`.
pub fn fmt_utc(at_ms: u64, ref_ms: u64) -> String {
    let secs = at_ms / 1000;
    let (day, tod) = (secs / 86_400, secs % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", tod / 3600, tod / 60 % 60, tod % 60);
    if day == ref_ms / 1000 / 86_400 {
        return format!("{clock} UTC");
    }
    let date = time::OffsetDateTime::from_unix_timestamp(day as i64 * 86_400)
        .map_or(time::OffsetDateTime::UNIX_EPOCH.date(), |t| t.date());
    let (y, m, d) = (date.year(), u8::from(date.month()), date.day());
    format!("{y:04}-{m:02}-{d:02} {clock} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Observation, Series, WindowConfig};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// 2023-11-14 22:13:20 UTC.
    const T0: u64 = 1_700_000_000_000;

    fn at(sec: u64) -> u64 {
        T0 + sec * 1000
    }

    /// What the prober reports in one simulated second (one check a second, from one vantage).
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Check {
        /// Passes in 50 ms.
        Ok,
        /// Passes in this many ms.
        Slow(u64),
        /// Fails; the target stays down for this vantage until the next check.
        Fail,
        /// Fails, and the prober's re-check 100 ms later passes (a transient failure).
        Transient,
        Skip,
    }

    struct StepLog {
        sec: u64,
        sig: Signals,
        events: Vec<Transition>,
        eff: EffectiveStatus,
    }

    struct Sim {
        health: TargetHealth,
        rum: Series,
        rum_on: bool,
        m: TargetMachine,
        th: Thresholds,
        /// The next second to simulate.
        sec: u64,
        confirmed: Option<u64>,
    }

    fn obs(at_ms: u64, ok: bool, lat: u64) -> Observation {
        Observation {
            target: "cdn-a".into(),
            level: Level::Check,
            vantage: "local".into(),
            at_ms,
            ok,
            latency: Duration::from_millis(lat),
            detail: String::new(),
            cache: None,
        }
    }

    impl Sim {
        /// The simulations were written for the Wilson bound at z = 1.96 (their exact tripping
        /// steps depend on it); the default z (3) is checked on its own below.
        fn new(mut th: Thresholds) -> Sim {
            th.error_rate.z = 1.96;
            Sim {
                health: TargetHealth::new(WindowConfig::default()),
                rum: Series::new(WindowConfig::default()),
                rum_on: false,
                m: TargetMachine::new("cdn-a".into(), T0),
                th,
                sec: 0,
                confirmed: None,
            }
        }

        /// Simulates the seconds `self.sec ..= last`: each records its check (at the round
        /// second) and its RUM beacons (beacons, complaints), then steps at half past.
        fn run_rum(
            &mut self,
            last: u64,
            mut f: impl FnMut(u64) -> (Check, u32, u32),
        ) -> Vec<StepLog> {
            let mut log = Vec::new();
            while self.sec <= last {
                let s = self.sec;
                let t = at(s);
                let (check, beacons, complaints) = f(s);
                match check {
                    Check::Ok => assert!(self.health.record(&obs(t, true, 50))),
                    Check::Slow(l) => assert!(self.health.record(&obs(t, true, l))),
                    Check::Fail => assert!(self.health.record(&obs(t, false, 2000))),
                    Check::Transient => {
                        assert!(self.health.record(&obs(t, false, 2000)));
                        assert!(self.health.record(&obs(t + 100, true, 50)));
                    }
                    Check::Skip => {}
                }
                for i in 0..beacons {
                    self.rum_on = true;
                    let ok = i >= complaints;
                    self.rum.record("rum", t + u64::from(i), ok, None, None);
                }
                let now = t + 500;
                let mut sig = Signals::from_target(
                    &mut self.health,
                    now,
                    self.confirmed,
                    self.m.judged_until(),
                );
                if self.rum_on {
                    sig.rum = Some(self.rum.all_stats(now));
                }
                let events = self.m.step(&sig, &self.th, now);
                for e in &events {
                    assert_eq!(e.at_ms, now);
                    assert_eq!(&*e.target, "cdn-a");
                    assert_ne!(e.from, e.to);
                }
                log.push(StepLog {
                    sec: s,
                    sig,
                    events,
                    eff: self.m.effective(),
                });
                self.sec += 1;
            }
            log
        }

        fn run(&mut self, last: u64, mut f: impl FnMut(u64) -> Check) -> Vec<StepLog> {
            self.run_rum(last, |s| (f(s), 0, 0))
        }
    }

    fn events(log: &[StepLog]) -> Vec<(u64, Transition)> {
        log.iter()
            .flat_map(|l| l.events.iter().map(|e| (l.sec, e.clone())))
            .collect()
    }

    /// The defaults with only these fail rules enabled (RUM off).
    fn only(rules: &[Rule]) -> Thresholds {
        let mut th = Thresholds::default();
        th.error_rate.enabled = rules.contains(&Rule::ErrorRate);
        th.latency.enabled = rules.contains(&Rule::Latency);
        th.availability.enabled = rules.contains(&Rule::Availability);
        th.rum.enabled = false;
        th
    }

    fn state_at(log: &[StepLog], sec: u64) -> EffectiveStatus {
        log.iter().find(|l| l.sec == sec).expect("simulated").eff
    }

    /// At most one Down, and no two transitions closer than the minimum dwell.
    fn assert_no_flap(ev: &[(u64, Transition)], min_dwell: Duration) {
        let downs = ev
            .iter()
            .filter(|(_, e)| e.to == EffectiveStatus::Down)
            .count();
        assert!(downs <= 1, "{ev:#?}");
        for w in ev.windows(2) {
            assert!(w[1].1.at_ms - w[0].1.at_ms >= ms(min_dwell), "{ev:#?}");
        }
    }

    #[test]
    fn wilson_bound() {
        assert_eq!(wilson_lower(0, 0, 1.96), 0.0);
        assert_eq!(wilson_lower(0, 100, 1.96), 0.0);
        assert!(wilson_lower(100, 100, 1.96) < 1.0);
        // 60 checks: the 7th failure is the first whose lower bound is above 5 %.
        assert!(wilson_lower(6, 60, 1.96) < 0.05);
        assert!(wilson_lower(7, 60, 1.96) > 0.05);
        // More checks, tighter bound.
        assert!(wilson_lower(70, 600, 1.96) > wilson_lower(7, 60, 1.96));
        // z = 0: the point estimate.
        assert!((wilson_lower(7, 60, 0.0) - 7.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_utc(T0, T0), "22:13:20 UTC");
        assert_eq!(fmt_utc(T0 + 86_400_000, T0), "2023-11-15 22:13:20 UTC");
        assert_eq!(fmt_utc(0, T0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(951_782_400_000, 0), "2000-02-29 00:00:00 UTC");
        assert_eq!(hms(Duration::from_secs(300)), "5m0s");
        assert_eq!(hms(Duration::from_millis(130_999)), "2m10s");
        assert_eq!(hms(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(hms(Duration::from_secs(7)), "7s");
        assert_eq!(pct_th(0.05), "5 %");
        assert_eq!(pct_th(0.999), "99.9 %");
        assert_eq!(dur_th(Duration::from_secs(2)), "2 s");
        assert_eq!(dur_th(Duration::from_millis(500)), "500 ms");
        assert_eq!(secs(Duration::from_millis(2312)), "2.31 s");
        for e in EffectiveStatus::ALL {
            assert_eq!(EffectiveStatus::parse(e.as_str()), Some(e));
        }
        for k in OverrideKind::ALL {
            assert_eq!(OverrideKind::parse(k.as_str()), Some(k));
        }
        let usable: Vec<&str> = EffectiveStatus::ALL
            .into_iter()
            .filter(|e| e.usable())
            .map(|e| e.as_str())
            .collect();
        assert_eq!(usable, ["healthy", "degraded", "forced_up"]);
        assert!(EffectiveStatus::Degraded.is_degraded());
        assert!(!EffectiveStatus::Down.is_degraded());
        assert!(Thresholds::default().problems().is_empty());
        let mut bad = Thresholds::default();
        bad.error_rate.recover_below = 0.2;
        bad.availability.fail_below = 1.5;
        assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    }

    #[test]
    fn no_data_is_healthy() {
        let mut m = TargetMachine::new("cdn-a".into(), T0);
        assert_eq!(m.effective(), EffectiveStatus::Healthy);
        assert_eq!(m.reason(), "no data yet");
        let th = Thresholds::default();
        for s in 0..900 {
            assert!(m.step(&Signals::empty(), &th, at(s)).is_empty());
        }
        assert_eq!(m.effective(), EffectiveStatus::Healthy);
        assert_eq!(m.reason(), "no data yet");
        assert_eq!(m.since_ms(), T0);
        assert!(!m.unstable(at(900)));
        assert_eq!(m.explain(), "healthy since 22:13:20 UTC: no data yet");
        // A hard failure before any check at all still counts.
        let sig = Signals {
            confirmed_down_at: Some(at(900)),
            ..Signals::empty()
        };
        let ev = m.step(&sig, &th, at(900) + 1);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].to, EffectiveStatus::Down);
        assert!(
            m.explain()
                .contains("a passing check after the hard failure at 22:28:20 UTC")
        );
        assert!(
            m.explain()
                .contains("check data (none in the recovery windows)")
        );
    }

    #[test]
    fn error_rate_threshold_and_recovery() {
        let mut sim = Sim::new(only(&[Rule::ErrorRate]));
        let log = sim.run(599, |_| Check::Ok);
        assert!(events(&log).is_empty());
        assert_eq!(sim.m.reason(), "no failure rule tripped");
        assert!(!sim.m.unstable(at(599)));
        let f = 600;
        let log = sim.run(f + 29, |_| Check::Fail);
        // The window says so: the first step where the Wilson bound of the 1m window exceeds 5 %
        // is the 7th failure (7 of 60: 11.7 %, bound 5.8 %; 6 of 60 gives 4.7 %), although the
        // point rate is above 5 % from the 4th.
        let over = |l: &&StepLog| {
            let s = &l.sig.stats[Win::M1.index()];
            s.count >= 10 && wilson_lower(s.failures, s.count, 1.96) > 0.05
        };
        let first = log.iter().find(over).expect("crosses").sec;
        assert_eq!(first, f + 6);
        let point = log
            .iter()
            .find(|l| l.sig.stats[0].error_rate.unwrap() > 0.05)
            .unwrap();
        assert_eq!(point.sec, f + 3);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, first);
        assert_eq!(
            (ev[0].1.from, ev[0].1.to),
            (EffectiveStatus::Healthy, EffectiveStatus::Down)
        );
        assert_eq!(
            ev[0].1.reason,
            "error rate 11.7 % > 5 % over 1m (lower bound 5.8 %, 60 checks)"
        );
        assert_eq!(sim.m.since_ms(), at(f + 6) + 500);
        assert!(sim.m.unstable(at(f + 29)));
        // Passing from f + 30: the 1m window is clean from f + 29 + 60 on, the condition holds
        // from that step, and the target is back 5 min later, not a second sooner.
        let holds_from = f + 89;
        let log = sim.run(holds_from + 130, |_| Check::Ok);
        let clean = log
            .iter()
            .find(|l| l.sig.stats[0].failures == 0)
            .expect("clean")
            .sec;
        assert_eq!(clean, holds_from);
        assert!(events(&log).is_empty());
        let x = sim.m.explain();
        assert!(
            x.starts_with("down since 22:23:26 UTC: error rate 11.7 %"),
            "{x}"
        );
        assert!(
            x.contains("recovery waits for error rate < 1 % held 2m10s of 5m0s"),
            "{x}"
        );
        assert!(sim.m.unstable(at(holds_from + 130)));
        let log = sim.run(holds_from + 400, |_| Check::Ok);
        assert_eq!(state_at(&log, holds_from + 299), EffectiveStatus::Down);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, holds_from + 300);
        assert_eq!(ev[0].1.to, EffectiveStatus::Healthy);
        assert_eq!(ev[0].1.reason, "recovered: error rate < 1 % for 5m0s");
        assert_eq!(sim.m.reason(), "recovered: error rate < 1 % for 5m0s");
        // Unstable for 10 min after the change, then not.
        assert!(sim.m.unstable(at(holds_from + 300) + 500 + 599_999));
        assert!(!sim.m.unstable(at(holds_from + 300) + 500 + 600_000));
    }

    #[test]
    fn latency_threshold_and_recovery() {
        let mut sim = Sim::new(only(&[Rule::Latency]));
        sim.run(599, |_| Check::Ok);
        let f = 600;
        let log = sim.run(f + 19, |_| Check::Slow(3000));
        // Nearest-rank p95 of 60 samples is the 57th: above 2 s once 4 are slow.
        let first = log
            .iter()
            .find(|l| l.sig.stats[0].p95.unwrap() > Duration::from_secs(2))
            .unwrap()
            .sec;
        assert_eq!(first, f + 3);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, first);
        assert_eq!(ev[0].1.to, EffectiveStatus::Down);
        let r = &ev[0].1.reason;
        assert!(
            r.starts_with("p95 ") && r.ends_with(" s > 2 s over 1m"),
            "{r}"
        );
        // Fast again from f + 20; p95 < 500 ms once at most 3 slow samples are left in the
        // window: from f + 19 + 57.
        let holds_from = f + 76;
        let log = sim.run(holds_from + 400, |_| Check::Ok);
        let fast = log
            .iter()
            .find(|l| l.sig.stats[0].p95.unwrap() < Duration::from_millis(500))
            .unwrap()
            .sec;
        assert_eq!(fast, holds_from);
        assert_eq!(state_at(&log, holds_from + 299), EffectiveStatus::Down);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, holds_from + 300);
        assert_eq!(ev[0].1.reason, "recovered: p95 < 500 ms for 5m0s");
    }

    #[test]
    fn availability_threshold_and_recovery() {
        let mut sim = Sim::new(only(&[Rule::Availability]));
        sim.run(599, |_| Check::Ok);
        // A failure every 20 s, each down for a second: over 5m (300 s) 3 s down is exactly 99 %;
        // the step half a second into the 4th failure is the first below.
        let f = 600;
        let log = sim.run(f + 60, |s| {
            if (s - f) % 20 == 0 {
                Check::Fail
            } else {
                Check::Ok
            }
        });
        let first = log
            .iter()
            .find(|l| l.sig.stats[Win::M5.index()].availability.unwrap() < 0.99)
            .unwrap()
            .sec;
        assert_eq!(first, f + 60);
        assert_eq!(log[41].sig.stats[Win::M5.index()].availability, Some(0.99));
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, first);
        assert_eq!(ev[0].1.reason, "availability 98.8 % < 99 % over 5m");
        // No more failures: over 1m nothing is down from the step at f + 121 (the last failure
        // ended at f + 61.0 and the window then starts at f + 61.5); back 10 min later.
        let holds_from = f + 121;
        let log = sim.run(holds_from + 700, |_| Check::Ok);
        let up = log
            .iter()
            .find(|l| l.sig.stats[0].availability.unwrap() > 0.999)
            .unwrap()
            .sec;
        assert_eq!(up, holds_from);
        assert_eq!(state_at(&log, holds_from + 599), EffectiveStatus::Down);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, holds_from + 600);
        assert_eq!(ev[0].1.reason, "recovered: availability > 99.9 % for 10m0s");
    }

    #[test]
    fn outage_with_default_thresholds() {
        let th = Thresholds::default();
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        let f = 600;
        let log = sim.run(f + 59, |_| Check::Fail);
        // With one check a second and failures that last until the next check, availability
        // over 5m (3.5 s down of 300) trips before the error rate does.
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, f + 3);
        assert_eq!(ev[0].1.reason, "availability 98.8 % < 99 % over 5m");
        // A later step where several rules trip would name them all; here it is down already.
        let last_fail = f + 59;
        let log = sim.run(last_fail + 200, |_| Check::Ok);
        assert!(events(&log).is_empty());
        let x = sim.m.explain();
        // error rate clean from last_fail + 60, availability from last_fail + 61, p95 from the
        // first pass (p95 had no data while every check failed).
        assert!(x.contains("error rate < 1 % held 2m20s of 5m0s"), "{x}");
        assert!(x.contains("p95 < 500 ms held 3m19s of 5m0s"), "{x}");
        assert!(
            x.contains("availability > 99.9 % held 2m19s of 10m0s"),
            "{x}"
        );
        let log = sim.run(last_fail + 700, |_| Check::Ok);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, last_fail + 61 + 600);
        assert_eq!(
            ev[0].1.reason,
            "recovered: error rate < 1 % for 10m1s, p95 < 500 ms for 11m0s, \
             availability > 99.9 % for 10m0s"
        );
    }

    #[test]
    fn notes_explain_recoveries_shorter_than_the_fail_windows() {
        assert!(Thresholds::default().notes().is_empty());
        let mut th = Thresholds::default();
        th.availability.recover_for = Duration::from_secs(20);
        let notes = th.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0, "health.availability_recover_for");
        assert!(
            notes[0]
                .1
                .contains("recover 20s after its availability is clean over 1m")
        );
        assert!(notes[0].1.contains("reads 5m"), "{}", notes[0].1);
    }

    /// The reported flap: short recovery windows (20 s) under a 5-minute availability fail
    /// window. A 10-second outage fails the target once; after its recovery the old failures,
    /// still inside the 5-minute window, must not fail it again.
    #[test]
    fn a_short_outage_fails_once_and_recovers_once_with_short_recovery_windows() {
        let mut th = Thresholds::default();
        th.error_rate.recover_for = Duration::from_secs(20);
        th.latency.recover_for = Duration::from_secs(20);
        th.availability.recover_for = Duration::from_secs(20);
        th.min_dwell = Duration::from_secs(5);
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        let mut log = sim.run(609, |_| Check::Fail);
        log.extend(sim.run(600 + 900, |_| Check::Ok));
        let ev = events(&log);
        let kinds: Vec<(u64, &str, &str)> = ev
            .iter()
            .map(|(s, t)| (*s, t.from.as_str(), t.to.as_str()))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert_eq!((kinds[0].1, kinds[0].2), ("healthy", "down"), "{kinds:?}");
        assert_eq!((kinds[1].1, kinds[1].2), ("down", "healthy"), "{kinds:?}");
        // It came back once the 1-minute recovery windows were clean for 20 s.
        assert!(kinds[1].0 > 609 + 60 && kinds[1].0 < 609 + 120, "{kinds:?}");
        assert_eq!(sim.m.judged_until(), Some(at(kinds[1].0) + 500));
        let x = sim.m.explain();
        assert!(x.starts_with("healthy since"), "{x}");
    }

    /// A Down target whose observations stop (an agent fell silent) keeps its state while the
    /// windows still hold its failures, then goes back to the no-data default.
    #[test]
    fn a_silent_down_target_goes_back_to_the_no_data_default() {
        let mut sim = Sim::new(Thresholds::default());
        sim.run(599, |_| Check::Ok);
        let log = sim.run(659, |_| Check::Fail);
        assert_eq!(events(&log).len(), 1);
        assert_eq!(sim.m.effective(), EffectiveStatus::Down);
        // Five silent minutes: still down (its failures are in the windows).
        let log = sim.run(659 + 300, |_| Check::Skip);
        assert!(events(&log).is_empty());
        let log = sim.run(659 + 700, |_| Check::Skip);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        // The last failure (second 659) speaks for its vantage for `max_gap` (60 s) more: the
        // 10-minute window is empty 600 s after that.
        assert_eq!(ev[0].0, 659 + 60 + 600);
        assert_eq!(ev[0].1.to, EffectiveStatus::Healthy);
        assert!(
            ev[0]
                .1
                .reason
                .starts_with("no health data for 10m0s (down since"),
            "{}",
            ev[0].1.reason
        );
        // When checks come back failing, it fails again (new evidence).
        let log = sim.run(659 + 760, |_| Check::Fail);
        assert_eq!(events(&log).len(), 1);
        assert_eq!(sim.m.effective(), EffectiveStatus::Down);
    }

    /// Property: one outage (every check failing for a while, then passing for good) gives at
    /// most one down → healthy cycle, whatever the fail and recovery windows, durations, dwell
    /// and the outage's length and start.
    #[test]
    fn one_outage_gives_at_most_one_down_healthy_cycle() {
        let mut rng = StdRng::seed_from_u64(7);
        let wins = [Win::M1, Win::M5, Win::M10];
        for case in 0..60 {
            let mut th = Thresholds::default();
            let secs =
                |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_secs(rng.gen_range(lo..=hi));
            th.error_rate.window = wins[rng.gen_range(0..3)];
            th.error_rate.recover_window = wins[rng.gen_range(0..3)];
            th.error_rate.recover_for = secs(&mut rng, 0, 300);
            th.latency.recover_for = th.error_rate.recover_for;
            th.availability.window = wins[rng.gen_range(0..3)];
            th.availability.recover_window = wins[rng.gen_range(0..3)];
            th.availability.recover_for = secs(&mut rng, 0, 600);
            th.min_dwell = secs(&mut rng, 0, 60);
            let mut sim = Sim::new(th);
            let start = rng.gen_range(0..120);
            sim.run(599 + start, |_| Check::Ok);
            let outage = rng.gen_range(1..=240);
            let hard = rng.gen_bool(0.3);
            let first = sim.sec;
            let mut log = sim.run(first + outage - 1, |_| Check::Fail);
            if hard {
                sim.confirmed = Some(at(first) + 300);
            }
            log.extend(sim.run(first + outage + 1500, |_| Check::Ok));
            let ev = events(&log);
            let recoveries = ev
                .iter()
                .filter(|(_, t)| t.from == EffectiveStatus::Down && t.to.usable())
                .count();
            let failures = ev
                .iter()
                .filter(|(_, t)| t.to == EffectiveStatus::Down)
                .count();
            assert!(
                recoveries <= 1 && failures <= 1,
                "case {case}: outage {outage} s from {first}, {th:?}: {:#?}",
                ev.iter()
                    .map(|(s, t)| (s, t.from.as_str(), t.to.as_str(), &t.reason))
                    .collect::<Vec<_>>()
            );
            // It ends healthy: the outage is over and every rule's recovery can be met.
            assert_eq!(sim.m.effective(), EffectiveStatus::Healthy, "case {case}");
        }
    }

    /// How a minute's error rate turns into failing checks.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Draw {
        /// Each check fails with that probability.
        Bernoulli,
        /// That share of the minute's 60 checks fails (rounded at random), at random seconds:
        /// the measured rate of every minute is the drawn one.
        Exact,
    }

    /// Ten minutes passing, then one check a second for `minutes`, at a rate `p` drawn per
    /// minute. Returns the events and the highest Wilson bound the 1m window showed.
    fn random_failures(
        th: Thresholds,
        minutes: u64,
        seed: u64,
        kind: Check,
        draw: Draw,
        p: impl Fn(&mut StdRng) -> f64,
    ) -> (Vec<(u64, Transition)>, f64) {
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rate = 0.0;
        let mut failing = [false; 60];
        let log = sim.run(599 + minutes * 60, |s| {
            if s % 60 == 0 {
                rate = p(&mut rng);
                let share = rate * 60.0;
                let n = share.floor() as usize + usize::from(rng.gen_bool(share.fract()));
                failing = [false; 60];
                for i in rand::seq::index::sample(&mut rng, 60, n) {
                    failing[i] = true;
                }
            }
            let fail = match draw {
                Draw::Bernoulli => rng.gen_bool(rate),
                Draw::Exact => failing[(s % 60) as usize],
            };
            if fail { kind } else { Check::Ok }
        });
        let max_lb = log
            .iter()
            .map(|l| {
                let s = &l.sig.stats[0];
                wilson_lower(s.failures, s.count, 1.96)
            })
            .fold(0.0, f64::max);
        (events(&log), max_lb)
    }

    #[test]
    fn error_rate_around_5_percent_does_not_flap() {
        let dwell = Thresholds::default().min_dwell;
        let around5 = |r: &mut StdRng| r.gen_range(0.04..0.06);
        let mut downs = 0;
        for seed in 0..4 {
            for draw in [Draw::Bernoulli, Draw::Exact] {
                // Failures the prober's re-check clears at once (as it does for a transient
                // failure), default thresholds.
                let (ev, _) = random_failures(
                    Thresholds::default(),
                    30,
                    seed,
                    Check::Transient,
                    draw,
                    around5,
                );
                assert_no_flap(&ev, dwell);
                downs += ev.len();
                // Failures that last until the next check, the error rate rule alone.
                let th = only(&[Rule::ErrorRate]);
                let (ev, _) = random_failures(th, 30, seed, Check::Fail, draw, around5);
                assert_no_flap(&ev, dwell);
                // Once down, it stays down: < 1 % over 1m never holds for 5 min.
                assert!(ev.len() <= 1, "{ev:#?}");
                downs += ev.len();
            }
        }
        assert!(downs >= 1, "some runs should cross the bound");
        // Alternating 3 % / 15 % minutes: down in the first bad minute, never back.
        let mut sim = Sim::new(only(&[Rule::ErrorRate]));
        sim.run(599, |_| Check::Ok);
        let log = sim.run(599 + 30 * 60, |s| {
            let (minute, sec) = (s / 60, s % 60);
            let failing = if minute % 2 == 0 {
                sec == 10 || sec == 40
            } else {
                sec % 7 == 3
            };
            if failing { Check::Fail } else { Check::Ok }
        });
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].1.to, EffectiveStatus::Down);
    }

    #[test]
    fn error_rate_jitter_3_to_4_percent_never_transitions() {
        // Every minute measures 3–4 % (1 to 3 failures of 60 checks): at most 6 in any 60 s,
        // a bound of 4.7 % at most.
        let jitter = |r: &mut StdRng| r.gen_range(0.03..0.04);
        for seed in 0..10 {
            let th = Thresholds::default();
            let (ev, max_lb) = random_failures(th, 10, seed, Check::Transient, Draw::Exact, jitter);
            assert!(ev.is_empty(), "seed {seed}: {ev:#?}");
            assert!(max_lb < 0.05);
            let th = only(&[Rule::ErrorRate]);
            let (ev, max_lb) = random_failures(th, 10, seed, Check::Fail, Draw::Exact, jitter);
            assert!(ev.is_empty(), "seed {seed}: {ev:#?}");
            assert!(max_lb < 0.05);
        }
    }

    #[test]
    fn plain_3_percent_failures_trip_availability_once() {
        // Failures lasting a whole check interval cost availability: 3 % of the time down is
        // below 99 % over 5m. One Down, and no way back while it goes on.
        let (ev, _) = random_failures(
            Thresholds::default(),
            30,
            1,
            Check::Fail,
            Draw::Exact,
            |r| r.gen_range(0.03..0.04),
        );
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert!(ev[0].1.reason.starts_with("availability "), "{ev:#?}");
    }

    #[test]
    fn hard_failure() {
        let mut th = Thresholds::default();
        th.rum.enabled = false;
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        // The burst fails at 600; the prober confirms it 300 ms later. Down at that step.
        let f = 600;
        sim.confirmed = Some(at(f) + 300);
        let log = sim.run(f, |_| Check::Fail);
        let ev = events(&log);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1.to, EffectiveStatus::Down);
        assert_eq!(
            ev[0].1.reason,
            "hard failure confirmed by the prober at 22:23:20 UTC"
        );
        assert_eq!(sim.m.hard_failure_at(), Some(at(f) + 300));
        let log = sim.run(f + 30, |_| Check::Fail);
        assert!(events(&log).is_empty());
        assert!(
            sim.m
                .explain()
                .contains("recovery waits for a passing check after the hard failure at 22:23:20")
        );
        // Passing from f + 31: error rate clean from f + 90, availability from f + 91; back
        // 10 min after that. The caller still passes the old confirmation: not newer than the
        // transition, it is ignored.
        let log = sim.run(f + 91 + 600, |_| Check::Ok);
        assert_eq!(state_at(&log, f + 91 + 599), EffectiveStatus::Down);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, f + 91 + 600);
        assert!(
            ev[0]
                .1
                .reason
                .starts_with("recovered after the hard failure at 22:23:20 UTC: error rate < 1 %"),
            "{}",
            ev[0].1.reason
        );
        assert_eq!(sim.m.hard_failure_at(), None);
        // A new hard failure 4 s after that transition, well within the dwell: Down at once.
        let g = f + 695;
        sim.run(g - 1, |_| Check::Ok);
        sim.confirmed = Some(at(g) + 300);
        let log = sim.run(g, |_| Check::Fail);
        let ev = events(&log);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].0, ev[0].1.to), (g, EffectiveStatus::Down));
        // A confirmation older than the newest passing check is stale.
        let mut m = TargetMachine::new("x".into(), T0);
        let sig = Signals {
            confirmed_down_at: Some(T0 + 10),
            last_ok_at: Some(T0 + 20),
            ..Signals::empty()
        };
        assert!(m.step(&sig, &Thresholds::default(), T0 + 30).is_empty());
    }

    #[test]
    fn hard_failure_recovery_counts_from_the_failure() {
        // Windows that never saw the failure (the burst was not recorded): recovery still waits
        // for a passing check after it and then for the recovery durations, counted from it.
        let mut th = Thresholds::default();
        th.rum.enabled = false;
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        sim.confirmed = Some(at(600) + 300);
        let log = sim.run(
            600 + 700,
            |s| if s <= 600 { Check::Skip } else { Check::Ok },
        );
        let ev = events(&log);
        assert_eq!(ev.len(), 2, "{ev:#?}");
        assert_eq!((ev[0].0, ev[0].1.to), (600, EffectiveStatus::Down));
        // Availability's 10 min from 600.3 s: the step at 1200.5 s.
        assert_eq!((ev[1].0, ev[1].1.to), (1200, EffectiveStatus::Healthy));
    }

    #[test]
    fn min_dwell_delays_transitions() {
        let mut th = only(&[Rule::ErrorRate]);
        th.min_dwell = Duration::from_secs(600);
        th.error_rate.recover_for = Duration::from_secs(60);
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        let f = 600;
        let log = sim.run(f + 6, |_| Check::Fail);
        assert_eq!(events(&log).len(), 1);
        // Recovery condition from f + 66, met at f + 126: the dwell holds it to f + 606.
        let log = sim.run(f + 700, |_| Check::Ok);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, f + 606);
        assert_eq!(ev[0].1.reason, "recovered: error rate < 1 % for 9m0s");
        // Failing again right away: due at the 7th failure, held until the dwell is over.
        let g = f + 701;
        let log = sim.run(f + 606 + 600, |_| Check::Fail);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert!(g + 6 < f + 1206);
        assert_eq!((ev[0].0, ev[0].1.to), (f + 1206, EffectiveStatus::Down));
        // Default dwell (30 s): a hard failure the windows never saw, recovery durations of 0:
        // recovery is due at the first passing check, one second later, and waits for the dwell.
        let mut th = only(&[Rule::ErrorRate]);
        th.error_rate.recover_for = Duration::ZERO;
        let mut sim = Sim::new(th);
        sim.run(599, |_| Check::Ok);
        sim.confirmed = Some(at(600) + 300);
        let log = sim.run(700, |s| if s == 600 { Check::Skip } else { Check::Ok });
        let ev = events(&log);
        assert_eq!(ev.len(), 2, "{ev:#?}");
        assert_eq!((ev[0].0, ev[0].1.to), (600, EffectiveStatus::Down));
        assert_eq!((ev[1].0, ev[1].1.to), (630, EffectiveStatus::Healthy));
    }

    #[test]
    fn overrides() {
        let th = only(&[Rule::ErrorRate]);
        let mut sim = Sim::new(th);
        sim.run(99, |_| Check::Ok);
        let now = at(100);
        let o = Override {
            kind: OverrideKind::ForcedDown,
            until_ms: Some(now + 60_000),
            reason: "maintenance".into(),
            set_at_ms: now,
        };
        let ev = sim.m.set_override(Some(o.clone()), now);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].from, ev[0].to),
            (EffectiveStatus::Healthy, EffectiveStatus::ForcedDown)
        );
        assert_eq!(
            ev[0].reason,
            "forced down by operator until 22:16:00 UTC: maintenance"
        );
        assert_eq!(sim.m.effective(), EffectiveStatus::ForcedDown);
        assert!(!sim.m.effective().usable());
        assert_eq!(sim.m.current_override(), Some(&o));
        assert_eq!(sim.m.since_ms(), now);
        // Same kind again: no event, the reason follows.
        let o2 = Override {
            reason: "maintenance, extended".into(),
            until_ms: Some(now + 120_000),
            ..o.clone()
        };
        assert!(sim.m.set_override(Some(o2), now + 1).is_empty());
        assert_eq!(
            sim.m.reason(),
            "forced down by operator until 22:17:00 UTC: maintenance, extended"
        );
        // The machine goes down underneath: no event while overridden.
        let log = sim.run(159, |s| if s >= 100 { Check::Fail } else { Check::Ok });
        assert!(events(&log).is_empty());
        assert_eq!(sim.m.state(), Status::Down);
        assert!(
            sim.m.explain().contains("; underneath down since"),
            "{}",
            sim.m.explain()
        );
        // Expiry at 220 s (T0 + 100 s + 120 s): an event, to the machine's state.
        let log = sim.run(230, |_| Check::Fail);
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, 220);
        assert_eq!(
            (ev[0].1.from, ev[0].1.to),
            (EffectiveStatus::ForcedDown, EffectiveStatus::Down)
        );
        assert!(
            ev[0].1
                .reason
                .starts_with("override expired (forced down: maintenance, extended); down since 22:15:06 UTC: error rate"),
            "{}",
            ev[0].1.reason
        );
        assert!(sim.m.current_override().is_none());
        // Forced up a Down target: usable; cleared by the operator: Down again.
        let now = at(231);
        let up = Override {
            kind: OverrideKind::ForcedUp,
            until_ms: None,
            reason: String::new(),
            set_at_ms: now,
        };
        let ev = sim.m.set_override(Some(up), now);
        assert_eq!(
            (ev[0].from, ev[0].to),
            (EffectiveStatus::Down, EffectiveStatus::ForcedUp)
        );
        assert_eq!(ev[0].reason, "forced up by operator");
        assert!(sim.m.effective().usable());
        // No expiry: stays.
        assert!(events(&sim.run(300, |_| Check::Fail)).is_empty());
        let ev = sim.m.set_override(None, at(301));
        assert_eq!(
            (ev[0].from, ev[0].to),
            (EffectiveStatus::ForcedUp, EffectiveStatus::Down)
        );
        assert!(
            ev[0]
                .reason
                .starts_with("override cleared by operator; down since")
        );
        assert!(sim.m.set_override(None, at(301)).is_empty());
        // Drained with an expiry, on a Healthy target.
        let mut m = TargetMachine::new("b".into(), T0);
        let d = Override {
            kind: OverrideKind::Drained,
            until_ms: Some(T0 + 10_000),
            reason: "moving traffic".into(),
            set_at_ms: T0,
        };
        let ev = m.set_override(Some(d), T0);
        assert_eq!(ev[0].to, EffectiveStatus::Drained);
        assert_eq!(m.effective().as_str(), "drained");
        assert!(!m.effective().usable());
        assert!(m.unstable(T0 + 1));
        let th = Thresholds::default();
        assert!(m.step(&Signals::empty(), &th, T0 + 9_999).is_empty());
        let ev = m.step(&Signals::empty(), &th, T0 + 10_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].from, ev[0].to),
            (EffectiveStatus::Drained, EffectiveStatus::Healthy)
        );
        assert_eq!(ev[0].reason, "override expired (drained: moving traffic)");
        assert_eq!(m.effective(), EffectiveStatus::Healthy);
        // An override takes effect whatever the dwell (here the target just went down).
        let mut m = TargetMachine::new("c".into(), T0);
        let sig = Signals {
            confirmed_down_at: Some(T0),
            ..Signals::empty()
        };
        assert_eq!(m.step(&sig, &th, T0 + 1).len(), 1);
        let ev = m.set_override(
            Some(Override {
                kind: OverrideKind::ForcedUp,
                until_ms: None,
                reason: "false alarm".into(),
                set_at_ms: T0 + 2,
            }),
            T0 + 2,
        );
        assert_eq!(ev[0].to, EffectiveStatus::ForcedUp);
    }

    #[test]
    fn rum_spike_degrades_and_recovers() {
        let mut sim = Sim::new(Thresholds::default());
        // 10 beacons a second, one complaint every 10 s: 1 %.
        let calm = |s: u64| (Check::Ok, 10, u32::from(s.is_multiple_of(10)));
        let log = sim.run_rum(899, calm);
        assert!(events(&log).is_empty());
        let base = sim.m.rum_baseline().expect("baseline");
        assert!((base - 0.01).abs() < 0.001, "{base}");
        // A spike: one beacon in ten complains, for 2 min.
        let f = 900;
        let log = sim.run_rum(f + 119, |_| (Check::Ok, 10, 1));
        // The baseline is frozen while spiking: this is the one the spike was judged by.
        let base = sim.m.rum_baseline().unwrap();
        let rate = |l: &StepLog| {
            let s = &l.sig.rum.as_ref().unwrap()[Win::M5.index()];
            s.failures as f64 / s.count as f64
        };
        let first = log
            .iter()
            .find(|l| rate(l) > 3.0 * base && rate(l) >= 0.01)
            .unwrap()
            .sec;
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, first);
        assert_eq!(
            (ev[0].1.from, ev[0].1.to),
            (EffectiveStatus::Healthy, EffectiveStatus::Degraded)
        );
        assert_eq!(
            ev[0].1.reason,
            format!(
                "RUM complaint rate {} > 3 × baseline {} over 5m (3000 beacons)",
                pct(rate(&log[(first - f) as usize])),
                pct(base)
            )
        );
        assert!(sim.m.effective().usable() && sim.m.effective().is_degraded());
        let x = sim.m.explain();
        let want = format!(
            "healthy again when the RUM complaint rate is ≤ 1.5 × baseline {} or < 1 %",
            pct(base)
        );
        assert!(x.contains(&want), "{x}");
        // Calm again: back once the rate is at most 1.5 × baseline.
        let log = sim.run_rum(f + 119 + 400, calm);
        assert_eq!(log[0].sig.rum.as_ref().unwrap()[1].count, 3000);
        let back = log.iter().find(|l| rate(l) <= 1.5 * base).unwrap().sec;
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].0, back);
        assert_eq!(ev[0].1.to, EffectiveStatus::Healthy);
        let want = format!(
            "RUM complaints back to baseline: {} ≤ 1.5 × baseline {} over 5m",
            pct(rate(&log[(back - f - 120) as usize])),
            pct(base)
        );
        assert_eq!(ev[0].1.reason, want);
        // And the baseline follows the calm rate again.
        assert_ne!(sim.m.rum_baseline(), Some(base));
    }

    #[test]
    fn down_recovers_into_degraded_while_rum_spikes() {
        let mut th = Thresholds::default();
        th.error_rate.recover_for = Duration::from_secs(10);
        th.latency.enabled = false;
        th.availability.enabled = false;
        let mut sim = Sim::new(th);
        sim.run_rum(599, |s| (Check::Ok, 10, u32::from(s.is_multiple_of(20))));
        sim.run_rum(606, |_| (Check::Fail, 10, 1));
        assert_eq!(sim.m.state(), Status::Down);
        let log = sim.run_rum(700, |_| (Check::Ok, 10, 3));
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].1.to, EffectiveStatus::Degraded);
        assert!(
            ev[0]
                .1
                .reason
                .contains("; still degraded: RUM complaint rate")
        );
    }
    #[test]
    fn availability_needs_a_fifth_of_its_window_known() {
        // A brand-new target with a transient failure among its first checks: ten seconds of
        // data at 99 % say nothing about five minutes. Not down; and a real outage of 4 s in
        // the first 70 s does take it down once a minute is known.
        let mut sim = Sim::new(Thresholds::default());
        let log = sim.run(20, |s| if s == 5 { Check::Fail } else { Check::Ok });
        assert!(
            log.iter().all(|l| l.events.is_empty()),
            "down on a few seconds of data"
        );
        let log = sim.run(70, |s| {
            if (60..64).contains(&s) {
                Check::Fail
            } else {
                Check::Ok
            }
        });
        assert!(
            log.iter()
                .flat_map(|l| &l.events)
                .any(|e| e.to == EffectiveStatus::Down),
            "4 s down in 70 s (94 %) must fail availability once a minute is known"
        );
    }
    #[test]
    fn default_confidence_ignores_a_noisy_minute() {
        // 7 failures in 66 checks happens about once in ten minutes of 1 s checks on a CDN
        // failing 3.8 % of requests (seen in bench/jitter.sh): at z = 1.96 the Wilson bound
        // (5.2 %) would fail it; the default z = 3 keeps it (4.1 %) until the evidence is
        // stronger (10 of 66).
        let th = Thresholds::default();
        assert_eq!(th.error_rate.z, 3.0);
        assert!(wilson_lower(7, 66, 1.96) > 0.05);
        assert!(wilson_lower(7, 66, th.error_rate.z) < 0.05);
        assert!(wilson_lower(10, 66, th.error_rate.z) > 0.05);
        // A real outage still trips fast: 5 failures of the first 10 checks.
        assert!(wilson_lower(5, 10, th.error_rate.z) > 0.05);
    }
}
