//! Cache invalidation across the CDNs: a purge accepted through the admin API (or the event
//! bus) is stored durably, then fanned out to one worker per CDN target, which batches,
//! dedupes, splits to the provider's limits, rate-limits, sends and retries it.

pub mod provider;

pub use crate::config::purge::{Priority, PurgeSettings, PurgeTarget, RateLimit, Secret};
