//! The broker's own throughput for a given message size, the yardstick for ingestion: one
//! publisher and one subscriber through the same broker at QoS 1, first with rumqttc (the
//! client the devices use), then with Mosquitto's own command-line clients when installed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::session::Session;
use crate::mqtt::BrokerAddress;

/// A broker that delivers nothing for this long has stopped.
const STALL: Duration = Duration::from_secs(10);
/// mosquitto_sub says nothing when it has subscribed; it is given this long before publishing.
const SUBSCRIBE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize)]
pub struct BrokerThroughput {
    pub clients: &'static str,
    pub messages: u64,
    pub message_bytes: usize,
    /// From the first publication to the last message received.
    pub seconds: f64,
    pub messages_per_second: f64,
}

impl BrokerThroughput {
    fn new(clients: &'static str, messages: u64, message_bytes: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            clients,
            messages,
            message_bytes,
            seconds,
            messages_per_second: messages as f64 / seconds.max(1e-9),
        }
    }
}

fn baseline_topic() -> String {
    format!("retryd-sim-baseline/{}", uuid::Uuid::new_v4().simple())
}

pub async fn with_rumqttc(
    broker: &BrokerAddress,
    message_bytes: usize,
    messages: u64,
) -> Result<BrokerThroughput, String> {
    let topic = baseline_topic();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut subscriber = Session::open(
        broker,
        &format!("retryd-sim-sub-{id}"),
        std::slice::from_ref(&topic),
    )
    .await?;
    let publisher = Session::open(broker, &format!("retryd-sim-pub-{id}"), &[]).await?;
    let payload = vec![0x5a; message_bytes];
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        for _ in 0..messages {
            publisher.publish(topic.clone(), payload.clone()).await?;
        }
        Ok::<_, String>(publisher)
    });
    let mut received = 0;
    while received < messages {
        match subscriber.next_message(Instant::now() + STALL).await? {
            Some(_) => received += 1,
            None => return Err(format!("only {received} of {messages} messages arrived")),
        }
    }
    let elapsed = started.elapsed();
    let publisher = publishing.await.map_err(|err| err.to_string())??;
    publisher.close().await;
    subscriber.close().await;
    Ok(BrokerThroughput::new(
        "rumqttc → rumqttc",
        messages,
        message_bytes,
        elapsed,
    ))
}

/// `mosquitto_pub -l` (one message per stdin line) into `mosquitto_sub -C N`.
pub async fn with_mosquitto_cli(
    broker: &BrokerAddress,
    message_bytes: usize,
    messages: u64,
) -> Result<BrokerThroughput, String> {
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || mosquitto_cli(&broker, message_bytes, messages))
        .await
        .map_err(|err| err.to_string())?
}

fn mosquitto_cli(
    broker: &BrokerAddress,
    message_bytes: usize,
    messages: u64,
) -> Result<BrokerThroughput, String> {
    let topic = baseline_topic();
    let port = broker.port.to_string();
    let mut connection: Vec<&str> = vec!["-h", &broker.host, "-p", &port, "-t", &topic, "-q", "1"];
    if let Some(user) = &broker.username {
        let password = broker.password.as_deref().unwrap_or_default();
        connection.extend(["-u", user, "-P", password]);
    }
    let mut subscriber = Command::new("mosquitto_sub")
        .args(&connection)
        .args(["-C", &messages.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|err| format!("mosquitto_sub: {err}"))?;
    std::thread::sleep(SUBSCRIBE_GRACE);
    let started = std::time::Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args(&connection)
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|err| {
            let _ = subscriber.kill();
            let _ = subscriber.wait();
            format!("mosquitto_pub: {err}")
        })?;
    // A line of `message_bytes` printable bytes is one message of that size.
    let mut line = vec![b'x'; message_bytes];
    line.push(b'\n');
    if let Some(mut stdin) = publisher.stdin.take() {
        for _ in 0..messages {
            if stdin.write_all(&line).is_err() {
                break;
            }
        }
    }
    let published = publisher.wait().map_err(|err| err.to_string())?;
    let deadline = std::time::Instant::now() + STALL;
    let received = loop {
        match subscriber.try_wait().map_err(|err| err.to_string())? {
            Some(status) => break status.success(),
            None if std::time::Instant::now() >= deadline => {
                let _ = subscriber.kill();
                let _ = subscriber.wait();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let elapsed = started.elapsed();
    if !published.success() || !received {
        return Err(format!(
            "mosquitto_pub exited with {published}; mosquitto_sub received all: {received}"
        ));
    }
    Ok(BrokerThroughput::new(
        "mosquitto_pub -l → mosquitto_sub",
        messages,
        message_bytes,
        elapsed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::simulate::test_broker::Broker;

    #[tokio::test]
    async fn every_message_gets_through_a_real_broker_with_either_client() {
        let broker = Broker::start();
        let address = BrokerAddress::parse(&broker.url()).unwrap();
        let rumqttc = with_rumqttc(&address, 1_100, 2_000).await.unwrap();
        assert_eq!(rumqttc.messages, 2_000);
        assert_eq!(rumqttc.message_bytes, 1_100);
        assert!(rumqttc.messages_per_second > 0.0);
        let cli = with_mosquitto_cli(&address, 1_100, 2_000).await.unwrap();
        assert_eq!(cli.messages, 2_000);
    }
}
