//! The configuration file as the admin API's store: every write edits the TOML document
//! (comments and layout kept, via toml_edit), bumps the top-level `version`, is validated
//! exactly like the file is at start-up, applied, and only then persisted atomically
//! (temporary file in the same directory, fsync, rename, fsync of the directory). Temporary
//! files that a crash left behind are removed at start and before each write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use toml_edit::DocumentMut;

use crate::config::{ConfigIssue, GeoSettings, ValidConfig};
use crate::geo::CountryTable;

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

/// A new version of a file, written and fsynced beside it, not yet renamed over it. Dropped
/// without [`Staged::commit`] (an error, a panic), its temporary file is removed.
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    done: bool,
}

impl Staged {
    /// Rename over the file and fsync the directory.
    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        // Renamed: the new file is the file. A failed directory fsync only weakens its
        // durability across a power loss; it is not a failed write.
        if let Err(e) = std::fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %self.dir.display(), "fsync of the configuration's directory failed: {e}");
        }
        Ok(())
    }

    pub fn abandon(self) {}
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.tmp.`: the prefix of the temporary files written beside `path`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    format!(".{name}.tmp.")
}

/// Whether process `pid` exists (it may be writing its temporary file).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temporary files beside `path` that a crash between writing and renaming left:
/// `.NAME.tmp.PID` of a process that is gone (a live process may be writing its own, and this
/// process's are removed by the write that made them). Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(dir_of(path)) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            tracing::info!(file = %e.path().display(), "removed a temporary file left by an interrupted write");
            removed += 1;
        }
    }
    removed
}

/// Write `data` to a temporary file beside `path` (same directory, same permissions) and
/// fsync it. Stale temporary files of `path` are removed first.
pub fn stage(path: &Path, data: &[u8]) -> std::io::Result<Staged> {
    remove_stale_temps(path);
    let dir = dir_of(path);
    let tmp = dir.join(format!("{}{}", temp_prefix(path), std::process::id()));
    let staged = Staged {
        tmp,
        path: path.to_path_buf(),
        dir,
        done: false,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&staged.tmp)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = f.set_permissions(meta.permissions());
    }
    f.write_all(data)?;
    f.sync_all()?;
    Ok(staged)
}

/// Write `data` to `path` so that a crash at any moment leaves either the old or the new
/// file: a temporary file in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    stage(path, data)?.commit()
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
    fn a_staged_file_dropped_without_commit_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steerd.toml");
        std::fs::write(&p, "old").unwrap();
        drop(stage(&p, b"new").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
    }

    #[test]
    fn only_stale_temporary_files_of_the_same_file_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steerd.toml");
        let names = [
            ".steerd.toml.tmp.2147483646", // no such process: removed
            ".steerd.toml.tmp.1",          // init runs: kept
            ".steerd.toml.tmp.7x",
            ".steerd.toml.tmp.",
            ".steerd.toml.bak.2147483646",
            ".other.toml.tmp.2147483646",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        let own = dir
            .path()
            .join(format!(".steerd.toml.tmp.{}", std::process::id()));
        std::fs::write(&own, "x").unwrap();
        assert_eq!(remove_stale_temps(&p), 1);
        assert!(!dir.path().join(names[0]).exists());
        for n in &names[1..] {
            assert!(dir.path().join(n).exists(), "{n}");
        }
        assert!(
            own.exists(),
            "this process's own is left to the write that made it"
        );
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

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steerd.toml");
        std::fs::write(&p, "old").unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
