//! The device contract's payloads: protobuf (retryd_client::v1) in, domain types out, with the
//! contract's bounds checked here so the service only ever sees well-formed reports.

use prost::Message;
use retryd_client::v1 as pb;

use super::topics::Inbound;
use crate::core::device_messages::{ChunkAck, HelloReport, SleepReport};
use crate::core::devices::{
    validate_image_name, validate_total_chunks, validate_wake_interval, Command, NewImage,
    MAX_CHUNKS,
};
use crate::core::{Error, Result, Timestamp};

/// The contract's `max_size`/`max_count` notes (device_contract.proto).
const MAX_FIRMWARE_BYTES: usize = 32;
const MAX_PENDING_IMAGES: usize = 16;
const MAX_REASON_BYTES: usize = 32;
const MAX_ERROR_CODES: usize = 8;
/// Default for the largest chunk the server accepts: well above a device's 4 KiB chunk, so the
/// limit only stops payloads no device sends.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 64 * 1024;

/// One decoded device message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMessage {
    Hello(HelloReport),
    ImageBegin(NewImage),
    ImageChunk(ImageChunk),
    Sleep(SleepReport),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChunk {
    pub image_name: String,
    pub index: u32,
    pub data: Vec<u8>,
}

/// Decodes the payload of an inbound message of `kind`; Err says what is wrong with it.
pub fn decode(kind: Inbound, payload: &[u8], max_chunk_bytes: usize) -> Result<DeviceMessage> {
    match kind {
        Inbound::Hello => decode_hello(payload).map(DeviceMessage::Hello),
        Inbound::ImageBegin => decode_image_begin(payload).map(DeviceMessage::ImageBegin),
        Inbound::ImageChunk => {
            decode_image_chunk(payload, max_chunk_bytes).map(DeviceMessage::ImageChunk)
        }
        Inbound::Sleep => decode_sleep(payload).map(DeviceMessage::Sleep),
    }
}

fn protobuf<M: Message + Default>(payload: &[u8], what: &str) -> Result<M> {
    M::decode(payload).map_err(|err| Error::invalid(what, format!("not a valid protobuf: {err}")))
}

fn decode_hello(payload: &[u8]) -> Result<HelloReport> {
    let hello: pb::Hello = protobuf(payload, "Hello")?;
    at_most_bytes("firmware", &hello.firmware, MAX_FIRMWARE_BYTES)?;
    validate_wake_interval("wake_interval_seconds", hello.wake_interval_seconds)?;
    if hello.pending_images.len() > MAX_PENDING_IMAGES {
        return Err(Error::invalid(
            "pending_images",
            format!("at most {MAX_PENDING_IMAGES} names"),
        ));
    }
    for name in &hello.pending_images {
        validate_image_name("pending_images", name)?;
    }
    Ok(HelloReport {
        firmware: hello.firmware,
        battery_percent: hello.battery_percent,
        battery_millivolts: hello.battery_millivolts,
        wifi_retries: hello.wifi_retries,
        rssi_dbm: hello.rssi_dbm,
        next_wake_at: wake_time("next_wake_unix_seconds", hello.next_wake_unix_seconds)?,
        wake_interval_seconds: hello.wake_interval_seconds,
        pending_images: hello.pending_images,
    })
}

fn decode_image_begin(payload: &[u8]) -> Result<NewImage> {
    let begin: pb::ImageBegin = protobuf(payload, "ImageBegin")?;
    validate_image_name("image_name", &begin.image_name)?;
    validate_total_chunks("total_chunks", begin.total_chunks)?;
    if begin.sha256.len() != 32 {
        return Err(Error::invalid(
            "sha256",
            format!("must be 32 bytes, got {}", begin.sha256.len()),
        ));
    }
    Ok(NewImage {
        image_name: begin.image_name,
        total_chunks: begin.total_chunks,
        size_bytes: u64::from(begin.size_bytes),
        sha256: hex::encode(&begin.sha256),
    })
}

fn decode_image_chunk(payload: &[u8], max_chunk_bytes: usize) -> Result<ImageChunk> {
    let chunk: pb::ImageChunk = protobuf(payload, "ImageChunk")?;
    validate_image_name("image_name", &chunk.image_name)?;
    if chunk.index >= MAX_CHUNKS {
        return Err(Error::invalid(
            "index",
            format!("must be below {MAX_CHUNKS}"),
        ));
    }
    if chunk.data.is_empty() {
        return Err(Error::invalid("data", "must not be empty"));
    }
    if chunk.data.len() > max_chunk_bytes {
        return Err(Error::too_large(
            "data",
            format!(
                "{} bytes, the server accepts at most {max_chunk_bytes}",
                chunk.data.len()
            ),
        ));
    }
    Ok(ImageChunk {
        image_name: chunk.image_name,
        index: chunk.index,
        data: chunk.data,
    })
}

