//! The configuration file as the admin API's store: every write edits the TOML document
//! (comments and layout kept, via toml_edit), bumps the top-level `version`, is validated
//! exactly like the file is at start-up, applied, and only then persisted atomically
//! (temporary file in the same directory, fsync, rename, fsync of the directory). Temporary
//! files that a crash left behind are removed at start and before each write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use toml_edit::DocumentMut;

use crate::config::{ConfigIssue, GeoSettings, ValidConfig};
use crate::geo::CountryTable;
use crate::persist::atomic::{remove_stale_temps, stage};

/// Adjustments the command line makes to every configuration read (listen addresses).
pub type Adjust = Arc<dyn Fn(&mut ValidConfig) + Send + Sync>;

/// Where the configuration in force came from.
#[derive(Clone)]
pub struct ConfigSource {
    /// The file (None: the embedded demo or a configuration built in code; writes then
    /// apply in memory only).
    pub path: Option<PathBuf>,
    /// Its text as loaded (None: no text at all, e.g. a test's in-code configuration: the
    /// write routes answer 409).
    pub text: Option<String>,
    pub adjust: Adjust,
}

impl ConfigSource {
    /// A configuration with no file and no text.
    pub fn none() -> Self {
        Self {
            path: None,
            text: None,
            adjust: Arc::new(|_| {}),
        }
    }

    /// A file, read now.
    pub fn file(path: &Path, adjust: Adjust) -> std::io::Result<Self> {
        Ok(Self {
            path: Some(path.to_path_buf()),
            text: Some(std::fs::read_to_string(path)?),
            adjust,
        })
    }
}

/// Why a write or reload did not happen.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// `If-Match` named another version.
    VersionMismatch { expected: u64, current: u64 },
    /// The configuration would not validate; nothing changed. `file`: the file the issues'
    /// lines refer to (a reload); None for an API write, whose issues name fields only.
    Invalid {
        file: Option<String>,
        issues: Vec<ConfigIssue>,
    },
    /// The request is wrong in a way the configuration cannot express (bad JSON shape).
    BadRequest(String),
    /// The resource does not exist.
    NotFound(String),
    /// The store cannot take writes (no text), or the file changed on disk under it.
    Conflict(String),
    /// Applying or persisting failed; nothing changed.
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::VersionMismatch { expected, current } => write!(
                f,
                "If-Match names version {expected} but the configuration is at version {current}: \
                 read it again and retry"
            ),
            StoreError::Invalid { file, issues } => {
                // FILE:LINE: FIELD: reason, one a line (as check-config prints them).
                for (i, is) in issues.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    let mut sep = "";
                    if let Some(file) = file {
                        f.write_str(file)?;
                        if let Some(line) = is.line {
                            write!(f, ":{line}")?;
                        }
                        sep = ": ";
                    }
                    if !is.field.is_empty() {
                        write!(f, "{sep}{}", is.field)?;
                        sep = ": ";
                    }
                    write!(f, "{sep}{}", is.message)?;
                }
                Ok(())
            }
            StoreError::BadRequest(m)
            | StoreError::NotFound(m)
            | StoreError::Conflict(m)
            | StoreError::Internal(m) => f.write_str(m),
        }
    }
}

#[derive(Clone)]
struct Inner {
    path: Option<PathBuf>,
    text: Option<String>,
    version: u64,
    /// The geo settings and country table of the configuration in force (None: not known).
    geo: Option<GeoInputs>,
}

type GeoInputs = (GeoSettings, Arc<CountryTable>);

fn geo_inputs(cfg: &ValidConfig) -> GeoInputs {
    (cfg.geo.clone(), cfg.countries.clone())
}

/// Read `text` (from the file at `path`, if any) as a configuration to serve.
fn parse(text: &str, source: &str, path: Option<&Path>) -> Result<ValidConfig, Vec<ConfigIssue>> {
    crate::config::parse_to_serve(text, source, path.and_then(Path::parent)).map_err(|e| e.issues)
}

/// The configuration text in force and its version; one write at a time.
///
/// Two locks: `writing` serializes writes and reloads from start to end (file I/O and fsync
/// included; only writers, on blocking threads, ever wait for it), `inner` guards the text and
/// version in force and is only held to read or replace them, never across I/O, so reads
/// (`GET /v1/config`, ETags) never wait for a write's fsync.
pub struct ConfigStore {
    writing: Mutex<()>,
    inner: Mutex<Inner>,
    adjust: Adjust,
}

/// The outcome of a successful write.
#[derive(Debug, Clone)]
pub struct Written {
    pub version: u64,
    pub generation: u64,
    pub persisted: bool,
}

