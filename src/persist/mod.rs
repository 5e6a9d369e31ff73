//! Runtime inputs that must outlive a restart but are not configuration: this month's answer
//! counts per target (the cost cap's spend estimate when no billing report exists), the usage
//! the CDNs' billing reported (`PUT /v1/targets/{name}/usage`) and the cache metrics pushed
//! for the cache-aware policy (`PUT /v1/targets/{name}/cache-metrics`).
//!
//! Without this file a restart would forget the month's spend and let a CDN that is over its
//! cap take traffic again until the next billing push. It is JSON, written atomically (temporary
//! file, fsync, rename, fsync of the directory) every [`SAVE_EVERY`] when something changed and
//! at shutdown (by [`crate::control::Saver`]), and read once at start. A file that cannot be read or fails its checks is moved
//! aside (never deleted) and steerd starts without it.

pub mod atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::cost::Usage;
use crate::policy::reports::CacheReport;

/// The format written in `format`; a file of another format is refused. Fields added later
/// that older versions can ignore keep the format (unknown fields are ignored, so a rollback
/// keeps the month); only an incompatible change bumps it.
pub const FORMAT: u32 = 1;

const DAY_MS: u64 = 86_400_000;

/// More answers than any month of any CDN could see: a count above it is a damaged file.
pub const MAX_ANSWERS: u64 = 1_000_000_000_000_000;

/// How often the state is saved when it changed (and at shutdown). A SIGKILL loses at most
/// this much of the month's answer counts.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// What is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The latest cache metrics, per target name…
    #[serde(default)]
    pub cache: BTreeMap<String, CacheReport>,
    /// … and per target name and region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_regions: BTreeMap<String, BTreeMap<String, CacheReport>>,
}

impl Saved {
    /// The figures without the time they were written (to tell whether a save is needed).
    pub fn same_figures(&self, other: &Saved) -> bool {
        self.month_start_ms == other.month_start_ms
            && self.answers == other.answers
            && self.usage == other.usage
            && self.cache == other.cache
            && self.cache_regions == other.cache_regions
    }

    /// The checks the admin API applies to the same figures (as of `now_ms`), naming the
    /// field.
    pub fn check(&self, now_ms: u64) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format: {} is not supported (this steerd reads format {FORMAT})",
                self.format
            ));
        }
        // A day of slack: a clock stepped back between two runs must not cost the month.
        let latest = now_ms.saturating_add(DAY_MS);
        for (name, &n) in &self.answers {
            if n > MAX_ANSWERS {
                return Err(format!(
                    "answers.{name}: {n} is more than a month of answers could be (at most {MAX_ANSWERS})"
                ));
            }
        }
        for (name, u) in &self.usage {
            if u.spend_usd.is_none() && u.bytes.is_none() {
                return Err(format!("usage.{name}: has neither spend_usd nor bytes"));
            }
            if let Some(s) = u.spend_usd
                && !(s.is_finite() && s >= 0.0)
            {
                return Err(format!(
                    "usage.{name}.spend_usd: must be a finite number ≥ 0 (got {s})"
                ));
            }
            if u.as_of_ms > latest {
                return Err(format!(
                    "usage.{name}.as_of_ms: {} is in the future",
                    u.as_of_ms
                ));
            }
        }
        let regional = self.cache_regions.iter().flat_map(|(name, regions)| {
            regions
                .iter()
                .map(move |(r, c)| (format!("cache_regions.{name}.{r}"), c))
        });
        for (field, c) in self
            .cache
            .iter()
            .map(|(name, c)| (format!("cache.{name}"), c))
            .chain(regional)
        {
            if c.at_ms > latest {
                return Err(format!("{field}.at_ms: {} is in the future", c.at_ms));
            }
            c.check().map_err(|e| format!("{field}.{e}"))?;
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

/// Why a state file was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// It could not be read at all (permissions, I/O): it may be good, so leave it alone.
    #[error("{0}")]
    Unreadable(String),
    /// It was read but does not parse or fails its checks: move it aside.
    #[error("{0}")]
    Invalid(String),
}

/// Read the state at `path` (checked as of `now_ms`): Ok(None) when there is none yet;
/// otherwise why not, as "PATH: reason".
pub fn load(path: &Path, now_ms: u64) -> Result<Option<Saved>, LoadError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LoadError::Unreadable(format!(
                "{}: cannot read the state file: {e}",
                path.display()
            )));
        }
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| {
        LoadError::Invalid(format!("{}: not a steerd state file: {e}", path.display()))
    })?;
    saved
        .check(now_ms)
        .map_err(|e| LoadError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(Some(saved))
}

