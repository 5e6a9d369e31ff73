//! Health: observations kept in per-target sliding windows ([`window`]) and the per-target state
//! machine that judges them ([`machine`]). Everything here is a pure function of its inputs and
//! the time passed in: nothing reads the clock.

pub mod machine;
mod observation;
pub mod window;

pub use machine::{
    EffectiveStatus, Override, OverrideKind, Signals, Status, TargetMachine, Thresholds, Transition,
};
pub use observation::{CacheObservation, CacheStatus, Level, Observation};
pub use window::{HealthStore, Series, TargetHealth, WINDOWS, Win, WindowConfig, WindowStats};
