//! Upload throughput: one file through UploadContent into the server's blob store (from the first
//! part sent to the STORED answer, which includes the server's fsync and sha256 check), beside
//! `dd … conv=fsync` copying the same file on the same disk.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::upload_retry_client::UploadRetryClient;
use retryd_client::v1::{CreateUploadRequest, UploadContentRequest, UploadStatus};
use sha2::{Digest, Sha256};

use super::report::BenchResult;
use super::{authorized, BenchArgs};

const MIB: usize = 1024 * 1024;

pub async fn run(
    channel: &Channel,
    args: &BenchArgs,
    disk: &Path,
) -> Result<Vec<BenchResult>, String> {
    let size = args.upload_mib * MIB;
    let part = (args.upload_part_kib * 1024).max(1);
    let mut rng = fastrand::Rng::new();
    let content: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
    let sha256 = hex::encode(Sha256::digest(&content));
    let upload_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut client = UploadRetryClient::new(channel.clone());
    client
        .create_upload(authorized(
            CreateUploadRequest {
                upload_id: upload_id.clone(),
                owner: "bench".into(),
                file_name: "bench.bin".into(),
                size_bytes: size as u64,
                sha256,
                ..Default::default()
            },
            args,
        ))
        .await
        .map_err(|status| format!("CreateUpload: {}", status.message()))?;

    let shared = std::sync::Arc::new(content);
    let data = std::sync::Arc::clone(&shared);
    let id = upload_id.clone();
    let parts = futures_util::stream::iter((0..size).step_by(part).map(move |offset| {
        UploadContentRequest {
            upload_id: id.clone(),
            offset: offset as u64,
            data: data[offset..(offset + part).min(size)].to_vec(),
        }
    }));
    let started = Instant::now();
    let stored = client
        .upload_content(authorized(parts, args))
        .await
        .map_err(|status| format!("UploadContent: {}", status.message()))?
        .into_inner();
    let upload_secs = started.elapsed().as_secs_f64();
    let ok = stored.status() == UploadStatus::Stored && stored.received_bytes == size as u64;

    let copy_secs = dd_copy(disk, &shared)?;
    let mib = args.upload_mib as f64;
    Ok(vec![
        BenchResult::throughput(
            "upload",
            "upload",
            format!(
                "MiB/s: UploadContent, {} KiB parts -> blob store",
                args.upload_part_kib
            ),
            args.upload_mib,
            mib / upload_secs,
            ok,
        ),
        BenchResult::throughput(
            "upload",
            "disk-copy",
            "MiB/s: dd conv=fsync of the same file, same disk".to_owned(),
            args.upload_mib,
            mib / copy_secs,
            true,
        ),
    ])
}

/// Writes the file into `disk` and times `dd` copying it there with a final fsync.
fn dd_copy(disk: &Path, content: &[u8]) -> Result<f64, String> {
    std::fs::create_dir_all(disk).map_err(|err| err.to_string())?;
    let source = disk.join("bench-copy-source");
    let target = disk.join("bench-copy-target");
    std::fs::write(&source, content)
        .map_err(|err| format!("cannot write the copy source: {err}"))?;
    let started = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", "conv=fsync", "status=none"])
        .status()
        .map_err(|err| format!("cannot run dd: {err}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&source);
    let _ = std::fs::remove_file(&target);
    if !status.success() {
        return Err("dd failed".into());
    }
    Ok(elapsed)
}
