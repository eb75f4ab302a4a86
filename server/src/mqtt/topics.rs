//! The device contract's topic layout: `retryd/devices/{MAC}/…`, where `{MAC}` is 12 uppercase
//! hex digits (see proto/retryd/v1/device_contract.proto).

use crate::core::devices::normalize_mac;

pub const TOPIC_ROOT: &str = "retryd/devices";

/// What a device publishes, by topic suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inbound {
    Hello,
    ImageBegin,
    ImageChunk,
    Sleep,
}

impl Inbound {
    pub const ALL: [Inbound; 4] = [
        Inbound::Hello,
        Inbound::ImageBegin,
        Inbound::ImageChunk,
        Inbound::Sleep,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Inbound::Hello => "hello",
            Inbound::ImageBegin => "image/begin",
            Inbound::ImageChunk => "image/chunk",
            Inbound::Sleep => "sleep",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.suffix() == suffix)
    }
}

/// Why a topic is not one of the device contract's inbound topics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("not under {TOPIC_ROOT}/{{mac}}/")]
    OutsideContract,
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("{0}")]
    BadMac(String),
    /// Replies go to the canonical topic, which a device using another spelling never hears: so
    /// such a device is told (in the log) rather than silently answered elsewhere.
    #[error("the MAC must be written as {0} (12 uppercase hex digits, no separators)")]
    NonCanonicalMac(String),
}

/// The device (its normalized MAC) and message kind of an inbound topic.
pub fn parse_inbound(topic: &str) -> Result<(String, Inbound), TopicError> {
    let rest = topic
        .strip_prefix(TOPIC_ROOT)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(TopicError::OutsideContract)?;
    let (mac, suffix) = rest.split_once('/').ok_or(TopicError::OutsideContract)?;
    let kind =
        Inbound::from_suffix(suffix).ok_or_else(|| TopicError::UnknownKind(suffix.to_owned()))?;
    let normalized =
        normalize_mac("topic mac", mac).map_err(|err| TopicError::BadMac(err.to_string()))?;
    if normalized != mac {
        return Err(TopicError::NonCanonicalMac(normalized));
    }
    Ok((normalized, kind))
}

/// The topic a device publishes `kind` on (for devices, the simulator and tests).
pub fn inbound_topic(mac: &str, kind: Inbound) -> String {
    format!("{TOPIC_ROOT}/{mac}/{}", kind.suffix())
}

pub fn commands_topic(mac: &str) -> String {
    format!("{TOPIC_ROOT}/{mac}/commands")
}

pub fn ack_topic(mac: &str) -> String {
    format!("{TOPIC_ROOT}/{mac}/ack")
}

/// The shared subscriptions the server holds, one per inbound kind: every replica in `group`
/// receives a share of the devices' messages rather than all of them.
pub fn shared_filters(group: &str) -> Vec<String> {
    Inbound::ALL
        .into_iter()
        .map(|kind| format!("$share/{group}/{TOPIC_ROOT}/+/{}", kind.suffix()))
        .collect()
}

/// A share group name is one topic level: not empty, no '/', '+' or '#'.
pub fn validate_share_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.contains(['/', '+', '#']) || group.chars().any(char::is_control) {
        return Err(format!(
            "share group {group:?} must be a non-empty topic level without '/', '+', '#'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "A4CF12345678";

    #[test]
    fn inbound_topics_parse_into_device_and_kind() {
        for kind in Inbound::ALL {
            let topic = inbound_topic(MAC, kind);
            assert_eq!(parse_inbound(&topic), Ok((MAC.to_owned(), kind)), "{topic}");
        }
    }

    #[test]
    fn other_topics_are_refused_with_the_reason() {
        assert_eq!(
            parse_inbound("retryd/devices/A4CF12345678/commands"),
            Err(TopicError::UnknownKind("commands".into()))
        );
        assert_eq!(
            parse_inbound("retryd/devices/A4CF12345678/image/other"),
            Err(TopicError::UnknownKind("image/other".into()))
        );
        assert_eq!(
            parse_inbound("retryd/devices/A4CF12345678/hello/extra"),
            Err(TopicError::UnknownKind("hello/extra".into()))
        );
        for outside in [
            "retryd/devices/A4CF12345678",
            "retryd/devices",
            "retryd/devicesX/A4CF12345678/hello",
            "other/devices/A4CF12345678/hello",
            "",
        ] {
            assert_eq!(
                parse_inbound(outside),
                Err(TopicError::OutsideContract),
                "{outside}"
            );
        }
        for bad in ["A4CF1234567", "A4CF123456789", "G4CF12345678", ""] {
            let topic = format!("retryd/devices/{bad}/hello");
            assert!(
                matches!(parse_inbound(&topic), Err(TopicError::BadMac(_))),
                "{topic}"
            );
        }
        assert_eq!(
            parse_inbound("retryd/devices/a4:cf:12:34:56:78/hello"),
            Err(TopicError::NonCanonicalMac(MAC.into()))
        );
    }

    #[test]
    fn outbound_topics_and_shared_filters() {
        assert_eq!(commands_topic(MAC), "retryd/devices/A4CF12345678/commands");
        assert_eq!(ack_topic(MAC), "retryd/devices/A4CF12345678/ack");
        assert_eq!(
            shared_filters("retryd"),
            vec![
                "$share/retryd/retryd/devices/+/hello",
                "$share/retryd/retryd/devices/+/image/begin",
                "$share/retryd/retryd/devices/+/image/chunk",
                "$share/retryd/retryd/devices/+/sleep",
            ]
        );
        assert!(validate_share_group("retryd-eu").is_ok());
        for bad in ["", "a/b", "a+", "#"] {
            assert!(validate_share_group(bad).is_err(), "{bad}");
        }
    }
}
