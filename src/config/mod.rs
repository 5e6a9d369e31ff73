//! Configuration: the TOML schema (serde, strict), loading, validation and the validated form.
//!
//! `load`/`parse` turn TOML text into a [`ValidConfig`]: every name parsed, every record built as a
//! hickory `Record`, every reference resolved. Errors name the file, the line when it can be found,
//! the field path (`services[1].targets[0].weight`) and the reason; all of them are reported at once.

mod issues;
mod load;
pub mod purge;
pub mod purge_defaults;
pub mod schema;
mod valid;
mod validate;

/// The validated health-check types (the prober's input).
pub mod check {
    pub use super::valid::{
        CheckSpec, Connect, ContentMatch, ContentSpec, HttpSpec, Pattern, ProbeSettings,
        StatusMatch, Timing,
    };
}

pub use issues::{
    ConfigError, ConfigIssue, Context, MAX_NAME_LEN, MAX_REASON_LEN, check_name, check_text,
    locate_lines,
};
pub use load::{load, parse, parse_in, parse_to_serve};
pub use schema::{Config, PolicyKind};
pub(crate) use valid::redact_url;
pub use valid::{
    AdminSettings, AlertSettings, ChainSettings, CookieSettings, CostModel,
    DEFAULT_BYTES_PER_ANSWER, DEFAULT_MAX_BODY, GeoSettings, Member, NetOverride, OverrideSpec,
    RegionChoice, RegionKey, RrlSettings, Scope, ServerSettings, Service, SinkKind, SinkSpec,
    StaticZone, Target, TargetAnswer, Token, UdpEngine, ValidConfig,
};
pub use validate::{validate, validate_in, validate_nets};
