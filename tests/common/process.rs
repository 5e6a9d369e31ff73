//! A `steerd serve` process for tests that need one of their own (a SIGKILL, the
//! environment's tokens): started on a configuration file, its stderr in a log file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A `steerd serve` process, killed on drop.
pub struct Steerd {
    pub child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Steerd {
    /// Start the binary on `config`; `logs` is a directory for its stderr. The admin port is
    /// picked free and may be taken by another test before steerd binds it: then try another.
    pub fn spawn(config: &Path, logs: &Path, env: &[(&str, &str)]) -> Result<Steerd, String> {
        let mut attempt = 0;
        loop {
            match Steerd::spawn_once(config, logs, env) {
                Err(e)
                    if attempt < 4 && e.to_ascii_lowercase().contains("address already in use") =>
                {
                    attempt += 1;
                    eprintln!("{e}; retrying on another port");
                }
                r => return r,
            }
        }
    }

    fn spawn_once(config: &Path, logs: &Path, env: &[(&str, &str)]) -> Result<Steerd, String> {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = logs.join(format!("steerd-{}.log", rand::random::<u32>()));
        let child = Command::new(env!("CARGO_BIN_EXE_steerd"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--dns-listen", "127.0.0.1:0", "--admin-listen"])
            .arg(admin.to_string())
            .env_remove("STEERD_ADMIN_TOKEN")
            .env_remove("STEERD_READ_TOKEN")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Steerd { child, admin, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                return Err(format!("steerd exited ({status}): {}", s.log_text()));
            }
            if std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "steerd did not listen on {admin}: {}",
                    s.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigkill(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        self.child.wait().unwrap()
    }
}

impl Drop for Steerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
