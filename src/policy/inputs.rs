//! What a compile knows besides the configuration: the time, every target's health, latency,
//! cache and cost inputs, and the operator's region overrides.

use super::chain::TargetInput;
use crate::config::{RegionKey, ValidConfig};
use crate::geo::Location;

/// What the chain knows of every target at compile time (indexed like `cfg.targets`).
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    pub now_ms: u64,
    pub targets: Vec<TargetInput>,
    /// Operator overrides limited to a region's clients.
    pub region_overrides: Vec<RegionOverride>,
}

impl PolicyInputs {
    /// Every target healthy, unmeasured and unmetered.
    pub fn unknown(cfg: &ValidConfig) -> Self {
        Self {
            now_ms: 0,
            targets: cfg.targets.iter().map(|_| TargetInput::unknown()).collect(),
            region_overrides: Vec::new(),
        }
    }
}

/// A target forced up, down or drained for the clients of one region only.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOverride {
    pub target: usize,
    pub region: RegionKey,
    pub state: crate::health::machine::EffectiveStatus,
    pub reason: String,
}

impl RegionOverride {
    /// How specifically the override matches clients at `loc` (None: it does not).
    pub(super) fn matches(&self, loc: &Location) -> Option<u8> {
        match self.region {
            RegionKey::Country(_, cc) if loc.country == Some(cc) => Some(3),
            RegionKey::Continent(c) if loc.continent == Some(c) => Some(2),
            RegionKey::Default if loc.continent.is_none() => Some(1),
            _ => None,
        }
    }
}
