//! Results: a table for people, JSON lines in the peer harness's shape for scripts.

use std::io::Write;
use std::path::Path;

/// One measurement, named like the peer harness's (`kind`, `tag`, `variant`).
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub kind: &'static str,
    pub tag: String,
    pub variant: String,
    pub jobs: usize,
    /// Chunks per second (throughput measurements).
    pub rate: Option<f64>,
    /// Latency percentiles in milliseconds (latency measurements).
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// The exactly-once check (and any other check) passed.
    pub ok: bool,
}

impl BenchResult {
    pub fn throughput(
        kind: &'static str,
        tag: &str,
        variant: String,
        jobs: usize,
        rate: f64,
        ok: bool,
    ) -> Self {
        Self {
            kind,
            tag: tag.into(),
            variant,
            jobs,
            rate: Some(rate),
            p50: None,
            p90: None,
            p99: None,
            max: None,
            ok,
        }
    }
}

pub struct Memory {
    pub idle_kib: Option<u64>,
    pub peak_kib: u64,
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

pub fn print(engine: &str, results: &[BenchResult], memory: Option<&Memory>) {
    println!("\nretryd on {engine}:");
    println!(
        "{:<10} {:<58} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>5}",
        "kind", "measurement", "chunks", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "check"
    );
    for r in results {
        println!(
            "{:<10} {:<58} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>5}",
            r.kind,
            r.variant,
            r.jobs,
            number(r.rate),
            number(r.p50),
            number(r.p90),
            number(r.p99),
            number(r.max),
            if r.ok { "ok" } else { "FAIL" }
        );
    }
    if let Some(memory) = memory {
        let idle = memory
            .idle_kib
            .map(|kib| format!("{:.1} MB", kib as f64 / 1024.0))
            .unwrap_or("-".into());
        println!(
            "server memory: idle RSS {idle}, peak RSS {:.1} MB",
            memory.peak_kib as f64 / 1024.0
        );
    }
}

pub fn write_json(
    path: &Path,
    engine: &str,
    results: &[BenchResult],
    memory: Option<&Memory>,
) -> Result<(), String> {
    let mut file = std::fs::File::create(path)
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    let peer = format!("retryd ({engine})");
    let mut lines: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "peer": peer, "kind": r.kind, "tag": r.tag, "variant": r.variant, "jobs": r.jobs,
                "rate": r.rate, "p50": r.p50, "p90": r.p90, "p99": r.p99, "max": r.max, "ok": r.ok,
            })
        })
        .collect();
    if let Some(memory) = memory {
        lines.push(serde_json::json!({
            "peer": peer, "kind": "memory", "idle_rss_kib": memory.idle_kib, "peak_rss_kib": memory.peak_kib,
        }));
    }
    for line in lines {
        writeln!(file, "{line}").map_err(|err| err.to_string())?;
    }
    Ok(())
}
