//! Configuration, in layers: built-in defaults, then `retryd.toml` (or the file `--config`
//! names), then `RETRYD_*` environment variables, then command-line flags. `retryd config` prints
//! the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::core::limits::Limits;
use crate::core::sync::SyncSettings;
use crate::store::PoolSettings;

mod mqtt;
mod uploads;

pub use mqtt::{MqttConfig, DEFAULT_MQTT_URL};
pub use uploads::UploadsConfig;

pub const DEFAULT_CONFIG_FILE: &str = "retryd.toml";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://retryd-data/retryd.db";

#[derive(Debug, Parser)]
#[command(name = "retryd", version, about = "A durable retry service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration.
    Config,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run a no-op worker against a server (for trying queues, load and crash tests).
    Worker(crate::tools::worker::WorkerArgs),
    /// Measure a server: enqueue and processing throughput, enqueue-to-worker latency, memory.
    Bench(crate::tools::bench::BenchArgs),
    /// Simulate a fleet of battery devices over MQTT (DeviceImages), or measure chunk ingestion.
    SimulateDevices(crate::tools::simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Service,
    Worker,
    Reader,
}

/// The settings that flags and `RETRYD_*` variables can override.
#[derive(Debug, Default, Args)]
pub struct Overrides {
    /// Configuration file [default: ./retryd.toml when it exists].
    #[arg(long, env = "RETRYD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC (and gRPC-Web) on [default: 127.0.0.1:50051].
    #[arg(long, env = "RETRYD_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// `postgres://…` for Postgres; a path or `sqlite://path` for SQLite
    /// [default: sqlite://retryd-data/retryd.db].
    #[arg(long, env = "RETRYD_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Serve on a non-loopback address even though no API key exists.
    #[arg(long, env = "RETRYD_INSECURE_NO_AUTH", global = true)]
    pub insecure_no_auth: bool,
    /// Log format [default: text].
    #[arg(long, env = "RETRYD_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// The MQTT broker devices talk to, `mqtt://[user[:password]@]host[:port]`
    /// [default: mqtt://127.0.0.1:1883].
    #[arg(long, env = "RETRYD_MQTT_URL", global = true)]
    pub mqtt_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub insecure_no_auth: bool,
    pub log_format: LogFormat,
    /// Most pooled database connections.
    pub database_max_connections: usize,
    /// How long a call waits for a database connection before failing with UNAVAILABLE.
    pub database_acquire_timeout_ms: u64,
    /// How often the database's reachability is checked for the health services.
    pub health_check_interval_ms: u64,
    /// How often a waiting claimer or Work stream re-checks the database when no wake-up came.
    pub claim_fallback_poll_ms: u64,
    /// How often a WatchJob stream re-reads progress when no change was announced.
    pub watch_fallback_poll_ms: u64,
    /// After SIGTERM/SIGINT, how long in-flight calls may take to finish.
    pub shutdown_grace_seconds: u64,
    pub limits: Limits,
    pub scheduler: SchedulerConfig,
    pub uploads: UploadsConfig,
    /// SyncRetry: snapshot retention and error classification rules.
    pub sync: SyncSettings,
    /// DeviceImages' MQTT device adapter.
    pub mqtt: MqttConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often the scheduler checks leadership and due tasks; with several replicas, also how
    /// soon another replica takes over when the leader dies.
    pub tick_ms: u64,
    /// This replica's name in run records and health; empty: host name, process id and a random
    /// suffix.
    pub replica_id: String,
    pub recover_stuck_chunks: TaskConfig,
    pub prune_finished_jobs: TaskConfig,
    /// Delivers uploads whose backoff is over (the seed's cron every 10 minutes).
    pub upload_sweep: TaskConfig,
    /// Removes old retry logs and delivered content (see `[uploads]` for the retentions).
    pub prune_uploads: TaskConfig,
    /// Finished jobs (and run records) older than this are pruned.
    pub finished_job_retention_seconds: u64,
    /// SyncRetry's retry processor.
    pub process_sync_retries: TaskConfig,
    /// Most retries one processor run makes claimable.
    pub sync_retry_batch: u32,
    pub prune_sync_retries: TaskConfig,
    /// Finished sync tasks and failure logs older than this are pruned.
    pub sync_retry_retention_seconds: u64,
    /// DeviceImages' timeout sweep (the seed's every 5 minutes).
    pub device_timeout_sweep: TaskConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub enabled: bool,
    pub interval_seconds: u64,
}

