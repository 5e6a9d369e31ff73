//! Runtime inputs that must outlive a restart but are not configuration: this month's answer
//! counts per target (the cost cap's spend estimate when no billing report exists), the usage
//! the CDNs' billing reported (`PUT /v1/targets/{name}/usage`) and the cache metrics pushed
//! for the cache-aware policy (`PUT /v1/targets/{name}/cache-metrics`).
//!
//! Without this file a restart would forget the month's spend and let a CDN that is over its
//! cap take traffic again until the next billing push. It is JSON, written atomically (temporary
//! file, fsync, rename, fsync of the directory) every [`SAVE_EVERY`] when something changed and
//! at shutdown, and read once at start. A file that cannot be read or fails its checks is moved
//! aside (never deleted) and steerd starts without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::CacheReport;
use crate::policy::cost::Usage;

/// The format written in `format`; a file of another format is refused.
pub const FORMAT: u32 = 1;

/// How often the state is saved when it changed (and at shutdown). A SIGKILL loses at most
/// this much of the month's answer counts.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// What is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub format: u32,
    /// When it was written (Unix ms).
    pub saved_at_ms: u64,
    /// Start (Unix ms, UTC) of the month the answer counts belong to: counts of another month
    /// are not carried over.
    pub month_start_ms: u64,
    /// Answers given this month, per target name.
    #[serde(default)]
    pub answers: BTreeMap<String, u64>,
    /// The latest billing report, per target name.
    #[serde(default)]
    pub usage: BTreeMap<String, Usage>,
    /// The latest cache metrics, per target name.
    #[serde(default)]
    pub cache: BTreeMap<String, CacheReport>,
}

impl Saved {
    /// The figures without the time they were written (to tell whether a save is needed).
    pub fn same_figures(&self, other: &Saved) -> bool {
        self.month_start_ms == other.month_start_ms
            && self.answers == other.answers
            && self.usage == other.usage
            && self.cache == other.cache
    }

    /// The checks the admin API applies to the same figures, naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format: {} is not supported (this steerd reads format {FORMAT})",
                self.format
            ));
        }
        for (name, u) in &self.usage {
            if let Some(s) = u.spend_usd
                && !(s.is_finite() && s >= 0.0)
            {
                return Err(format!(
                    "usage.{name}.spend_usd: must be a finite number ≥ 0 (got {s})"
                ));
            }
        }
        for (name, c) in &self.cache {
            for (field, v) in [
                ("hit_ratio", c.hit_ratio),
                ("popularity", c.popularity),
                ("ttl_factor", c.ttl_factor),
                ("purge_ratio", c.purge_ratio),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    return Err(format!(
                        "cache.{name}.{field}: must be between 0 and 1 (got {v})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where the state of a configuration lives: `server.state_file` when set (`""`: nowhere),
/// else `<name>.state.json` beside the configuration file; nowhere for a configuration that
/// has no file (the embedded demo, or one built in code).
pub fn path_for(setting: Option<&str>, config_file: Option<&Path>) -> Option<PathBuf> {
    match setting {
        Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let file = config_file?;
            let stem = file.file_stem()?.to_string_lossy().into_owned();
            Some(file.with_file_name(format!("{stem}.state.json")))
        }
    }
}

/// Read the state at `path`: Ok(None) when there is none yet; Err("PATH: reason") when it
/// cannot be read, parsed or fails its checks.
pub fn load(path: &Path) -> Result<Option<Saved>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let saved: Saved = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a steerd state file: {e}", path.display()))?;
    saved
        .check()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(saved))
}

/// Write the state to `path` atomically.
pub fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::admin::store::write_atomically(path, &text)
}

/// Move a state file that cannot be used out of the way (`<path>.bad-<unix ms>`), so that
/// nothing is lost and the next save does not overwrite it. The new path.
pub fn set_aside(path: &Path, now_ms: u64) -> std::io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".bad-{now_ms}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Saved {
        Saved {
            format: FORMAT,
            saved_at_ms: 1_700_000_000_000,
            month_start_ms: 1_698_796_800_000,
            answers: [("cdn-a".to_string(), 12), ("cdn-b".to_string(), 0)].into(),
            usage: [(
                "cdn-a".to_string(),
                Usage {
                    spend_usd: Some(812.5),
                    bytes: Some(1 << 40),
                    as_of_ms: 1_699_999_000_000,
                },
            )]
            .into(),
            cache: [(
                "cdn-b".to_string(),
                CacheReport {
                    hit_ratio: Some(0.93),
                    popularity: None,
                    ttl_factor: Some(0.5),
                    purge_ratio: None,
                    at_ms: 1_699_999_500_000,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state.json");
        assert_eq!(load(&path), Ok(None), "no file yet");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path), Ok(Some(sample())));
        // Saving again replaces it; no temporary file is left behind.
        let mut next = sample();
        next.answers.insert("cdn-b".into(), 7);
        save(&path, &next).unwrap();
        assert_eq!(load(&path), Ok(Some(next)));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["s.state.json"]);
    }

    #[test]
    fn bad_files_are_refused_naming_the_reason_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("s.state.json: not a steerd state file"), "{e}");

        let mut wrong = serde_json::to_value(sample()).unwrap();
        wrong["format"] = 9.into();
        std::fs::write(&path, wrong.to_string()).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.ends_with("format: 9 is not supported (this steerd reads format 1)"),
            "{e}"
        );

        let mut neg = sample();
        neg.usage.get_mut("cdn-a").unwrap().spend_usd = Some(-1.0);
        save(&path, &neg).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.ends_with("usage.cdn-a.spend_usd: must be a finite number ≥ 0 (got -1)"),
            "{e}"
        );

        let mut ratio = sample();
        ratio.cache.get_mut("cdn-b").unwrap().hit_ratio = Some(1.5);
        save(&path, &ratio).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.ends_with("cache.cdn-b.hit_ratio: must be between 0 and 1 (got 1.5)"),
            "{e}"
        );

        let mut unknown = serde_json::to_value(sample()).unwrap();
        unknown["extra"] = 1.into();
        std::fs::write(&path, unknown.to_string()).unwrap();
        assert!(load(&path).unwrap_err().contains("unknown field `extra`"));

        let aside = set_aside(&path, 42).unwrap();
        assert_eq!(aside, dir.path().join("s.state.json.bad-42"));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(&aside).unwrap(),
            unknown.to_string(),
            "kept as it was"
        );
    }

    #[test]
    fn where_the_state_lives() {
        let cfg = Path::new("conf/steerd.toml");
        assert_eq!(
            path_for(None, Some(cfg)),
            Some(PathBuf::from("conf/steerd.state.json"))
        );
        assert_eq!(path_for(Some(""), Some(cfg)), None);
        assert_eq!(
            path_for(Some("state/steerd.json"), Some(cfg)),
            Some(PathBuf::from("state/steerd.json"))
        );
        assert_eq!(path_for(None, None), None);
        assert_eq!(
            path_for(Some("s.json"), None),
            Some(PathBuf::from("s.json"))
        );
    }

    #[test]
    fn same_figures_ignores_the_time_of_writing() {
        let a = sample();
        let mut b = sample();
        b.saved_at_ms += 30_000;
        assert!(a.same_figures(&b));
        b.answers.insert("cdn-a".into(), 13);
        assert!(!a.same_figures(&b));
    }
}
