//! The policy engine's compile step: (validated config, geo data, health/cost/latency/cache
//! inputs, previous latency incumbents) → immutable [`RoutingTable`](crate::table::RoutingTable),
//! pure and synchronous.
//!
//! Each service's clients are split into *cells* (every client; the regions of a geo map; the
//! locations of a proximity, latency or cache-aware map; network overrides); the policy chain
//! ([`chain`]) runs once per cell and its result becomes the cell's precomputed choice. The
//! DNS path then only maps a client to its cell (one binary search over merged CIDR blocks)
//! and, for a weighted cell, hashes the client's subnet.

mod cells;
pub mod chain;
mod compile;
pub mod cost;
mod explain;
mod inputs;
pub mod reports;

pub use compile::{compile, compile_with};
pub use explain::{CellAnswer, Explanation, cell_answers, explain, policy_name};
pub use inputs::{PolicyInputs, RegionOverride};
