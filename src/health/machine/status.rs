//! The states: the machine's own [`Status`], operator overrides, the [`EffectiveStatus`] routing
//! goes by, and a [`Transition`] between two effective states.

use std::fmt;
use std::sync::Arc;

use super::text::fmt_utc;

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
    pub(super) fn words(self) -> &'static str {
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