fn decode_sleep(payload: &[u8]) -> Result<SleepReport> {
    let sleep: pb::Sleep = protobuf(payload, "Sleep")?;
    at_most_bytes("reason", &sleep.reason, MAX_REASON_BYTES)?;
    if sleep.error_codes.len() > MAX_ERROR_CODES {
        return Err(Error::invalid(
            "error_codes",
            format!("at most {MAX_ERROR_CODES} codes"),
        ));
    }
    Ok(SleepReport {
        next_wake_at: wake_time("next_wake_unix_seconds", sleep.next_wake_unix_seconds)?,
        reason: sleep.reason,
        error_codes: sleep.error_codes,
    })
}

/// 0 means "not given"; anything a Timestamp cannot hold is refused rather than wrapped.
fn wake_time(field: &str, unix_seconds: u64) -> Result<Option<Timestamp>> {
    if unix_seconds == 0 {
        return Ok(None);
    }
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| seconds.checked_mul(1_000_000))
        .map(|micros| Some(Timestamp::from_micros(micros)))
        .ok_or_else(|| Error::invalid(field, "is too far in the future"))
}

fn at_most_bytes(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    Ok(())
}

/// The `commands` payload of a command.
pub fn encode_command(command: &Command) -> Vec<u8> {
    pb::Command {
        id: command.id,
        r#type: command.command_type.clone(),
        priority: command.priority,
        payload: command.payload.clone(),
    }
    .encode_to_vec()
}

