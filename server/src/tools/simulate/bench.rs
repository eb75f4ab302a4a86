//! `retryd simulate-devices --bench`: chunk ingestion (MQTT → stored and acked by the server)
//! without loss, beside the broker's own throughput for messages of the same size, so the
//! report can give ingestion as a share of what the broker alone carries.

use prost::Message;
use retryd_client::v1::ImageChunk;
use serde::Serialize;

use super::baseline::{self, BrokerThroughput};
use super::fleet::run_fleet;
use super::options::FleetOptions;
use super::summary::Summary;

/// The broker baseline moves at least this many messages, so a tiny fleet still gives a
/// steady figure.
const MIN_BASELINE_MESSAGES: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub ingestion: Summary,
    /// The size of one encoded ImageChunk of this run.
    pub message_bytes: usize,
    pub broker_rumqttc: BrokerThroughput,
    /// None when the Mosquitto clients are not installed or failed (see the error).
    pub broker_mosquitto_cli: Option<BrokerThroughput>,
    pub mosquitto_cli_error: Option<String>,
    /// Ingestion chunks per second over the rumqttc baseline's messages per second.
    pub ingestion_to_broker_ratio: f64,
}

pub async fn run_bench(options: FleetOptions) -> Result<BenchReport, String> {
    let broker = options.broker.clone();
    let message_bytes = chunk_message_bytes(&options);
    let ingestion = run_fleet(options).await?;
    let messages = ingestion.chunks_published.max(MIN_BASELINE_MESSAGES);
    let broker_rumqttc = baseline::with_rumqttc(&broker, message_bytes, messages).await?;
    let (broker_mosquitto_cli, mosquitto_cli_error) =
        match baseline::with_mosquitto_cli(&broker, message_bytes, messages).await {
            Ok(throughput) => (Some(throughput), None),
            Err(err) => (None, Some(err)),
        };
    let ratio = ingestion.ingestion_chunks_per_second / broker_rumqttc.messages_per_second;
    Ok(BenchReport {
        ingestion,
        message_bytes,
        broker_rumqttc,
        broker_mosquitto_cli,
        mosquitto_cli_error,
        ingestion_to_broker_ratio: ratio,
    })
}

/// A full chunk of this run as it goes over the wire (name, index, data).
fn chunk_message_bytes(options: &FleetOptions) -> usize {
    ImageChunk {
        image_name: format!("img_{}_{}.jpg", options.mac(0), options.run_tag),
        index: options.chunks - 1,
        data: vec![0; options.chunk_bytes as usize],
    }
    .encoded_len()
}

impl BenchReport {
    pub fn to_text(&self) -> String {
        let mut text = self.ingestion.to_text();
        let line = |name: &str, rate: f64, detail: String| {
            format!("{name:<38} {rate:>9.0} msgs/s  {detail}\n")
        };
        text.push_str(&format!(
            "\nthroughput for {}-byte messages (QoS 1):\n",
            self.message_bytes
        ));
        text.push_str(&line(
            "retryd ingestion (MQTT → stored, acked)",
            self.ingestion.ingestion_chunks_per_second,
            format!("{} chunks", self.ingestion.chunks_published),
        ));
        let broker = &self.broker_rumqttc;
        text.push_str(&line(
            &format!("broker, {}", broker.clients),
            broker.messages_per_second,
            format!("{} messages", broker.messages),
        ));
        match (&self.broker_mosquitto_cli, &self.mosquitto_cli_error) {
            (Some(cli), _) => text.push_str(&line(
                &format!("broker, {}", cli.clients),
                cli.messages_per_second,
                format!("{} messages", cli.messages),
            )),
            (None, Some(err)) => {
                text.push_str(&format!("broker, mosquitto CLI: not measured ({err})\n"))
            }
            (None, None) => {}
        }
        text.push_str(&format!(
            "retryd ingestion / broker (rumqttc)    {:.2}\n",
            self.ingestion_to_broker_ratio
        ));
        text
    }
}
