//! `retryd bench` end to end, small: it starts its own server, runs every measurement, checks
//! exactly-once completion, and writes results the comparison script can read.

use std::process::Command;

use crate::support::server::BINARY;

#[test]
fn the_load_generator_measures_and_checks_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.jsonl");
    let output = Command::new(BINARY)
        .args([
            "bench",
            "--chunks",
            "300",
            "--single-enqueue-chunks",
            "30",
            "--latency-chunks",
            "30",
        ])
        .args(["--rate", "200", "--workers", "3", "--create-batch", "100"])
        .args(["--stream-configs", "3x50,2x100", "--poll-configs", "3x20"])
        .args([
            "--sections",
            "enqueue,process-stream,process-poll,latency,upload",
        ])
        .args(["--upload-mib", "4", "--upload-part-kib", "256"])
        .args(["--json", json.to_str().unwrap()])
        .env("RETRYD_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("retryd on sqlite"), "{stdout}");
    assert!(stdout.contains("server memory: idle RSS"), "{stdout}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let tags: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["tag"].as_str())
        .collect();
    for tag in [
        "enq_bulk",
        "enq_x1",
        "proc_stream",
        "proc_poll",
        "e2e_c8",
        "e2e_return",
        "upload",
        "disk-copy",
    ] {
        assert!(tags.contains(&tag), "{tag} missing from {tags:?}");
    }
    for line in lines.iter().filter(|line| line["kind"] != "memory") {
        assert_eq!(line["ok"], true, "{line}");
        assert!(line["rate"].as_f64().unwrap_or(1.0) > 0.0, "{line}");
    }
    let memory = lines
        .iter()
        .find(|line| line["kind"] == "memory")
        .expect("memory figures");
    assert!(memory["peak_rss_kib"].as_u64().unwrap() > 0);
}
