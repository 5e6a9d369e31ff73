//! The geo files a configuration names: the GeoIP database (shared between loads of the same
//! unchanged file), the nets file, and the stamps that tell when they changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::SystemTime;

use tracing::{info, warn};

use crate::config::{self, ValidConfig, schema::NetsFile};
use crate::geo::GeoData;

/// What identifies a version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// The inode: a file replaced by rename (how data files are swapped atomically) is seen even
    /// when its length and coarse mtime match the old one's.
    inode: u64,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Why the geo data a configuration names could not be loaded: an issue per problem, each
/// naming its key (`geo.database`, `geo.nets_file`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoError(pub Vec<config::ConfigIssue>);

impl std::fmt::Display for GeoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", issue.field, issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for GeoError {}

impl From<GeoError> for String {
    fn from(e: GeoError) -> String {
        e.to_string()
    }
}

/// Load the geo data a configuration names: database, country table, config nets plus the
/// nets file. The shipped default database may be missing (a binary run outside the
/// repository): then steerd runs without one, with a warning; any other problem is an error.
pub fn load_geo(cfg: &ValidConfig) -> Result<GeoData, GeoError> {
    let issue = |field: &str, message: String| config::ConfigIssue {
        field: field.into(),
        line: None,
        message,
    };
    let mut issues = Vec::new();
    let mut nets = cfg.geo.nets.clone();
    if let Some(path) = &cfg.geo.nets_file {
        match load_nets_file(path, cfg) {
            Ok(n) => nets.extend(n),
            Err(e) => issues.extend(e.into_iter().map(|m| issue("geo.nets_file", m))),
        }
    }
    let database = match &cfg.geo.database {
        Some(p) if shipped_database_missing(p) => {
            warn!(path = %p.display(), "the shipped GeoIP database is not there: running without one (every client is in the default region)");
            None
        }
        other => other.as_deref(),
    };
    let db = match database.map(|p| open_db(p, &cfg.countries)) {
        None => None,
        Some(Ok(db)) => Some(db),
        Some(Err(e)) => {
            issues.push(issue("geo.database", e));
            None
        }
    };
    if !issues.is_empty() {
        return Err(GeoError(issues));
    }
    Ok(GeoData::new(db, cfg.countries.clone(), nets))
}

/// The database last opened, while something holds it: opening the same unchanged file with the
/// same country table again (the admin API's check of a new configuration, then its apply)
/// shares it instead of reading it twice.
#[allow(clippy::type_complexity)]
static LAST_DB: Mutex<
    Option<(
        PathBuf,
        FileStamp,
        Arc<crate::geo::CountryTable>,
        std::sync::Weak<crate::geo::GeoDb>,
    )>,
> = Mutex::new(None);

fn open_db(
    path: &Path,
    countries: &Arc<crate::geo::CountryTable>,
) -> Result<Arc<crate::geo::GeoDb>, String> {
    let before = stamp(path);
    let mut last = LAST_DB.lock();
    if let (Some(st), Some((p, s, c, db))) = (before, last.as_ref())
        && p == path
        && *s == st
        && **c == **countries
        && let Some(db) = db.upgrade()
    {
        return Ok(db);
    }
    drop(last);
    let started = std::time::Instant::now();
    let db = Arc::new(crate::geo::GeoDb::open(path, countries)?);
    info!(
        path = %db.path.display(),
        database_type = %db.database_type,
        ranges = db.ranges(),
        locations = db.locations.len() - 1,
        ms = started.elapsed().as_millis() as u64,
        "GeoIP database loaded"
    );
    if let Some(st) = before {
        last = LAST_DB.lock();
        *last = Some((
            path.to_path_buf(),
            st,
            countries.clone(),
            Arc::downgrade(&db),
        ));
    }
    Ok(db)
}

/// `path` is the shipped default database (`geo.database` left at its default) and it is not
/// there: steerd then runs without a database.
pub fn shipped_database_missing(path: &Path) -> bool {
    path == Path::new(&config::schema::GeoConfig::default().database) && !path.exists()
}

/// Read a nets file; each problem as "PATH[:LINE]: [FIELD: ]reason".
fn load_nets_file(path: &Path, cfg: &ValidConfig) -> Result<Vec<config::NetOverride>, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{shown}: cannot read nets file: {e}")])?;
    let file: NetsFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .map_or(String::new(), |l| format!(":{l}"));
        vec![format!("{shown}{line}: {}", e.message().trim())]
    })?;
    config::validate_nets(&file.nets, "nets", &cfg.countries).map_err(|mut issues| {
        config::locate_lines(&text, &mut issues);
        issues
            .iter()
            .map(|i| match i.line {
                Some(l) => format!("{shown}:{l}: {}: {}", i.field, i.message),
                None => format!("{shown}: {}: {}", i.field, i.message),
            })
            .collect()
    })
}
