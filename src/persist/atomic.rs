//! Files written so that a crash at any moment leaves the old or the new one: a temporary
//! file beside the target, fsync, rename over, fsync of the directory; stale temporaries of
//! interrupted writes cleaned up.

use std::io::Write;
use std::path::{Path, PathBuf};

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
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steerd.toml");
        std::fs::write(&p, "old").unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
