//! steerd: multi-CDN traffic steering with its own authoritative DNS server.
//!
//! Data path (see `docs/architecture.md`): `config` → `policy::compile` → [`table::RoutingTable`]
//! swapped atomically under the DNS listeners (`dns`), which answer every query from one `load()`
//! of the current table.

pub mod admin;
pub mod alert;
pub mod clock;
pub mod config;
pub mod conns;
pub mod control;
pub mod dns;
pub mod events;
pub mod freshness;
pub mod geo;
pub mod health;
pub mod hist;
pub mod metrics;
pub mod persist;
pub mod policy;
pub mod probe;
pub mod purge;
pub mod resolve;
pub mod server;
pub mod table;

pub use server::Server;
