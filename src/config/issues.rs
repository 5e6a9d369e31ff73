//! What every section's validation shares: the issues found (field path, file and line), where
//! the configuration comes from, and the field checks more than one section makes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;

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

/// The issues found so far, in the order they were found.
#[derive(Debug, Default)]
pub(super) struct Issues(Vec<ConfigIssue>);

impl Issues {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            field: field.into(),
            line: None,
            message: message.into(),
        });
    }

    /// Issues found so far: a section compares it before and after to know whether it passed.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn extend(&mut self, more: Vec<ConfigIssue>) {
        self.0.extend(more);
    }

    pub(super) fn into_vec(self) -> Vec<ConfigIssue> {
        self.0
    }
}

/// Set the line of each issue that has none to the line of its field in `text`.
pub fn locate_lines(text: &str, issues: &mut [ConfigIssue]) {
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        for issue in issues.iter_mut().filter(|i| i.line.is_none()) {
            issue.line = locate(&doc, &issue.field).map(|off| line_of(text, off));
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
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

/// Where a configuration comes from, for the rules that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Directory relative paths start from (the configuration file's); None: the working
    /// directory.
    pub dir: Option<PathBuf>,
    /// The configuration is to be served: without zones it is refused unless it sets
    /// `allow_no_zones = true`.
    pub serve: bool,
}

impl Context {
    /// The path a path key names: as written when absolute (or when there is no directory),
    /// else relative to the configuration's directory. `shipped` is the key's default, which
    /// names a file shipped with steerd: written as is, it is looked up beside the
    /// configuration first, then from the working directory (where the repository root and
    /// the packaged installs keep `geodb/`).
    pub(crate) fn path(&self, value: &str, shipped: Option<&str>) -> PathBuf {
        let p = Path::new(value);
        let Some(dir) = self.dir.as_deref().filter(|d| !d.as_os_str().is_empty()) else {
            return p.to_path_buf();
        };
        if p.is_absolute() || value.is_empty() {
            return p.to_path_buf();
        }
        let beside = dir.join(p);
        if shipped == Some(value) && !beside.exists() {
            return p.to_path_buf();
        }
        beside
    }
}

/// Longest target or vantage name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest override reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// Largest TTL RFC 2181 allows.
const MAX_TTL: u32 = 0x7fff_ffff;

/// `s` for an error message: at most 64 characters of it.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A target or vantage name (it appears in URLs, metric labels, logs and the TOML file):
/// 1 to 64 letters, digits, `-`, `_` and `.`, starting with a letter or a digit.
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters (got {} bytes)",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{c:?} is not allowed in a name: use letters, digits, '-', '_' and '.'"
        ));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or a digit".into());
    }
    Ok(())
}

/// Free text that goes into logs, events and alerts one line each (an override's reason): at
/// most `max` bytes, no control characters (no newline).
pub fn check_text(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("must be at most {max} bytes (got {})", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("{c:?}: control characters are not allowed"));
    }
    Ok(())
}

/// Host-name characters only: each label holds letters, digits, `-` and `_`.
pub(super) fn check_labels(name: &Name, s: &str) -> Result<(), String> {
    for label in name.iter() {
        if let Some(&b) = label
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
        {
            return Err(format!(
                "\"{}\" is not a valid domain name: {:?} is not allowed (a label holds letters, digits, '-' and '_')",
                excerpt(s),
                b as char
            ));
        }
    }
    Ok(())
}

/// Parse an absolute domain name (trailing dot optional) into a lower-case FQDN.
pub(crate) fn parse_name(s: &str) -> Result<Name, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty domain name".into());
    }
    if t == "." {
        return Ok(Name::root());
    }
    let s = excerpt(s);
    if t.contains(char::is_whitespace) {
        return Err(format!(
            "\"{s}\" is not a valid domain name: contains whitespace"
        ));
    }
    if t.ends_with("..") {
        return Err(format!("\"{s}\" is not a valid domain name: empty label"));
    }
    let mut name = Name::from_ascii(t.strip_suffix('.').unwrap_or(t))
        .map_err(|e| format!("\"{s}\" is not a valid domain name: {e}"))?;
    if name.iter().any(|l| l.is_empty()) {
        return Err(format!("\"{s}\" is not a valid domain name: empty label"));
    }
    check_labels(&name, t)?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// A name field: parsed, or reported at `field`.
