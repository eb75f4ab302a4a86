//! What the adapter needs to run, already validated (config/mqtt.rs builds it from `[mqtt]`).

use std::time::Duration;

use super::contract::DEFAULT_MAX_CHUNK_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    pub broker: BrokerAddress,
    /// Stable across restarts: the broker keeps this client's session (subscriptions and
    /// unacknowledged messages) under it.
    pub client_id: String,
    pub share_group: String,
    pub keep_alive: Duration,
    /// Devices are spread over this many workers; one device's messages are handled in order.
    pub workers: usize,
    pub max_chunk_bytes: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
}

impl MqttSettings {
    /// Defaults for a broker address (what `[mqtt]` defaults to, apart from the client id).
    pub fn new(broker: BrokerAddress, client_id: impl Into<String>) -> Self {
        Self {
            broker,
            client_id: client_id.into(),
            share_group: "retryd".to_owned(),
            keep_alive: Duration::from_secs(30),
            workers: 8,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
        }
    }
}

/// A plain-TCP MQTT broker: `mqtt://[user[:password]@]host[:port]` (`tcp://` too).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for BrokerAddress {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_url())
    }
}

pub const DEFAULT_MQTT_PORT: u16 = 1883;

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("mqtt url {url:?} must start with mqtt://"))?;
        match scheme {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" | "wss" | "ws" => {
                return Err(format!(
                    "mqtt url {scheme}:// is not supported: this build speaks plain MQTT over TCP \
                     only (mqtt://host:port); put a TLS-terminating proxy or a local bridge in \
                     front of a remote broker"
                ))
            }
            other => return Err(format!("mqtt url scheme {other}:// is not mqtt://")),
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!(
                "mqtt url {:?} must be mqtt://[user[:password]@]host[:port], without a path or query",
                mask(url)
            ));
        }
        let (credentials, host_port) = match rest.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, rest),
        };
        let (host, port) = split_host_port(host_port)
            .ok_or_else(|| format!("mqtt url {:?}: bad host or port", mask(url)))?;
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
                None => (Some(credentials.to_owned()), None),
            },
        };
        Ok(Self {
            host,
            port,
            username,
            password,
        })
    }

    /// rumqttc's options for this broker: its host, port and credentials (a user name without
    /// a password logs in with an empty one); the caller sets the session's own behaviour.
    pub fn mqtt_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut options = rumqttc::MqttOptions::new(client_id, &self.host, self.port);
        if let Some(username) = &self.username {
            options.set_credentials(username, self.password.clone().unwrap_or_default());
        }
        options
    }

    /// The address for logs and health: no credentials.
    pub fn display_url(&self) -> String {
        if self.host.contains(':') {
            format!("mqtt://[{}]:{}", self.host, self.port)
        } else {
            format!("mqtt://{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(host_port: &str) -> Option<(String, u16)> {
    // An IPv6 literal is bracketed: [::1]:1883.
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let port = match port {
        None => DEFAULT_MQTT_PORT,
        Some(port) => port.parse::<u16>().ok().filter(|port| *port != 0)?,
    };
    Some((host.to_owned(), port))
}

fn mask(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        let plain = BrokerAddress::parse("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 1883));
        assert_eq!(plain.username, None);
        let default_port = BrokerAddress::parse("tcp://broker.local").unwrap();
        assert_eq!(default_port.port, DEFAULT_MQTT_PORT);
        let with_login = BrokerAddress::parse("mqtt://dev:s3cret@broker:1884/").unwrap();
        assert_eq!(with_login.username.as_deref(), Some("dev"));
        assert_eq!(with_login.password.as_deref(), Some("s3cret"));
        assert_eq!(with_login.display_url(), "mqtt://broker:1884");
        assert!(!format!("{with_login:?}").contains("s3cret"));
        let v6 = BrokerAddress::parse("mqtt://[::1]:2000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 2000));
        assert_eq!(v6.display_url(), "mqtt://[::1]:2000");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let err = BrokerAddress::parse("mqtts://broker:8883").unwrap_err();
        assert!(err.contains("plain MQTT"), "{err}");
        for bad in [
            "broker:1883",
            "http://broker",
            "mqtt://",
            "mqtt://broker:0",
            "mqtt://broker:99999",
            "mqtt://broker:port",
            "mqtt://broker/path",
            "mqtt://[::1",
        ] {
            assert!(BrokerAddress::parse(bad).is_err(), "{bad}");
        }
        let err = BrokerAddress::parse("mqtt://u:secret@broker/x").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
