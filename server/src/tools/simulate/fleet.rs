//! The fleet: registers every device, runs them all at once (first wakes spread over the
//! spread window), prints progress, and once every device is finished downloads each complete
//! image to check its bytes against what the device generated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::counters::Counters;
use super::device::{ImageOnServer, Outcome, Review, SimDevice};
use super::loss::Loss;
use super::operator::Operator;
use super::options::FleetOptions;
use super::summary::Summary;
use super::wake::{Sending, Wake};

/// gRPC calls in flight at once while registering and verifying.
const GRPC_CONCURRENCY: usize = 16;

/// How one device ended, and what it needs for the check.
pub struct DeviceReport {
    pub mac: String,
    pub image_name: String,
    pub sha256: Option<[u8; 32]>,
    pub outcome: Outcome,
    pub wakes: u32,
}

/// The result of checking the complete images against the devices' own bytes.
#[derive(Debug, Default)]
pub struct Verification {
    pub verified: u64,
    pub mismatches: Vec<String>,
    pub download_errors: Vec<String>,
}

/// Runs the whole simulation and returns its summary; errors only when the run could not
/// start (server unreachable, a device refused). Gave-up devices and mismatches are in the
/// summary, for the caller to judge.
pub async fn run_fleet(options: FleetOptions) -> Result<Summary, String> {
    let started = Instant::now();
    let operator = Operator::connect(&options.server, options.api_key.as_deref()).await?;
    register_all(&operator, &options).await?;
    let options = Arc::new(options);
    let counters = Arc::new(Counters::default());
    let devices: Vec<_> = (0..options.count)
        .map(|index| {
            tokio::spawn(live(
                index,
                options.clone(),
                operator.clone(),
                counters.clone(),
            ))
        })
        .collect();
    let progress = options.progress_every.map(|every| {
        tokio::spawn(report_progress(
            every,
            options.count,
            counters.clone(),
            started,
        ))
    });
    let mut reports = Vec::with_capacity(devices.len());
    for device in devices {
        reports.push(
            device
                .await
                .map_err(|err| format!("a device task failed: {err}"))?,
        );
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let wall = started.elapsed();
    let verification = verify(&operator, &reports).await;
    Ok(Summary::new(
        &options,
        &counters,
        &reports,
        &verification,
        wall,
    ))
}

async fn register_all(operator: &Operator, options: &FleetOptions) -> Result<(), String> {
    let wake_seconds = options.wake_interval.as_secs() as u32;
    let results: Vec<Result<(), String>> = stream::iter(0..options.count)
        .map(|index| {
            let mac = options.mac(index);
            async move {
                operator
                    .register(&mac, &format!("sim-{index}"), wake_seconds)
                    .await
            }
        })
        .buffer_unordered(GRPC_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One device from its first wake to its end.
async fn live(
    index: u32,
    options: Arc<FleetOptions>,
    operator: Operator,
    counters: Arc<Counters>,
) -> DeviceReport {
    let mac = options.mac(index);
    let image_name = format!("img_{mac}_{}.jpg", options.run_tag);
    // Each device draws from streams of its own, so a seed repeats the whole run whatever order
    // the devices happen to run in.
    let device_seed = options.seed ^ (u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut device = SimDevice::new(mac, image_name, device_seed);
    let mut loss = Loss::new(options.loss, device_seed.rotate_left(32));
    let offset = options
        .spread
        .mul_f64(f64::from(index) / f64::from(options.count));
    tokio::time::sleep(offset).await;
    loop {
        let sending = match device.image() {
            None => {
                device.capture(options.chunks, options.chunk_bytes);
                Sending::Whole
            }
            Some(_) => match review(&operator, &mut device).await {
                Review::Done(_) => break,
                Review::SendWhole => {
                    Counters::add(&counters.whole_resends, 1);
                    Sending::Whole
                }
                Review::FollowCommands => Sending::Commanded,
            },
        };
        if device.wakes() >= options.max_wakes {
            device.give_up();
            break;
        }
        Counters::add(&counters.wakes, 1);
        let mut wake = Wake {
            options: &options,
            counters: &counters,
            loss: &mut loss,
        };
        if let Err(err) = wake.run(&mut device, sending).await {
            Counters::add(&counters.failed_wakes, 1);
            tracing::warn!(mac = %device.mac, %err, "simulate: wake failed");
        }
        if device.outcome().is_some() {
            break;
        }
        tokio::time::sleep(options.wake_interval).await;
    }
    let outcome = device.outcome().unwrap_or(Outcome::GaveUp);
    Counters::add(
        match outcome {
            Outcome::Complete => &counters.complete,
            Outcome::FailedForGood => &counters.failed_for_good,
            Outcome::GaveUp => &counters.gave_up,
        },
        1,
    );
    DeviceReport {
        sha256: device.image().map(|image| image.sha256()),
        image_name: device.image_name().to_owned(),
        mac: device.mac.clone(),
        outcome,
        wakes: device.wakes(),
    }
}

/// Asks the server how the image stands; while the server cannot say, the device goes on
/// following commands.
async fn review(operator: &Operator, device: &mut SimDevice) -> Review {
    match operator
        .image_on_server(&device.mac, device.image_name())
        .await
    {
        Ok(server) => device.review(server),
        Err(err) => {
            tracing::warn!(mac = %device.mac, %err, "simulate: cannot ask for the image");
            device.review(ImageOnServer::Receiving)
        }
    }
}

async fn report_progress(every: Duration, count: u32, counters: Arc<Counters>, started: Instant) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let get = |counter| Counters::get(counter);
        eprintln!(
            "simulate-devices: {:>5.0}s finished {}/{count} (complete {}, failed {}, gave up {}); \
             wakes {}, chunks {} published {} dropped, acks {}, retries obeyed {}",
            started.elapsed().as_secs_f64(),
            counters.finished(),
            get(&counters.complete),
            get(&counters.failed_for_good),
            get(&counters.gave_up),
            get(&counters.wakes),
            get(&counters.chunks_published),
            get(&counters.chunks_dropped),
            get(&counters.acks_received),
            get(&counters.retry_commands_obeyed),
        );
    }
}

/// Downloads every complete image and compares its SHA-256 with the device's.
async fn verify(operator: &Operator, reports: &[DeviceReport]) -> Verification {
    let checks: Vec<(String, Result<bool, String>)> = stream::iter(
        reports
            .iter()
            .filter(|report| report.outcome == Outcome::Complete),
    )
    .map(|report| async move {
        let result = operator
            .download_sha256(&report.mac, &report.image_name)
            .await
            .map(|downloaded| Some(downloaded) == report.sha256);
        (report.mac.clone(), result)
    })
    .buffer_unordered(GRPC_CONCURRENCY)
    .collect()
    .await;
    let mut verification = Verification::default();
    for (mac, result) in checks {
        match result {
            Ok(true) => verification.verified += 1,
            Ok(false) => verification.mismatches.push(mac),
            Err(err) => verification.download_errors.push(err),
        }
    }
    verification
}
