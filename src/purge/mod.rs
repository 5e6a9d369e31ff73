//! Cache invalidation across the CDNs: a purge accepted through the admin API (or the event
//! bus) is stored durably, then fanned out to one worker per CDN target, which batches,
//! dedupes, splits to the provider's limits, rate-limits, sends and retries it.

pub mod model;
pub mod provider;
pub mod queue;
pub mod store;

pub use crate::config::purge::{Priority, PurgeSettings, PurgeTarget, RateLimit, Secret};
