//! The DNS data path: listeners → handler → answer, reading one routing table per query.

pub mod answer;
pub mod ecs;
pub mod fast;
pub mod handler;
pub mod listener;
pub mod stats;
