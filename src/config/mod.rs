//! Configuration: schema (serde, strict), loading and validation.
//!
//! `load`/`parse` turn TOML text into a [`ValidConfig`]: every name parsed, every record built as a
//! hickory `Record`, every reference resolved. Errors name the file, the line when it can be found,
//! the field path (`services[1].targets[0].weight`) and the reason; all of them are reported at once.

pub mod check;
pub mod schema;
mod validate;

use std::fmt;
use std::path::Path;

pub use schema::{Config, PolicyKind, UdpEngine};
pub use validate::{
    AdminSettings, Context, DEFAULT_MAX_BODY, GeoSettings, MAX_NAME_LEN, MAX_REASON_LEN, Member,
    NetOverride, OverrideSpec, RegionChoice, RegionKey, Scope, ServerSettings, Service, StaticZone,
    Target, TargetAnswer, Token, ValidConfig, check_name, check_text, validate, validate_in,
    validate_nets,
};

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Field path, e.g. `zones[0].records[3].data[1]`; empty for syntax errors.
    pub field: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one configuration, with the file it came from.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub source: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.source)?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
            }
            if !issue.field.is_empty() {
                write!(f, ": {}", issue.field)?;
            }
            write!(f, ": {}", issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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

/// Set the line of each issue that has none to the line of its field in `text`.
pub fn locate_lines(text: &str, issues: &mut [ConfigIssue]) {
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        for issue in issues.iter_mut().filter(|i| i.line.is_none()) {
            issue.line = locate(&doc, &issue.field).map(|off| line_of(text, off));
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Find the byte offset of a field path such as `zones[0].records[2].data[1]` in the document.
fn locate(doc: &toml_edit::ImDocument<&str>, path: &str) -> Option<usize> {
    use toml_edit::{Item, Table, Value};
    #[derive(Clone, Copy)]
    enum Node<'a> {
        Table(&'a Table),
        Item(&'a Item),
        Value(&'a Value),
    }
    fn span(n: Node<'_>) -> Option<usize> {
        match n {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
        .map(|s| s.start)
    }
    fn child<'a>(n: Node<'a>, key: &str) -> Option<Node<'a>> {
        match n {
            Node::Table(t) => t.get(key).map(Node::Item),
            Node::Item(Item::Table(t)) => t.get(key).map(Node::Item),
            Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => {
                t.get(key).map(Node::Value)
            }
            _ => None,
        }
    }
    fn index(n: Node<'_>, idx: usize) -> Option<Node<'_>> {
        match n {
            Node::Item(Item::ArrayOfTables(a)) => a.get(idx).map(Node::Table),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                a.get(idx).map(Node::Value)
            }
            _ => None,
        }
    }
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indices) = match seg.find('[') {
            Some(p) => (&seg[..p], &seg[p..]),
            None => (seg, ""),
        };
        match child(node, key) {
            Some(n) => node = n,
            None => return best,
        }
        best = span(node).or(best);
        for idx in indices
            .split(['[', ']'])
            .filter_map(|s| s.parse::<usize>().ok())
        {
            match index(node, idx) {
                Some(n) => node = n,
                None => return best,
            }
            best = span(node).or(best);
        }
    }
    best
}
