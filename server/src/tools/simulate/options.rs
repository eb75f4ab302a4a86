//! The command line of `retryd simulate-devices`, and its validated form (`FleetOptions`), which
//! is also what a test hands to `run_fleet`.

use std::time::Duration;

use clap::Args;

use crate::mqtt::BrokerAddress;

/// The contract's bounds (device_contract.proto): chunks per image and bytes per chunk.
const MAX_CHUNKS: u32 = 4096;
const MAX_CHUNK_BYTES: u32 = 4096;
/// The server accepts wake intervals up to 7 days.
const MAX_WAKE_SECONDS: u32 = 7 * 24 * 3600;
const MAX_DEVICES: u32 = 100_000;
const MAC_DIGITS: usize = 12;
/// Chunks per image in `--bench` unless `--chunks` says otherwise: enough per device that
/// ingestion, not connecting, dominates the measurement.
const BENCH_CHUNKS: u32 = 256;
/// The broker when neither `--mqtt-url` nor RETRYD_MQTT_URL names one (the server's default).
pub const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1883";

/// The subcommand's own flags; the broker comes from the global `--mqtt-url` (RETRYD_MQTT_URL),
/// shared with `serve`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// How many devices to simulate.
    #[arg(long)]
    pub count: u32,
    /// The probability that a chunk is not published (0 to below 1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// The retryd server the devices are registered with and checked against.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Sent as `authorization: Bearer <key>` when set.
    #[arg(long, env = "RETRYD_API_KEY")]
    pub api_key: Option<String>,
    /// Chunks per image (default 8; 256 with --bench).
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Bytes per chunk; the last chunk of an image may be shorter.
    #[arg(long, default_value_t = 1024)]
    pub chunk_bytes: u32,
    /// A device's wake interval: it sleeps this long between wakes.
    #[arg(long, default_value_t = 5)]
    pub wake_seconds: u32,
    /// How long a device listens for commands after its hello, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub listen_ms: u64,
    /// Seeds image bytes, chunk loss and telemetry, so a run can be repeated (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The first hex digits of every MAC (the rest is the device's index), so that runs against
    /// one server don't collide (default: 02 and four random digits, a locally administered
    /// address).
    #[arg(long)]
    pub mac_prefix: Option<String>,
    /// A device gives up after this many wakes.
    #[arg(long, default_value_t = 20)]
    pub max_wakes: u32,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Measure ingestion (loss 0, many chunks per device, every device at once) and the broker's
    /// own throughput for the same message size.
    #[arg(long)]
    pub bench: bool,
}

/// A validated run: every field is in range.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub count: u32,
    pub loss: f64,
    pub broker: BrokerAddress,
    pub server: String,
    pub api_key: Option<String>,
    pub chunks: u32,
    pub chunk_bytes: u32,
    pub wake_interval: Duration,
    pub listen: Duration,
    /// How long a device waits for the next ack after its last chunk before it sleeps anyway.
    pub ack_idle: Duration,
    /// The first wakes are spread evenly over this time.
    pub spread: Duration,
    pub seed: u64,
    /// Uppercase hex, shorter than 12 digits by at least the width of the largest index.
    pub mac_prefix: String,
    pub max_wakes: u32,
    /// Makes image names unique per run: `img_<MAC>_<run_tag>.jpg`.
    pub run_tag: u64,
    /// Progress lines on stderr this often; None: none.
    pub progress_every: Option<Duration>,
}

impl FleetOptions {
    /// The options of a run with these devices, chunks and loss, and defaults otherwise (as
    /// the command line has them); tests start here and change fields.
    pub fn new(count: u32, loss: f64, mqtt_url: &str, server: &str) -> Result<Self, String> {
        let args = SimulateArgs {
            count,
            loss,
            server: server.into(),
            api_key: None,
            chunks: None,
            chunk_bytes: 1024,
            wake_seconds: 5,
            listen_ms: 500,
            seed: None,
            mac_prefix: None,
            max_wakes: 20,
            json: false,
            bench: false,
        };
        Self::from_args(&args, mqtt_url)
    }