impl TaskConfig {
    fn every(seconds: u64) -> Self {
        Self {
            enabled: true,
            interval_seconds: seconds,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.max(1))
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1_000,
            replica_id: String::new(),
            recover_stuck_chunks: TaskConfig::every(60),
            prune_finished_jobs: TaskConfig::every(3_600),
            upload_sweep: TaskConfig::every(600),
            prune_uploads: TaskConfig::every(3_600),
            finished_job_retention_seconds: 7 * 24 * 3600,
            process_sync_retries: TaskConfig::every(120),
            sync_retry_batch: 10,
            prune_sync_retries: TaskConfig::every(3_600),
            sync_retry_retention_seconds: 7 * 24 * 3600,
            device_timeout_sweep: TaskConfig::every(300),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            insecure_no_auth: false,
            log_format: LogFormat::Text,
            database_max_connections: 16,
            database_acquire_timeout_ms: 5_000,
            health_check_interval_ms: 5_000,
            claim_fallback_poll_ms: 2_000,
            watch_fallback_poll_ms: 2_000,
            shutdown_grace_seconds: 10,
            limits: Limits::default(),
            scheduler: SchedulerConfig::default(),
            uploads: UploadsConfig::default(),
            sync: SyncSettings::default(),
            mqtt: MqttConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the file, then `RETRYD_*` variables, then the flags (clap has already put
    /// flags over their own variables).
    pub fn load(overrides: &Overrides) -> Result<Self, String> {
        Self::load_with_env(overrides, std::env::vars())
    }

    fn load_with_env(
        overrides: &Overrides,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        // Layers merge key by key over the defaults, so a file may set one field of a section.
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|err| format!("cannot build the defaults: {err}"))?;
        let file = match &overrides.config {
            Some(path) => Some(Self::read_file(path)?),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Some(Self::read_file(Path::new(DEFAULT_CONFIG_FILE))?)
            }
            None => None,
        };
        if let Some(file) = file {
            merge(&mut table, file);
        }
        apply_env(&mut table, env)?;
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|err| format!("invalid configuration: {err}"))?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(url) = &overrides.database_url {
            config.database_url = url.clone();
        }
        if overrides.insecure_no_auth {
            config.insecure_no_auth = true;
        }
        if let Some(format) = overrides.log_format {
            config.log_format = format;
        }
        if let Some(url) = &overrides.mqtt_url {
            config.mqtt.url = url.clone();
        }
        // A bad broker address stops the start here, with the setting named.
        config
            .mqtt
            .settings()
            .map_err(|err| format!("invalid [mqtt] settings: {err}"))?;
        Ok(config)
    }

    fn read_file(path: &Path) -> Result<toml::Table, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        text.parse::<toml::Table>()
            .map_err(|err| format!("invalid configuration in {}: {err}", path.display()))
    }

    /// The configuration as TOML, with any database password masked.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = mask_password(&shown.database_url);
        shown.mqtt.url = mask_password(&shown.mqtt.url);
        toml::to_string(&shown)
            .unwrap_or_else(|err| format!("# cannot print the configuration: {err}\n"))
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms),
        }
    }
}

/// Puts `layer` over `base`, section by section.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(section)), toml::Value::Table(layer_section)) => {
                merge(section, layer_section)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Variables the command line already reads (with their flags).
const FLAG_VARIABLES: &[&str] = &[
    "CONFIG",
    "LISTEN",
    "DATABASE_URL",
    "INSECURE_NO_AUTH",
    "LOG_FORMAT",
    "MQTT_URL",
    "LOG",
    // `retryd worker --api-key` (and the clients' examples) read the key from RETRYD_API_KEY.
    "API_KEY",
];

