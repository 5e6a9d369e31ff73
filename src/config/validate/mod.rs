//! Validation: from the raw schema to a [`ValidConfig`], one section at a time, each reporting
//! every issue with its field path. This module only runs the sections, in the order that
//! issues are reported in, and puts the result together.

mod admin;
mod alerts;
mod checks;
mod geo;
mod health;
mod overrides;
mod probe;
mod purge;
mod server;
mod services;
mod targets;
mod zones;

pub use geo::validate_nets;

use super::issues::{ConfigIssue, Context, Issues};
use super::schema::Config;
use super::valid::ValidConfig;

/// Validate a parsed configuration (relative paths from the working directory; a
/// configuration without zones is accepted); returns every issue found.
pub fn validate(cfg: &Config) -> Result<ValidConfig, Vec<ConfigIssue>> {
    validate_in(cfg, &Context::default())
}

/// Validate a parsed configuration read in `ctx`; returns every issue found.
pub fn validate_in(cfg: &Config, ctx: &Context) -> Result<ValidConfig, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    let server = server::validate(&cfg.server, ctx, &mut issues);
    let zones = zones::validate(cfg, ctx, &mut issues);
    let probe = probe::validate(&cfg.probe, ctx, &mut issues);
    let health = health::validate(&cfg.health, &mut issues);
    let targets = targets::validate(&cfg.targets, &probe, ctx, &mut issues);
    let (geo, countries) = geo::validate(&cfg.geo, ctx, &mut issues);
    let services = services::validate(
        &cfg.services,
        &services::Known {
            zones: &zones,
            targets: &targets,
            target_configs: &cfg.targets,
            countries: countries.as_deref(),
        },
        &mut issues,
    );
    let admin = admin::validate(&cfg.admin, &mut issues);
    let alerts = alerts::validate(&cfg.alerts, &mut issues);
    let purge = purge::settings(&cfg.purge, ctx, &mut issues);
    let names: Vec<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
    purge::check_canary_targets(&cfg.purge, &names, &mut issues);
    let overrides = overrides::validate(cfg, countries.as_deref(), &mut issues);

    if !issues.is_empty() {
        return Err(issues.into_vec());
    }
    Ok(ValidConfig {
        server: server.expect("server settings valid when no issue"),
        geo,
        countries: countries.expect("country table loaded when no issue"),
        // Every zone is there when no issue: the services' zone indices hold.
        zones: zones.into_vec(),
        targets: targets
            .list
            .into_iter()
            .map(|t| t.expect("valid"))
            .collect(),
        services,
        probe,
        health,
        version: cfg.version,
        admin,
        alerts,
        overrides,
        purge,
    })
}
