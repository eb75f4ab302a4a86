//! The server under test: started as a child process of the bench (so its memory can be read),
//! or a running one given by URL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use retryd_client::tonic::transport::{Channel, Endpoint};

use super::BenchArgs;

pub struct Target {
    url: String,
    pub engine: String,
    child: Option<Child>,
    /// Holds the SQLite file and the blob store of a server the bench starts, and the upload
    /// measurement's disk copy.
    scratch: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Target {
    pub async fn start(args: &BenchArgs) -> Result<Self, String> {
        let scratch = TempDir(
            std::env::temp_dir().join(format!("retryd-bench-{}", uuid::Uuid::new_v4().simple())),
        );
        if let Some(url) = &args.server {
            return Ok(Self {
                url: url.clone(),
                engine: "remote".into(),
                child: None,
                scratch,
            });
        }
        let database_url = match &args.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", scratch.0.join("bench.db").display()),
        };
        let engine = if crate::store::is_postgres_url(&database_url) {
            "postgres"
        } else {
            "sqlite"
        };
        let exe = std::env::current_exe().map_err(|err| err.to_string())?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database_url,
            ])
            // The bench drives the server far beyond the request limits' defaults.
            .env("RETRYD_LIMITS__MAX_CLAIM_BATCH", "10000")
            .env("RETRYD_UPLOADS__BLOB_STORE", scratch.0.join("blobs"))
            .env("RETRYD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| format!("cannot start the server: {err}"))?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("retryd listening on ") {
                        break address.to_owned();
                    }
                }
                _ => return Err("the server exited before listening".into()),
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let target = Self {
            url: format!("http://{address}"),
            engine: engine.into(),
            child: Some(child),
            scratch,
        };
        // Let the server settle before reading its idle memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(target)
    }

    /// A directory on the disk the server's blobs are on (when the bench started the server).
    pub fn scratch_dir(&self) -> std::path::PathBuf {
        self.scratch.0.join("scratch")
    }

    pub async fn channel(&self) -> Result<Channel, String> {
        Endpoint::from_shared(self.url.clone())
            .map_err(|err| err.to_string())?
            .connect()
            .await
            .map_err(|err| format!("cannot connect to {}: {err}", self.url))
    }

    /// Resident memory now, in KiB (only for a server the bench started).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// The most resident memory the server ever had, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