/// Write the state to `path` atomically.
pub fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    text.push(b'\n');
    atomic::write_atomically(path, &text)
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

    /// "Now" in the tests: after every time in [`sample`].
    const NOW: u64 = 1_700_000_100_000;

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
                    received_ms: 0,
                },
            )]
            .into(),
            cache_regions: [(
                "cdn-b".to_string(),
                [(
                    "EU".to_string(),
                    CacheReport {
                        hit_ratio: Some(0.5),
                        popularity: Some(0.2),
                        ttl_factor: None,
                        purge_ratio: Some(0.1),
                        at_ms: 1_699_999_600_000,
                        received_ms: 0,
                    },
                )]
                .into(),
            )]
            .into(),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state.json");
        assert_eq!(load(&path, NOW), Ok(None), "no file yet");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path, NOW), Ok(Some(sample())));
        // Saving again replaces it; no temporary file is left behind.
        let mut next = sample();
        next.answers.insert("cdn-b".into(), 7);
        save(&path, &next).unwrap();
        assert_eq!(load(&path, NOW), Ok(Some(next)));
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
        let e = load(&path, NOW).unwrap_err();
        assert!(matches!(e, LoadError::Invalid(_)), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("s.state.json: not a steerd state file"), "{e}");

        let mut wrong = serde_json::to_value(sample()).unwrap();
        wrong["format"] = 9.into();
        std::fs::write(&path, wrong.to_string()).unwrap();
        let e = load(&path, NOW).unwrap_err().to_string();
        assert!(
            e.ends_with("format: 9 is not supported (this steerd reads format 1)"),
            "{e}"
        );

        let mut neg = sample();
        neg.usage.get_mut("cdn-a").unwrap().spend_usd = Some(-1.0);
        save(&path, &neg).unwrap();
        let e = load(&path, NOW).unwrap_err().to_string();
        assert!(
            e.ends_with("usage.cdn-a.spend_usd: must be a finite number ≥ 0 (got -1)"),
            "{e}"
        );

        let mut ratio = sample();
        ratio.cache.get_mut("cdn-b").unwrap().hit_ratio = Some(1.5);
        save(&path, &ratio).unwrap();
        let e = load(&path, NOW).unwrap_err().to_string();
        assert!(
            e.ends_with("cache.cdn-b.hit_ratio: must be between 0 and 1 (got 1.5)"),
            "{e}"
        );

        for (what, edit, want) in [
            (
                "huge count",
                Box::new(|s: &mut Saved| {
                    s.answers.insert("cdn-a".into(), u64::MAX);
                }) as Box<dyn Fn(&mut Saved)>,
                "answers.cdn-a: 18446744073709551615 is more than a month of answers could be",
            ),
            (
                "empty usage",
                Box::new(|s: &mut Saved| {
                    let u = s.usage.get_mut("cdn-a").unwrap();
                    u.spend_usd = None;
                    u.bytes = None;
                }),
                "usage.cdn-a: has neither spend_usd nor bytes",
            ),
            (
                "usage from the future",
                Box::new(|s: &mut Saved| {
                    s.usage.get_mut("cdn-a").unwrap().as_of_ms = NOW + 2 * DAY_MS;
                }),
                "usage.cdn-a.as_of_ms: 1700172900000 is in the future",
            ),
            (
                "cache metrics from the future",
                Box::new(|s: &mut Saved| {
                    s.cache.get_mut("cdn-b").unwrap().at_ms = NOW + 2 * DAY_MS;
                }),
                "cache.cdn-b.at_ms: 1700172900000 is in the future",
            ),
        ] {
            let mut bad = sample();
            edit(&mut bad);
            save(&path, &bad).unwrap();
            let e = load(&path, NOW).unwrap_err().to_string();
            assert!(e.contains(want), "{what}: {e}");
        }

        let garbage = "{ not json either";
        std::fs::write(&path, garbage).unwrap();
        let aside = set_aside(&path, 42).unwrap();
        assert_eq!(aside, dir.path().join("s.state.json.bad-42"));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(&aside).unwrap(),
            garbage,
            "kept as it was"
        );
    }

    #[test]
    fn later_fields_are_ignored_and_a_clock_a_little_behind_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state.json");
        let mut later = serde_json::to_value(sample()).unwrap();
        later["written_by"] = "a later steerd".into();
        later["usage"]["cdn-a"]["currency"] = "USD".into();
        std::fs::write(&path, later.to_string()).unwrap();
        assert_eq!(load(&path, NOW), Ok(Some(sample())));
        // Saved by a clock an hour ahead of this one.
        assert_eq!(
            load(&path, 1_699_999_500_000 - 3_600_000),
            Ok(Some(sample()))
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_unreadable_not_invalid() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails (EISDIR).
        let e = load(dir.path(), NOW).unwrap_err();
        assert!(matches!(e, LoadError::Unreadable(_)), "{e:?}");
        assert!(e.to_string().contains("cannot read the state file"), "{e}");
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