impl ConfigStore {
    pub fn new(source: ConfigSource, version: u64) -> Self {
        if let Some(p) = &source.path {
            remove_stale_temps(p);
        }
        // The geo inputs in force: those of the text the server started with.
        let geo = source.text.as_deref().and_then(|t| {
            let mut cfg = parse(t, "", source.path.as_deref()).ok()?;
            (source.adjust)(&mut cfg);
            Some(geo_inputs(&cfg))
        });
        Self {
            writing: Mutex::new(()),
            inner: Mutex::new(Inner {
                path: source.path,
                text: source.text,
                version,
                geo,
            }),
            adjust: source.adjust,
        }
    }

    /// Load the geo data `cfg` names when its geo inputs differ from those in force, as the
    /// apply will: a bad database or nets file refuses the configuration with the key and the
    /// reason. The data returned is held until the apply is done, which then shares it.
    fn check_geo(
        inner: &Inner,
        cfg: &ValidConfig,
    ) -> Result<Option<crate::geo::GeoData>, Vec<ConfigIssue>> {
        if inner.geo.as_ref() == Some(&geo_inputs(cfg)) {
            return Ok(None);
        }
        crate::control::load_geo(cfg).map(Some).map_err(|e| e.0)
    }

    pub fn version(&self) -> u64 {
        self.inner.lock().version
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.inner.lock().path.clone()
    }

    /// The configuration text in force and its version, read together.
    pub fn snapshot(&self) -> (Option<String>, u64) {
        let inner = self.inner.lock();
        (inner.text.clone(), inner.version)
    }

    /// The configuration text in force.
    pub fn text(&self) -> Option<String> {
        self.inner.lock().text.clone()
    }

    /// The configuration in force as a TOML document (for reads of the config form).
    pub fn document(&self) -> Option<DocumentMut> {
        self.text().and_then(|t| t.parse().ok())
    }

