//! A running steerd: the routing table handle, the DNS listeners, and config application.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::ValidConfig;
use crate::dns::listener::DnsListeners;
use crate::policy;
use crate::table::{self, RoutingTable, TableHandle};

/// A running server.
pub struct Server {
    table: TableHandle,
    listeners: DnsListeners,
    config: ValidConfig,
}

impl Server {
    /// Compile the first table from `config`, bind every listener and start answering.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: ValidConfig) -> anyhow::Result<Self> {
        let compiled = policy::compile(&config);
        info!(generation = compiled.generation, "{}", config.summary());
        let table = table::handle(compiled);
        let listeners = DnsListeners::start(&config.server, table.clone())?;
        Ok(Self {
            table,
            listeners,
            config,
        })
    }

    /// Actual UDP addresses (with the port picked when port 0 was asked for).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.listeners.udp_addrs
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.listeners.tcp_addrs
    }

    /// The table handle the DNS path reads from.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The configuration in force.
    pub fn config(&self) -> &ValidConfig {
        &self.config
    }

    /// Compile `config` and swap the new table in. Listener settings (addresses, socket count,
    /// engine, TCP timeout) cannot change while running; a difference is logged and needs a
    /// restart. Everything else, `max_udp_payload` and the hash prefixes included, applies now.
    pub fn apply(&mut self, config: ValidConfig) -> Arc<RoutingTable> {
        let (old, new) = (&self.config.server, &config.server);
        if old.dns_listen != new.dns_listen
            || old.udp_sockets != new.udp_sockets
            || old.udp_engine != new.udp_engine
            || old.tcp_idle_timeout != new.tcp_idle_timeout
            || old.admin_listen != new.admin_listen
        {
            warn!(
                "listener settings in [server] changed: they take effect after a restart \
                 (the rest of the configuration is applied now)"
            );
        }
        let compiled = Arc::new(policy::compile(&config));
        info!(
            generation = compiled.generation,
            "applied configuration: {}",
            config.summary()
        );
        self.table.store(compiled.clone());
        self.config = config;
        compiled
    }

    /// Stop listening and wait for in-flight work.
    pub async fn shutdown(self) {
        self.listeners.shutdown().await;
        info!("DNS listeners stopped");
    }
}
