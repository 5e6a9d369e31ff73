//! The DNS data path: listeners → fast path or general path (handler) → answer, reading one
//! routing table per query; `encode` writes every response.

pub mod answer;
pub mod cookie;
pub mod ecs;
pub mod encode;
pub mod fast;
pub mod guard;
pub mod handler;
pub mod listener;
pub mod precompute;
pub mod query;
pub mod rrl;
pub mod stats;
pub mod tcp;
