//! Time for the control plane: a monotonic clock for health windows, durations and dwell, and
//! the wall clock for display, calendar months, operator expiry times and remote stamps.
//!
//! Health time (`mono_ms`) is anchored at the Unix time the clock was created and then advances
//! with the monotonic clock only, so it reads like Unix milliseconds but never goes back: a wall
//! clock stepped back (or forward) by NTP or an operator does not freeze or rush the windows.
//! [`Now`] carries both readings of one instant, so code that gets a `Now` can convert between
//! them ([`Now::wall_of`], [`Now::mono_of`]).
//!
//! The server takes a [`SharedClock`]: [`SystemClock`] in production, [`ManualClock`] in tests
//! and simulations, which only moves when told (so a test can run ten minutes in milliseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One instant, read on both clocks (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Health time: monotonic, Unix-anchored.
    pub mono_ms: u64,
    /// Unix time from the wall clock.
    pub wall_ms: u64,
}

impl Now {
    /// Both clocks at the same reading (for pure code and tests that need no difference).
    pub fn at(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            wall_ms: ms,
        }
    }

    /// The same instant `d` later on both clocks.
    pub fn plus(self, d: Duration) -> Now {
        let d = d.as_millis() as u64;
        Now {
            mono_ms: self.mono_ms.saturating_add(d),
            wall_ms: self.wall_ms.saturating_add(d),
        }
    }

    /// Wall time minus health time.
    pub fn wall_offset_ms(&self) -> i64 {
        self.wall_ms as i64 - self.mono_ms as i64
    }

    /// The wall time of a health-time instant (as the wall clock reads now).
    pub fn wall_of(&self, mono_ms: u64) -> u64 {
        shift(mono_ms, self.wall_offset_ms())
    }

    /// The health time of a wall-clock instant (a remote stamp, an operator's time).
    pub fn mono_of(&self, wall_ms: u64) -> u64 {
        shift(wall_ms, -self.wall_offset_ms())
    }

    /// The health time of a monotonic instant taken on this machine.
    pub fn mono_of_instant(&self, at: Instant) -> u64 {
        self.mono_ms.saturating_sub(at.elapsed().as_millis() as u64)
    }
}

impl From<u64> for Now {
    /// Both clocks at `ms`.
    fn from(ms: u64) -> Now {
        Now::at(ms)
    }
}

/// `t + offset`, clamped to `0..=u64::MAX`.
pub fn shift(t: u64, offset: i64) -> u64 {
    if offset >= 0 {
        t.saturating_add(offset as u64)
    } else {
        t.saturating_sub(offset.unsigned_abs())
    }
}

/// Where the control plane reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Now;
}

pub type SharedClock = Arc<dyn Clock>;

/// Unix time now from the wall clock (ms).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    started: Instant,
    anchor_ms: u64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            anchor_ms: wall_ms(),
        }
    }

    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.anchor_ms + self.started.elapsed().as_millis() as u64,
            wall_ms: wall_ms(),
        }
    }
}

/// A clock that moves only when told: health time by [`ManualClock::advance`], the wall clock
/// with it, plus steps of its own ([`ManualClock::step_wall`]).
#[derive(Debug)]
pub struct ManualClock {
    mono_ms: AtomicU64,
    wall_offset_ms: AtomicI64,
}

impl ManualClock {
    /// Starting at the Unix time `start_ms` on both clocks.
    pub fn new(start_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            mono_ms: AtomicU64::new(start_ms),
            wall_offset_ms: AtomicI64::new(0),
        })
    }

    /// Starting at the machine's wall time.
    pub fn from_wall() -> Arc<Self> {
        Self::new(wall_ms())
    }

    /// Both clocks move forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.mono_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// The wall clock alone jumps by `ms` (negative: back), as NTP or an operator may do.
    pub fn step_wall(&self, ms: i64) {
        self.wall_offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        let mono_ms = self.mono_ms.load(Ordering::SeqCst);
        Now {
            mono_ms,
            wall_ms: shift(mono_ms, self.wall_offset_ms.load(Ordering::SeqCst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_unix_anchored_and_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b.mono_ms >= a.mono_ms);
        // Anchored at the wall time: within a minute of it on any sane machine.
        assert!(a.mono_ms.abs_diff(a.wall_ms) < 60_000);
    }

    #[test]
    fn manual_clock_steps_and_conversions() {
        let c = ManualClock::new(10_000_000);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), Now::at(10_005_000));
        // The wall clock goes back 20 minutes: health time does not.
        c.step_wall(-1_200_000);
        let n = c.now();
        assert_eq!(n.mono_ms, 10_005_000);
        assert_eq!(n.wall_ms, 10_005_000 - 1_200_000);
        assert_eq!(n.wall_of(n.mono_ms), n.wall_ms);
        assert_eq!(n.mono_of(n.wall_ms - 3_000), n.mono_ms - 3_000);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now().mono_ms, 10_006_000);
        assert_eq!(shift(5, -10), 0);
        assert_eq!(Now::at(10).plus(Duration::from_millis(5)), Now::at(15));
    }
}