/// Every other `RETRYD_<KEY>` sets a setting of the file: `__` separates nested keys, so
/// `RETRYD_SCHEDULER__RECOVER_STUCK_CHUNKS__INTERVAL_SECONDS=5` sets
/// `[scheduler.recover_stuck_chunks] interval_seconds = 5`. Values are read as TOML values
/// (numbers, booleans), or as text when they are not one.
fn apply_env(
    table: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(), String> {
    for (name, value) in env {
        let Some(key) = name.strip_prefix("RETRYD_") else {
            continue;
        };
        if FLAG_VARIABLES.contains(&key) || key.is_empty() {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut parsed| parsed.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| format!("{name}: empty key"))?;
        let mut current = &mut *table;
        for parent in parents {
            current = current
                .entry(parent.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| format!("{name}: {parent} is not a section"))?;
        }
        current.insert(last.clone(), parsed);
    }
    Ok(())
}

fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retryd.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\ndatabase_url = \"sqlite://from-file.db\"\n[limits]\nmax_payload_bytes = 10\n",
        )
        .unwrap();
        let overrides = Overrides {
            config: Some(file),
            database_url: Some("postgres://u:secret@h/db".into()),
            ..Overrides::default()
        };
        let env = [
            (
                "RETRYD_SCHEDULER__RECOVER_STUCK_CHUNKS__INTERVAL_SECONDS".to_owned(),
                "5".to_owned(),
            ),
            (
                "RETRYD_SCHEDULER__REPLICA_ID".to_owned(),
                "replica-7".to_owned(),
            ),
            (
                "RETRYD_LIMITS__MAX_PAYLOAD_BYTES".to_owned(),
                "20".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = Config::load_with_env(&overrides, env.into_iter()).unwrap();
        assert_eq!(config.scheduler.recover_stuck_chunks.interval_seconds, 5);
        assert_eq!(config.scheduler.replica_id, "replica-7");
        assert_eq!(config.limits.max_payload_bytes, 20, "env beats the file");
        let config = Config::load(&overrides).unwrap();
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.database_url, "postgres://u:secret@h/db");
        assert_eq!(config.limits.max_payload_bytes, 10);
        assert_eq!(
            config.limits.max_claim_batch,
            Limits::default().max_claim_batch
        );
        assert!(config.to_toml().contains("postgres://u:***@h/db"));
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retryd.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:6000\"\n").unwrap();
        let overrides = Overrides {
            config: Some(file),
            ..Overrides::default()
        };
        assert!(Config::load(&overrides).unwrap_err().contains("lisen"));
        let env = [("RETRYD_SCHEDULER__TICK".to_owned(), "5".to_owned())];
        let none = Overrides::default();
        assert!(Config::load_with_env(&none, env.into_iter())
            .unwrap_err()
            .contains("tick"));
    }

    #[test]
    fn the_workers_api_key_variable_is_no_setting() {
        let env = [("RETRYD_API_KEY".to_owned(), "rtd_x_y".to_owned())];
        assert!(Config::load_with_env(&Overrides::default(), env.into_iter()).is_ok());
    }

    #[test]
    fn mqtt_defaults_to_a_local_broker() {
        let config = Config::load_with_env(&Overrides::default(), std::iter::empty()).unwrap();
        assert!(config.mqtt.enabled);
        assert_eq!(config.mqtt.url, DEFAULT_MQTT_URL);
        assert!(!config.mqtt.auto_register);
        let settings = config.mqtt.settings().unwrap().expect("enabled by default");
        assert_eq!(
            (settings.broker.host.as_str(), settings.broker.port),
            ("127.0.0.1", 1883)
        );
        assert!(
            settings.client_id.starts_with("retryd-"),
            "{}",
            settings.client_id
        );
        assert_eq!(
            settings.client_id,
            config.mqtt.settings().unwrap().unwrap().client_id
        );
        assert_eq!(settings.share_group, "retryd");
        assert_eq!(settings.workers, 8);
        assert_eq!(settings.max_chunk_bytes, 64 * 1024);
        assert_eq!(settings.reconnect_backoff_min, Duration::from_millis(100));
        assert_eq!(settings.reconnect_backoff_max, Duration::from_secs(5));
    }

    #[test]
    fn mqtt_layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retryd.toml");
        std::fs::write(
            &file,
            "[mqtt]\nurl = \"mqtt://file-broker:1884\"\nworkers = 3\nclient_id = \"replica-a\"\n",
        )
        .unwrap();
        let env = [
            ("RETRYD_MQTT__WORKERS".to_owned(), "5".to_owned()),
            ("RETRYD_MQTT__AUTO_REGISTER".to_owned(), "true".to_owned()),
            // Read by clap with --mqtt-url, so not a setting of the file.
            (
                "RETRYD_MQTT_URL".to_owned(),
                "mqtt://ignored-here:1".to_owned(),
            ),
        ];
        let overrides = Overrides {
            config: Some(file.clone()),
            ..Overrides::default()
        };
        let config = Config::load_with_env(&overrides, env.clone().into_iter()).unwrap();
        assert_eq!(config.mqtt.url, "mqtt://file-broker:1884");
        assert_eq!(config.mqtt.workers, 5, "env beats the file");
        assert!(config.mqtt.auto_register);
        assert_eq!(
            config.mqtt.settings().unwrap().unwrap().client_id,
            "replica-a"
        );
        let overrides = Overrides {
            config: Some(file),
            mqtt_url: Some("mqtt://user:pw@flag-broker:1885".into()),
            ..Overrides::default()
        };
        let config = Config::load_with_env(&overrides, env.into_iter()).unwrap();
        assert_eq!(
            config.mqtt.url, "mqtt://user:pw@flag-broker:1885",
            "the flag wins"
        );
        assert!(config
            .to_toml()
            .contains("mqtt://user:***@flag-broker:1885"));
        let settings = config.mqtt.settings().unwrap().unwrap();
        assert_eq!(settings.broker.username.as_deref(), Some("user"));
        assert_eq!(settings.broker.display_url(), "mqtt://flag-broker:1885");
    }

    #[test]
    fn the_mqtt_url_flag_and_variable_reach_the_overrides() {
        let cli = Cli::try_parse_from(["retryd", "--mqtt-url", "mqtt://flag:1"]).unwrap();
        assert_eq!(cli.overrides.mqtt_url.as_deref(), Some("mqtt://flag:1"));
        // No other test reads this variable from the process environment (and the settings
        // loader skips it), so setting it here disturbs nothing running alongside.
        std::env::set_var("RETRYD_MQTT_URL", "mqtt://from-env:2");
        let cli = Cli::try_parse_from(["retryd", "serve"]);
        std::env::remove_var("RETRYD_MQTT_URL");
        assert_eq!(
            cli.unwrap().overrides.mqtt_url.as_deref(),
            Some("mqtt://from-env:2")
        );
    }

    #[test]
    fn bad_mqtt_settings_refuse_to_start_with_the_reason() {
        let load = |flag: Option<&str>, env: &[(&str, &str)]| {
            let overrides = Overrides {
                mqtt_url: flag.map(str::to_owned),
                ..Overrides::default()
            };
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Config::load_with_env(&overrides, env.into_iter())
        };
        let err = load(Some("mqtts://broker:8883"), &[]).unwrap_err();
        assert!(
            err.contains("[mqtt]") && err.contains("plain MQTT"),
            "{err}"
        );
        let err = load(Some("broker:1883"), &[]).unwrap_err();
        assert!(err.contains("mqtt://"), "{err}");
        for (key, value, named) in [
            ("RETRYD_MQTT__WORKERS", "0", "mqtt.workers"),
            ("RETRYD_MQTT__SHARE_GROUP", "a/b", "mqtt.share_group"),
            (
                "RETRYD_MQTT__KEEP_ALIVE_SECONDS",
                "0",
                "mqtt.keep_alive_seconds",
            ),
            ("RETRYD_MQTT__MAX_CHUNK_BYTES", "0", "mqtt.max_chunk_bytes"),
            ("RETRYD_MQTT__CLIENT_ID", "has space", "mqtt.client_id"),
            (
                "RETRYD_MQTT__RECONNECT_BACKOFF_MIN_MS",
                "9000",
                "reconnect_backoff",
            ),
        ] {
            let err = load(None, &[(key, value)]).unwrap_err();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
        let err = load(None, &[("RETRYD_MQTT__URLL", "x")]).unwrap_err();
        assert!(err.contains("urll"), "{err}");
        // Disabled: no broker, so its address is not checked.
        let config = load(Some("mqtts://broker"), &[("RETRYD_MQTT__ENABLED", "false")]).unwrap();
        assert_eq!(config.mqtt.settings().unwrap(), None);
    }
}
