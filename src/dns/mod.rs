//! The DNS data path: listeners → handler → answer, reading one routing table per query.

pub mod answer;
pub mod cookie;
pub mod ecs;
pub mod fast;
pub mod guard;
pub mod handler;
pub mod listener;
pub mod rrl;
pub mod stats;
pub mod tcp;
