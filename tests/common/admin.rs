//! A steerd started from a configuration file in its own temporary directory, with a client
//! for its admin API: what the API writes lands in that file.

use std::path::PathBuf;

use super::TestServer;
use super::http::Http;

/// The server, a client for its admin API and the file. (Fields drop in order: the server
/// stops before the directory goes.)
pub struct FileServer {
    pub srv: TestServer,
    pub http: Http,
    pub path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl FileServer {
    /// Start from `config` (health checks removed, the real clock).
    pub fn start(config: &str) -> Self {
        Self::start_clock(config, steerd::clock::SystemClock::shared())
    }

    /// Like [`FileServer::start`], the control plane reading the time from `clock`.
    pub fn start_clock(config: &str, clock: steerd::clock::SharedClock) -> Self {
        let (dir, path) = super::config_file(config);
        let srv = TestServer::start_file_clock(&path, false, clock, |_| {});
        let http = Http::new(srv.admin.expect("the admin API listens"));
        FileServer {
            srv,
            http,
            path,
            dir,
        }
    }

    /// The configuration file's text now.
    pub fn file(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    /// The configuration version the API reports.
    pub fn version(&self) -> u64 {
        self.http.get("/v1/status").expect(200).json()["config_version"]
            .as_u64()
            .expect("config_version is a number")
    }
}
