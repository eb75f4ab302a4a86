//! A fleet of simulated devices (`retryd simulate-devices`, the real binary) against the real
//! server and a real Mosquitto: lossy links over several wake cycles, and the broker going away
//! mid-run.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use retryd_client::v1::*;
use serde_json::Value;

use crate::device_mqtt::{DeviceSetup, ServingStatus};
use crate::support::server::BINARY;
use crate::support::Engine;

fn simulate(setup: &DeviceSetup, count: u32, extra: &[&str]) -> std::process::Child {
    Command::new(BINARY)
        .args(["--mqtt-url", &setup.broker.url(), "simulate-devices"])
        .args([
            "--server",
            &setup.server.url(),
            "--count",
            &count.to_string(),
        ])
        .args(["--loss", "0.1", "--chunks", "6", "--chunk-bytes", "512"])
        .args(["--wake-seconds", "2", "--listen-ms", "400", "--json"])
        .args(extra)
        .env("RETRYD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn retryd simulate-devices")
}

fn summary(output: Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate-devices failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON summary")
}

fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

/// Every image ended complete, or failed for good with an alert; none is left half-way.
async fn assert_fleet_settled(setup: &mut DeviceSetup, summary: &Value, devices: u64) {
    assert_eq!(count(summary, "devices"), devices);
    assert_eq!(count(summary, "devices_gave_up"), 0, "{summary}");
    let complete = count(summary, "images_complete");
    let failed = count(summary, "images_failed_for_good");
    assert_eq!(complete + failed, devices, "{summary}");
    assert_eq!(count(summary, "images_verified"), complete);
    assert_eq!(count(summary, "checksum_mismatches"), 0);
    assert!(
        count(summary, "chunks_dropped") > 0,
        "the links lost chunks: {summary}"
    );
    assert!(count(summary, "retry_commands_obeyed") > 0, "{summary}");

    let mut by_status = std::collections::HashMap::new();
    let mut token = String::new();
    loop {
        let page = setup
            .api
            .list_images(ListImagesRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for image in &page.images {
            *by_status.entry(image.status).or_insert(0u64) += 1;
            if image.status == ImageStatus::Failed as i32 {
                assert!(image.retry_count >= image.max_retries, "{image:?}");
                let alerts = setup
                    .api
                    .list_alerts(ListAlertsRequest {
                        mac: image.mac.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .alerts;
                assert!(
                    !alerts.is_empty(),
                    "a failed image without an alert: {image:?}"
                );
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        by_status.get(&(ImageStatus::Complete as i32)),
        Some(&complete)
    );
    assert_eq!(by_status.get(&(ImageStatus::Receiving as i32)), None);
    assert_eq!(by_status.get(&(ImageStatus::Pending as i32)), None);
}

async fn a_fleet_on_lossy_links_ends_with_every_image_settled(engine: Engine) {
    let mut setup = DeviceSetup::new(engine).await;
    let run = simulate(&setup, 200, &["--seed", "7"]);
    let summary = summary(run.wait_with_output().unwrap());
    assert_fleet_settled(&mut setup, &summary, 200).await;
    // Several wake cycles were needed: retries happened across wakes.
    assert!(count(&summary, "wakes") > 200, "{summary}");
}

async fn the_adapter_reconnects_when_the_broker_restarts_mid_run(engine: Engine) {
    let mut setup = DeviceSetup::new(engine).await;
    let run = simulate(&setup, 50, &["--seed", "11", "--max-wakes", "30"]);
    // Stop the broker once devices are sending.
    let started = Instant::now();
    loop {
        let history = setup
            .api
            .list_history(ListHistoryRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        if !history.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "devices never spoke"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.broker.stop();
    setup
        .wait_for_device_images(ServingStatus::NotServing)
        .await;
    // The rest of the server keeps serving.
    let devices = setup
        .api
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 50);
    setup.broker.resume();
    setup.wait_for_device_images(ServingStatus::Serving).await;
    let summary = summary(run.wait_with_output().unwrap());
    assert_fleet_settled(&mut setup, &summary, 50).await;
}

on_both_engines!(
    a_fleet_on_lossy_links_ends_with_every_image_settled,
    the_adapter_reconnects_when_the_broker_restarts_mid_run,
);
