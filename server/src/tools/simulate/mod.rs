//! `retryd simulate-devices`: a fleet of simulated battery cameras for tests, demos and
//! benchmarks. Each device is registered through DeviceImages, then wakes on its interval,
//! says hello over MQTT, sends one image in chunks (losing each with the given probability),
//! obeys `retry_image` commands, and sleeps, until its image is complete or has failed for
//! good. The run ends with a summary, after downloading every complete image to check its bytes.
//! `--bench` measures chunk ingestion beside the broker's own throughput.

mod baseline;
mod bench;
mod counters;
mod device;
mod fleet;
mod image;
mod loss;
mod operator;
mod options;
mod session;
mod summary;
mod wake;

/// The tests' private Mosquitto, the same one the integration tests start.
#[cfg(test)]
#[allow(dead_code)] // stop/resume serve the integration tests
#[path = "../../../../tests/support/broker.rs"]
mod test_broker;

pub use bench::{run_bench, BenchReport};
pub use fleet::run_fleet;
pub use options::{FleetOptions, SimulateArgs, DEFAULT_MQTT_URL};
pub use summary::Summary;

/// The command: prints the summary (text or JSON) on stdout; fails when a device gave up or a
/// downloaded image differs from what its device sent.
/// `mqtt_url` is the global `--mqtt-url` (or RETRYD_MQTT_URL), the one the server uses too.
pub async fn run(args: SimulateArgs, mqtt_url: Option<String>) -> Result<(), String> {
    let mqtt_url = mqtt_url.unwrap_or_else(|| DEFAULT_MQTT_URL.to_owned());
    let options = FleetOptions::from_args(&args, &mqtt_url)?;
    let summary = if args.bench {
        let report = run_bench(options).await?;
        print(args.json, &report, BenchReport::to_text)?;
        report.ingestion
    } else {
        let summary = run_fleet(options).await?;
        print(args.json, &summary, Summary::to_text)?;
        summary
    };
    match summary.problems() {
        problems if problems.is_empty() => Ok(()),
        problems => Err(problems.join("; ")),
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: fn(&T) -> String) -> Result<(), String> {
    if json {
        let line = serde_json::to_string(value).map_err(|err| err.to_string())?;
        println!("{line}");
    } else {
        print!("{}", text(value));
    }
    Ok(())
}
