//! The real `retryd` binary, started as a child process on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use retryd_client::tonic::transport::Channel;

pub const BINARY: &str = env!("CARGO_BIN_EXE_retryd");

pub struct ServerProcess {
    child: Child,
    pub address: String,
    /// The server's working directory: relative default paths (the blob store) land here,
    /// never in the source tree or another test's.
    _workdir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `retryd serve` on the database and waits until it listens.
    pub fn start(database_url: &str, extra_args: &[&str]) -> Self {
        Self::try_start(database_url, extra_args)
            .unwrap_or_else(|output| panic!("retryd did not start:\n{output}"))
    }

    /// Like `start`, but returns what the process printed if it exits instead of listening.
    pub fn try_start(database_url: &str, extra_args: &[&str]) -> Result<Self, String> {
        let workdir = tempfile::tempdir().expect("server working directory");
        let mut command = Command::new(BINARY);
        command.current_dir(workdir.path());
        command.args(["serve", "--database-url", database_url]);
        if !extra_args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        // Only the tests about devices get a broker (their own): the others keep off the
        // machine's, where their servers would push each other out under one client id.
        if !extra_args.contains(&"--mqtt-url") {
            command.env("RETRYD_MQTT__ENABLED", "false");
        }
        let mut child = command
            .args(extra_args)
            .env("RETRYD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn retryd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("retryd listening on ") {
                        break address.to_owned();
                    }
                }
                _ => {
                    let output = child.wait_with_output().expect("wait for retryd");
                    return Err(String::from_utf8_lossy(&output.stderr).into_owned());
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            address,
            _workdir: workdir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid url")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to retryd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`, …) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, failing the test if it takes longer than `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll retryd") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "retryd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `retryd keys create --role ROLE` against the database and returns the printed key.
pub fn create_key(database_url: &str, role: &str) -> String {
    let output = Command::new(BINARY)
        .args([
            "keys",
            "create",
            "--role",
            role,
            "--database-url",
            database_url,
        ])
        .output()
        .expect("run retryd keys create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 key")
        .trim()
        .to_owned()
}

/// Writes a `retryd.toml` into `dir` and returns its path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("retryd.toml");
    std::fs::write(&path, toml).expect("write retryd.toml");
    path
}