    /// Edit the document with `edit`, bump the version, validate, `apply`, persist. With
    /// `expected`, the write only happens at that version. Writes are serialized.
    pub fn write<T>(
        &self,
        expected: Option<u64>,
        edit: impl FnOnce(&mut DocumentMut) -> Result<T, StoreError>,
        mut apply: impl FnMut(ValidConfig) -> Result<u64, String>,
    ) -> Result<(Written, T), StoreError> {
        let _writing = self.writing.lock();
        // What is in force now (only this writer changes it until it is done).
        let inner = self.inner.lock().clone();
        if let Some(e) = expected
            && e != inner.version
        {
            return Err(StoreError::VersionMismatch {
                expected: e,
                current: inner.version,
            });
        }
        let Some(text) = inner.text.clone() else {
            return Err(StoreError::Conflict(
                "this server was started without a configuration text: nothing to edit".into(),
            ));
        };
        if let Some(path) = &inner.path {
            match std::fs::read_to_string(path) {
                Ok(on_disk) if on_disk != text => {
                    return Err(StoreError::Conflict(format!(
                        "{} changed on disk since it was loaded: POST /v1/reload (or send \
                         SIGHUP) to load it, then retry",
                        path.display()
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(StoreError::Internal(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        let mut doc: DocumentMut = text.parse().map_err(|e| {
            StoreError::Internal(format!("the configuration in force does not parse: {e}"))
        })?;
        let out = edit(&mut doc)?;
        let version = inner.version + 1;
        set_version(&mut doc, version);
        let new_text = doc.to_string();
        let source = inner
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<api>".into());
        // The issues of a write name fields: its text was never saved, so it has no lines.
        let invalid = |mut issues: Vec<ConfigIssue>| {
            for i in &mut issues {
                i.line = None;
            }
            StoreError::Invalid { file: None, issues }
        };
        let mut cfg = parse(&new_text, &source, inner.path.as_deref()).map_err(invalid)?;
        (self.adjust)(&mut cfg);
        let geo = geo_inputs(&cfg);
        let _geo_data = Self::check_geo(&inner, &cfg).map_err(invalid)?;
        // Write the new file beside the old one (fsynced) before applying; rename it over only
        // once applied: a failure at any step leaves the old file and the old configuration.
        let staged = match &inner.path {
            Some(p) => Some(stage(p, new_text.as_bytes()).map_err(|e| {
                StoreError::Internal(format!(
                    "cannot write {}: {e}; nothing changed",
                    p.display()
                ))
            })?),
            None => None,
        };
        let generation = match apply(cfg) {
            Ok(g) => g,
            Err(e) => {
                if let Some(s) = staged {
                    s.abandon();
                }
                return Err(StoreError::Internal(e));
            }
        };
        let persisted = match staged {
            Some(s) => {
                if let Err(e) = s.commit() {
                    // Put the previous configuration back in force.
                    let back = crate::config::parse_to_serve(
                        &text,
                        &source,
                        inner.path.as_deref().and_then(Path::parent),
                    )
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        (self.adjust)(&mut c);
                        apply(c)
                    });
                    let path = inner.path.clone().unwrap_or_default();
                    return Err(StoreError::Internal(format!(
                        "cannot write {}: {e}; {}",
                        path.display(),
                        match back {
                            Ok(_) =>
                                "nothing changed (the previous configuration is back in force)"
                                    .to_string(),
                            Err(b) => format!("restoring the previous configuration failed: {b}"),
                        }
                    )));
                }
                true
            }
            None => false,
        };
        *self.inner.lock() = Inner {
            text: Some(new_text),
            version,
            geo: Some(geo),
            ..inner
        };
        Ok((
            Written {
                version,
                generation,
                persisted,
            },
            out,
        ))
    }

    /// Read the file again, validate it and apply it (SIGHUP, `POST /v1/reload`).
    pub fn reload(
        &self,
        mut apply: impl FnMut(ValidConfig) -> Result<u64, String>,
    ) -> Result<Written, StoreError> {
        let _writing = self.writing.lock();
        let inner = self.inner.lock().clone();
        let Some(path) = inner.path.clone() else {
            return Err(StoreError::Conflict(
                "this server was not started from a configuration file: nothing to reload".into(),
            ));
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StoreError::Internal(format!("cannot read {}: {e}", path.display())))?;
        let file = path.display().to_string();
        let invalid = |mut issues: Vec<ConfigIssue>| {
            crate::config::locate_lines(&text, &mut issues);
            StoreError::Invalid {
                file: Some(file.clone()),
                issues,
            }
        };
        let mut cfg = parse(&text, &file, Some(&path)).map_err(invalid)?;
        (self.adjust)(&mut cfg);
        let geo = geo_inputs(&cfg);
        let _geo_data = Self::check_geo(&inner, &cfg).map_err(invalid)?;
        // The version never goes back nor names two texts: a changed file whose version is not
        // ahead of ours (a restored backup, a hand edit) gets the next one.
        let mut version = cfg.version;
        if inner.text.as_deref() != Some(text.as_str()) && version <= inner.version {
            version = inner.version + 1;
        }
        cfg.version = version;
        let generation = apply(cfg).map_err(StoreError::Internal)?;
        *self.inner.lock() = Inner {
            text: Some(text),
            version,
            geo: Some(geo),
            ..inner
        };
        Ok(Written {
            version,
            generation,
            persisted: false,
        })
    }
}

/// Set the top-level `version` key (kept before every table).
fn set_version(doc: &mut DocumentMut, version: u64) {
    let v = i64::try_from(version).unwrap_or(i64::MAX);
    match doc.get_mut("version") {
        Some(item) => *item = toml_edit::value(v),
        None => {
            doc.insert("version", toml_edit::value(v));
            if let Some(mut key) = doc.key_mut("version") {
                key.leaf_decor_mut().set_prefix("");
            }
            if let Some(item) = doc.get_mut("version").and_then(|i| i.as_value_mut()) {
                item.decor_mut()
                    .set_suffix("  # bumped by every admin API write (the API's ETag)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_goes_first_and_is_replaced() {
        let mut doc: DocumentMut = "# c\n[server]\ndns_listen = []\n".parse().unwrap();
        set_version(&mut doc, 3);
        let t = doc.to_string();
        assert!(
            t.find("version = 3").unwrap() < t.find("[server]").unwrap(),
            "{t}"
        );
        set_version(&mut doc, 4);
        let t = doc.to_string();
        assert!(
            t.contains("version = 4") && !t.contains("version = 3"),
            "{t}"
        );
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(v["version"].as_integer(), Some(4));
    }

    #[test]
    fn invalid_shows_file_line_and_field_when_there_are() {
        let issue = |field: &str, line| ConfigIssue {
            field: field.into(),
            line,
            message: "why".into(),
        };
        let reload = StoreError::Invalid {
            file: Some("s.toml".into()),
            issues: vec![issue("", Some(3)), issue("zones", None)],
        };
        assert_eq!(reload.to_string(), "s.toml:3: why\ns.toml: zones: why");
        let write = StoreError::Invalid {
            file: None,
            issues: vec![issue("targets[1].name", None)],
        };
        assert_eq!(write.to_string(), "targets[1].name: why");
    }
}
