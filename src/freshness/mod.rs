//! Canary objects watched across the CDNs (issue 14, items 6 and 7): after a CDN confirms a
//! purge, the canaries it covers are fetched through that CDN and the purge's progress records
//! whether they are `verified` (a cache miss, or the origin's version); every
//! `purge.check_every`, every canary is fetched from the origin and through every CDN, and a
//! CDN that has served an older version than the latest (the seed's version vector: highest
//! wins) for longer than `purge.stale_grace` is stale — an event, a metric and, with
//! `purge.demote_stale`, a demotion in the policy chain.
//!
//! The pure part is `core` (time passed in); `plan` reads the configuration; `runner` is the
//! task that fetches (through the prober's HTTP level, `probe::canary`) and reports through
//! the hooks the server gives it.

pub mod core;
mod metrics;
pub mod plan;
mod runner;

pub use runner::{Freshness, Hooks, OriginHeadersFn, StaleFn};