pub(super) fn name_at(s: &str, field: impl Into<String>, issues: &mut Issues) -> Option<Name> {
    parse_name(s).map_err(|e| issues.push(field, e)).ok()
}

/// A TTL: at most RFC 2181's maximum (reported, and kept, when above).
pub(super) fn ttl(ttl: u32, field: String, issues: &mut Issues) -> u32 {
    if ttl > MAX_TTL {
        issues.push(
            field,
            format!("TTL {ttl} exceeds the maximum {MAX_TTL} (RFC 2181)"),
        );
    }
    ttl
}

/// Whether `v` is between `lo` and `hi`; if not, reported at `field`.
pub(super) fn between<T: PartialOrd + fmt::Display>(
    v: T,
    lo: T,
    hi: T,
    field: impl Into<String>,
    issues: &mut Issues,
) -> bool {
    let ok = v >= lo && v <= hi;
    if !ok {
        issues.push(field, format!("must be between {lo} and {hi} (got {v})"));
    }
    ok
}

/// Whether `v` is at most `max`; if not, reported at `field`.
pub(super) fn at_most<T: PartialOrd + fmt::Display>(
    v: T,
    max: T,
    field: impl Into<String>,
    issues: &mut Issues,
) -> bool {
    let ok = v <= max;
    if !ok {
        issues.push(field, format!("must be at most {max} (got {v})"));
    }
    ok
}

/// A number of seconds between `min` and `max`.
pub(super) fn seconds(
    v: f64,
    min: f64,
    max: f64,
    field: &str,
    issues: &mut Issues,
) -> Option<Duration> {
    if !v.is_finite() || v < min || v > max {
        issues.push(
            field,
            format!("must be a number of seconds between {min} and {max} (got {v})"),
        );
        return None;
    }
    Some(Duration::from_secs_f64(v))
}

/// A count between 1 and `max` (`default` when unset, or when out of range: then reported).
pub(super) fn count(
    v: Option<usize>,
    default: usize,
    max: usize,
    field: &str,
    issues: &mut Issues,
) -> usize {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        issues.push(field, format!("must be between 1 and {max} (got {v})"));
        return default;
    }
    v
}

/// A listener's timeout: 0.001 to 3600 seconds (`default` when unset, or when out of range:
/// then reported).
pub(super) fn listener_timeout(
    v: Option<f64>,
    default: f64,
    field: &str,
    issues: &mut Issues,
) -> Duration {
    let v = v.unwrap_or(default);
    seconds(v, 0.001, 3600.0, field, issues).unwrap_or(Duration::from_secs_f64(default))
}

/// A listener's connection caps: (`max`, `per_source`), each a `(value, default, field)` counted
/// up to `cap`; `per_source` above `max` is reported and lowered to it.
pub(super) fn conn_caps(
    max: (Option<usize>, usize, &str),
    per_source: (Option<usize>, usize, &str),
    cap: usize,
    issues: &mut Issues,
) -> (usize, usize) {
    let (max_field, per_source_field) = (max.2, per_source.2);
    let max = count(max.0, max.1, cap, max_field, issues);
    let per_source = count(per_source.0, per_source.1, cap, per_source_field, issues);
    if per_source > max {
        issues.push(
            per_source_field,
            format!("must be at most {max_field} ({max}; got {per_source})"),
        );
    }
    (max, per_source.min(max))
}

/// A secret read from environment variable `var` (trimmed); unset or empty: reported at `field`.
pub(super) fn env_secret(var: &str, field: String, issues: &mut Issues) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => {
            issues.push(
                field,
                format!("environment variable {var} is not set (or empty)"),
            );
            None
        }
    }
}

/// A CIDR; host bits must be zero.
pub(super) fn cidr(s: &str, field: &str, issues: &mut Issues) -> Option<IpNet> {
    match s.trim().parse::<IpNet>() {
        Ok(n) if n.trunc() != n => {
            issues.push(
                field,
                format!("\"{s}\" has host bits set (did you mean {}?)", n.trunc()),
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            issues.push(
                field,
                format!("\"{s}\" is not a valid CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)"),
            );
            None
        }
    }
}