/// The `ack` payload after a chunk.
pub fn encode_ack(ack: &ChunkAck) -> Vec<u8> {
    pb::Ack {
        image_name: ack.image_name.clone(),
        chunks_received: ack.chunks_received,
        total_chunks: ack.total_chunks,
        image_complete: ack.image_complete,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::devices::CommandStatus;

    const LIMIT: usize = DEFAULT_MAX_CHUNK_BYTES;

    fn invalid_field(result: Result<DeviceMessage>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn hello_decodes_with_its_wake_time() {
        let payload = pb::Hello {
            firmware: "1.4.2".into(),
            battery_percent: 87,
            battery_millivolts: 3900,
            wifi_retries: 2,
            rssi_dbm: -67,
            next_wake_unix_seconds: 1_762_625_082,
            wake_interval_seconds: 3600,
            pending_images: vec!["image_1.jpg".into()],
        }
        .encode_to_vec();
        let DeviceMessage::Hello(hello) = decode(Inbound::Hello, &payload, LIMIT).unwrap() else {
            panic!("not a hello");
        };
        assert_eq!(
            hello,
            HelloReport {
                firmware: "1.4.2".into(),
                battery_percent: 87,
                battery_millivolts: 3900,
                wifi_retries: 2,
                rssi_dbm: -67,
                next_wake_at: Some(Timestamp::from_micros(1_762_625_082_000_000)),
                wake_interval_seconds: 3600,
                pending_images: vec!["image_1.jpg".into()],
            }
        );
        let empty = decode(Inbound::Hello, &[], LIMIT).unwrap();
        assert_eq!(
            empty,
            DeviceMessage::Hello(HelloReport::default()),
            "0 → None"
        );
    }

    #[test]
    fn bad_hellos_are_refused() {
        let bad =
            |hello: pb::Hello| invalid_field(decode(Inbound::Hello, &hello.encode_to_vec(), LIMIT));
        assert_eq!(
            bad(pb::Hello {
                firmware: "x".repeat(33),
                ..Default::default()
            }),
            "firmware"
        );
        assert_eq!(
            bad(pb::Hello {
                pending_images: vec!["../etc".into()],
                ..Default::default()
            }),
            "pending_images"
        );
        assert_eq!(
            bad(pb::Hello {
                pending_images: vec!["a.jpg".into(); 17],
                ..Default::default()
            }),
            "pending_images"
        );
        assert_eq!(
            bad(pb::Hello {
                next_wake_unix_seconds: u64::MAX,
                ..Default::default()
            }),
            "next_wake_unix_seconds"
        );
        assert_eq!(
            bad(pb::Hello {
                wake_interval_seconds: u32::MAX,
                ..Default::default()
            }),
            "wake_interval_seconds"
        );
    }

    #[test]
    fn garbage_is_refused_for_every_kind_without_panicking() {
        for kind in Inbound::ALL {
            // A field header announcing a length-delimited field longer than the payload.
            let result = decode(kind, &[0x0a, 0xff, 0x01, 0x00], LIMIT);
            assert!(
                matches!(result, Err(Error::InvalidArgument { .. })),
                "{kind:?}: {result:?}"
            );
        }
    }

    #[test]
    fn image_begin_needs_a_32_byte_checksum_and_valid_bounds() {
        let begin = |name: &str, total: u32, sha: Vec<u8>| {
            pb::ImageBegin {
                image_name: name.into(),
                total_chunks: total,
                size_bytes: 10_000,
                sha256: sha,
            }
            .encode_to_vec()
        };
        let decoded = decode(
            Inbound::ImageBegin,
            &begin("img.jpg", 3, vec![0xAB; 32]),
            LIMIT,
        );
        assert_eq!(
            decoded.unwrap(),
            DeviceMessage::ImageBegin(NewImage {
                image_name: "img.jpg".into(),
                total_chunks: 3,
                size_bytes: 10_000,
                sha256: "ab".repeat(32),
            })
        );
        let field = |payload: Vec<u8>| invalid_field(decode(Inbound::ImageBegin, &payload, LIMIT));
        assert_eq!(field(begin("img.jpg", 3, vec![0xAB; 31])), "sha256");
        assert_eq!(field(begin("img.jpg", 3, vec![0xAB; 33])), "sha256");
        assert_eq!(field(begin("img.jpg", 3, Vec::new())), "sha256");
        assert_eq!(field(begin("img.jpg", 0, vec![0; 32])), "total_chunks");
        assert_eq!(
            field(begin("img.jpg", MAX_CHUNKS + 1, vec![0; 32])),
            "total_chunks"
        );
        assert_eq!(field(begin("", 3, vec![0; 32])), "image_name");
        assert_eq!(field(begin("a/b.jpg", 3, vec![0; 32])), "image_name");
    }

    #[test]
    fn chunks_within_the_limit_decode_and_oversize_ones_are_refused() {
        let chunk = |index: u32, data: Vec<u8>| {
            pb::ImageChunk {
                image_name: "img.jpg".into(),
                index,
                data,
            }
            .encode_to_vec()
        };
        assert_eq!(
            decode(Inbound::ImageChunk, &chunk(2, vec![7; 100]), 100).unwrap(),
            DeviceMessage::ImageChunk(ImageChunk {
                image_name: "img.jpg".into(),
                index: 2,
                data: vec![7; 100],
            })
        );
        assert!(matches!(
            decode(Inbound::ImageChunk, &chunk(2, vec![7; 101]), 100),
            Err(Error::ResourceExhausted { .. })
        ));
        assert_eq!(
            invalid_field(decode(Inbound::ImageChunk, &chunk(2, Vec::new()), 100)),
            "data"
        );
        assert_eq!(
            invalid_field(decode(
                Inbound::ImageChunk,
                &chunk(MAX_CHUNKS, vec![1]),
                100
            )),
            "index"
        );
    }

    #[test]
    fn sleep_decodes_and_its_bounds_hold() {
        let payload = pb::Sleep {
            next_wake_unix_seconds: 0,
            reason: "low_battery".into(),
            error_codes: vec![3, 17],
        }
        .encode_to_vec();
        assert_eq!(
            decode(Inbound::Sleep, &payload, LIMIT).unwrap(),
            DeviceMessage::Sleep(SleepReport {
                next_wake_at: None,
                reason: "low_battery".into(),
                error_codes: vec![3, 17],
            })
        );
        let too_many = pb::Sleep {
            error_codes: vec![1; 9],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            invalid_field(decode(Inbound::Sleep, &too_many, LIMIT)),
            "error_codes"
        );
    }

    #[test]
    fn commands_and_acks_encode_as_the_contract_says() {
        let command = Command {
            id: 42,
            mac: "A4CF12345678".into(),
            command_type: "retry_image".into(),
            payload: vec![1, 2, 3],
            priority: 8,
            scheduled_for: Timestamp::from_micros(0),
            expires_at: None,
            status: CommandStatus::Pending,
            created_at: Timestamp::from_micros(0),
            sent_at: None,
        };
        assert_eq!(
            pb::Command::decode(encode_command(&command).as_slice()).unwrap(),
            pb::Command {
                id: 42,
                r#type: "retry_image".into(),
                priority: 8,
                payload: vec![1, 2, 3],
            }
        );
        let ack = ChunkAck {
            image_name: "img.jpg".into(),
            chunks_received: 3,
            total_chunks: 4,
            image_complete: false,
        };
        assert_eq!(
            pb::Ack::decode(encode_ack(&ack).as_slice()).unwrap(),
            pb::Ack {
                image_name: "img.jpg".into(),
                chunks_received: 3,
                total_chunks: 4,
                image_complete: false,
            }
        );
    }
}
