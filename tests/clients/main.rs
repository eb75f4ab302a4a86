//! The generated clients' own test suites against the real server: each test starts `retryd`
//! on a fresh database, creates an admin, a worker and a reader key, and runs a client's test
//! command (`npm test`, `python3 -m pytest`) with the server's address and the keys in its
//! environment. A client test that fails, or a toolchain that is missing, fails the test: none
//! is skipped.

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use retryd_client::v1::JobStatus;
use support::server::{create_key, ServerProcess, BINARY};
use support::{Engine, TestDb};

/// The Rust client's example, compiled into this test as it is.
#[allow(dead_code)]
mod quickstart {
    include!("../../clients/rust/examples/quickstart.rs");
}

/// A running server with one key per role, as the client tests expect it.
struct KeyedServer {
    server: ServerProcess,
    keys: Vec<(&'static str, String)>,
    _db: TestDb,
}

impl KeyedServer {
    async fn start(engine: Engine) -> Self {
        let db = TestDb::new(engine).await;
        let keys = ["admin", "worker", "reader"]
            .into_iter()
            .map(|role| (role, create_key(&db.url, role)))
            .collect();
        let server = ServerProcess::start(&db.url, &[]);
        Self {
            server,
            keys,
            _db: db,
        }
    }

    /// What a client's tests read: RETRYD_URL (TypeScript), RETRYD_ADDRESS (Python), the keys
    /// and the binary (for `retryd worker`).
    fn key(&self, role: &str) -> String {
        let (_, key) = self
            .keys
            .iter()
            .find(|(name, _)| *name == role)
            .expect("a key per role");
        key.clone()
    }

    fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("RETRYD_URL".to_owned(), self.server.url()),
            ("RETRYD_ADDRESS".to_owned(), self.server.address.clone()),
            ("RETRYD_BIN".to_owned(), BINARY.to_owned()),
        ];
        for (role, key) in &self.keys {
            env.push((format!("RETRYD_{}_KEY", role.to_uppercase()), key.clone()));
        }
        env
    }
}

fn client_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// Runs a client's test command; its output is shown only when it fails.
fn run_client_tests(dir: &Path, program: &str, args: &[&str], env: Vec<(String, String)>) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run `{program}` ({err}): the client tests need it; `bash .ci/run` installs it")
        });
    assert!(
        output.status.success(),
        "`{program} {}` in {} failed ({}):\n{}\n{}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn typescript_client_tests_pass_against_the_server() {
    let dir = client_dir("typescript");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in {} first (`bash .ci/run` does)",
        dir.display()
    );
    let server = KeyedServer::start(Engine::Sqlite).await;
    run_client_tests(&dir, "npm", &["test"], server.environment());
}

#[tokio::test]
async fn python_client_tests_pass_against_the_server() {
    let server = KeyedServer::start(Engine::Postgres).await;
    run_client_tests(
        &client_dir("python"),
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
        server.environment(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_clients_example_creates_works_and_watches_a_job() {
    let server = KeyedServer::start(Engine::Sqlite).await;
    let last = quickstart::quickstart(server.server.url(), Some(server.key("admin")))
        .await
        .expect("the example runs");
    assert_eq!(last.overall_status(), JobStatus::Completed);
    assert_eq!((last.completed, last.progress_percentage), (3, 100.0));

    let readme = std::fs::read_to_string(client_dir("rust").join("README.md")).unwrap();
    let example =
        std::fs::read_to_string(client_dir("rust").join("examples/quickstart.rs")).unwrap();
    let shown = readme
        .split_once("<!-- example:start -->\n```rust\n")
        .and_then(|(_, rest)| rest.split_once("```\n<!-- example:end -->"))
        .map(|(shown, _)| shown)
        .expect("README.md has the example between its markers");
    assert_eq!(
        shown, example,
        "the README shows examples/quickstart.rs as it is"
    );
}