    pub fn from_args(args: &SimulateArgs, mqtt_url: &str) -> Result<Self, String> {
        if args.count == 0 || args.count > MAX_DEVICES {
            return Err(format!("--count must be 1 to {MAX_DEVICES}"));
        }
        if !(0.0..1.0).contains(&args.loss) {
            return Err(format!(
                "--loss must be at least 0 and below 1 (got {}): a loss of 1 delivers nothing",
                args.loss
            ));
        }
        if args.bench && args.loss != 0.0 {
            return Err("--bench measures ingestion without loss: leave --loss at 0".into());
        }
        let chunks = args
            .chunks
            .unwrap_or(if args.bench { BENCH_CHUNKS } else { 8 });
        if chunks == 0 || chunks > MAX_CHUNKS {
            return Err(format!("--chunks must be 1 to {MAX_CHUNKS}"));
        }
        if args.chunk_bytes == 0 || args.chunk_bytes > MAX_CHUNK_BYTES {
            return Err(format!("--chunk-bytes must be 1 to {MAX_CHUNK_BYTES}"));
        }
        if args.wake_seconds == 0 || args.wake_seconds > MAX_WAKE_SECONDS {
            return Err(format!("--wake-seconds must be 1 to {MAX_WAKE_SECONDS}"));
        }
        if args.listen_ms == 0 || args.listen_ms > 60_000 {
            return Err("--listen-ms must be 1 to 60000".into());
        }
        if args.max_wakes == 0 {
            return Err("--max-wakes must be at least 1".into());
        }
        let broker = BrokerAddress::parse(mqtt_url).map_err(|err| format!("--mqtt-url: {err}"))?;
        let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
        let mac_prefix = match &args.mac_prefix {
            Some(prefix) => prefix.to_ascii_uppercase(),
            None => format!("02{:04X}", fastrand::u16(..)),
        };
        validate_mac_prefix(&mac_prefix, args.count)?;
        let listen = Duration::from_millis(args.listen_ms);
        let wake_interval = Duration::from_secs(args.wake_seconds.into());
        let run_tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_millis() as u64)
            .unwrap_or_default();
        Ok(Self {
            count: args.count,
            loss: args.loss,
            broker,
            server: args.server.clone(),
            api_key: args.api_key.clone(),
            chunks,
            chunk_bytes: args.chunk_bytes,
            wake_interval,
            listen,
            // A benchmark waits out a busy server's acks; a demo device sleeps like a real one
            // would, soon after the link goes quiet.
            ack_idle: if args.bench {
                Duration::from_secs(30)
            } else {
                listen
            },
            // A benchmark wants every device sending at once; otherwise the first wakes spread
            // over one interval, as a real fleet's would.
            spread: if args.bench { listen } else { wake_interval },
            seed,
            mac_prefix,
            max_wakes: args.max_wakes,
            run_tag,
            progress_every: Some(Duration::from_secs(2)),
        })
    }

    /// Device `index`'s MAC: the prefix, then the index in hex, 12 digits in all.
    pub fn mac(&self, index: u32) -> String {
        let width = MAC_DIGITS - self.mac_prefix.len();
        format!("{}{index:0width$X}", self.mac_prefix)
    }
}

