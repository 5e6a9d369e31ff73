//! Reading a configuration: the file or text, parsed by the strict schema, then validated.

use std::path::Path;

use super::issues::{ConfigError, ConfigIssue, Context, line_of, locate_lines};
use super::schema::Config;
use super::valid::ValidConfig;
use super::validate::validate_in;

/// Read, parse and validate a configuration file to serve (see [`parse_to_serve`]).
pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source: source.clone(),
        issues: vec![ConfigIssue {
            field: String::new(),
            line: None,
            message: format!("cannot read file: {e}"),
        }],
    })?;
    parse_to_serve(&text, &source, path.parent())
}

/// Parse and validate the text of a configuration to serve: its relative paths start from
/// `dir` (the file's directory; None: the working directory), and a configuration without
/// zones is refused unless it says `allow_no_zones = true`. Start, reload, API writes and
/// `check-config` all read configurations this way.
pub fn parse_to_serve(
    text: &str,
    source: &str,
    dir: Option<&Path>,
) -> Result<ValidConfig, ConfigError> {
    let ctx = Context {
        dir: dir.map(Path::to_path_buf),
        serve: true,
    };
    parse_in(text, source, &ctx)
}

/// Parse and validate configuration text; `source` names it in errors. Relative paths start
/// from the working directory, and no zone is required (a fragment, e.g. in tests; what steerd
/// serves is read with [`parse_to_serve`]).
pub fn parse(text: &str, source: &str) -> Result<ValidConfig, ConfigError> {
    parse_in(text, source, &Context::default())
}

/// Parse and validate configuration text read in `ctx`.
pub fn parse_in(text: &str, source: &str, ctx: &Context) -> Result<ValidConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        // The path of the value that failed (e.g. `services[0].ttl`), when serde knows it.
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_of(text, s.start));
        ConfigError {
            source: source.to_string(),
            issues: vec![ConfigIssue {
                field: if path == "." { String::new() } else { path },
                line,
                message: inner.message().trim().to_string(),
            }],
        }
    })?;
    validate_in(&config, ctx).map_err(|mut issues| {
        locate_lines(text, &mut issues);
        ConfigError {
            source: source.to_string(),
            issues,
        }
    })
}