fn validate_mac_prefix(prefix: &str, count: u32) -> Result<(), String> {
    if !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(format!("--mac-prefix {prefix:?}: only hex digits"));
    }
    let index_digits = format!("{:X}", count - 1).len();
    if prefix.len() + index_digits > MAC_DIGITS {
        return Err(format!(
            "--mac-prefix {prefix:?} leaves too few digits for {count} devices \
             (at most {} digits)",
            MAC_DIGITS - index_digits
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(line: &[&str]) -> Result<FleetOptions, String> {
        let cli = Cli::try_parse_from(std::iter::once("simulate").chain(line.iter().copied()))
            .map_err(|err| err.to_string())?;
        FleetOptions::from_args(&cli.args, DEFAULT_MQTT_URL)
    }

    #[test]
    fn defaults_follow_the_issue() {
        let options = parse(&["--count", "3", "--loss", "0.1", "--seed", "7"]).unwrap();
        assert_eq!(options.count, 3);
        assert_eq!(options.loss, 0.1);
        assert_eq!(options.chunks, 8);
        assert_eq!(options.chunk_bytes, 1024);
        assert_eq!(options.wake_interval, Duration::from_secs(5));
        assert_eq!(options.listen, Duration::from_millis(500));
        assert_eq!(options.max_wakes, 20);
        assert_eq!(options.seed, 7);
        assert_eq!(
            options.broker,
            BrokerAddress::parse("mqtt://127.0.0.1:1883").unwrap()
        );
        assert_eq!(options.mac_prefix.len(), 6);
        assert!(options.mac_prefix.starts_with("02"));
    }

    #[test]
    fn loss_outside_zero_to_one_is_rejected() {
        for loss in ["-0.1", "1", "1.5", "NaN"] {
            let flag = format!("--loss={loss}");
            let err = parse(&["--count", "1", &flag]).unwrap_err();
            assert!(err.contains("--loss"), "{loss}: {err}");
        }
        assert!(parse(&["--count", "1", "--loss", "0.99"]).is_ok());
    }

    #[test]
    fn out_of_range_counts_and_sizes_are_rejected() {
        for (line, flag) in [
            (vec!["--count", "0"], "--count"),
            (vec!["--count", "1", "--chunks", "0"], "--chunks"),
            (vec!["--count", "1", "--chunks", "4097"], "--chunks"),
            (vec!["--count", "1", "--chunk-bytes", "0"], "--chunk-bytes"),
            (
                vec!["--count", "1", "--chunk-bytes", "5000"],
                "--chunk-bytes",
            ),
            (
                vec!["--count", "1", "--wake-seconds", "0"],
                "--wake-seconds",
            ),
            (vec!["--count", "1", "--listen-ms", "0"], "--listen-ms"),
            (vec!["--count", "1", "--max-wakes", "0"], "--max-wakes"),
            (vec!["--count", "1", "--bench", "--loss", "0.1"], "--loss"),
        ] {
            let err = parse(&line).unwrap_err();
            assert!(err.contains(flag), "{line:?}: {err}");
        }
    }

    #[test]
    fn macs_are_the_prefix_then_the_index() {
        let options = parse(&["--count", "300", "--mac-prefix", "a4cf12"]).unwrap();
        assert_eq!(options.mac(0), "A4CF12000000");
        assert_eq!(options.mac(299), "A4CF1200012B");
        // Eleven prefix digits leave one for the index: 16 devices at most.
        assert!(parse(&["--count", "16", "--mac-prefix", "0123456789A"]).is_ok());
        let err = parse(&["--count", "17", "--mac-prefix", "0123456789A"]).unwrap_err();
        assert!(err.contains("too few digits"), "{err}");
        let err = parse(&["--count", "1", "--mac-prefix", "A4:CF"]).unwrap_err();
        assert!(err.contains("hex"), "{err}");
    }

    #[test]
    fn bench_defaults_to_many_chunks() {
        let options = parse(&["--count", "2", "--bench"]).unwrap();
        assert_eq!(options.chunks, 256);
        assert_eq!(options.loss, 0.0);
        let options = parse(&["--count", "2", "--bench", "--chunks", "64"]).unwrap();
        assert_eq!(options.chunks, 64);
    }

    #[test]
    fn a_bad_broker_url_names_the_flag() {
        let err = FleetOptions::new(1, 0.0, "mqtts://h:8883", "http://127.0.0.1:1").unwrap_err();
        assert!(err.starts_with("--mqtt-url"), "{err}");
    }
}
