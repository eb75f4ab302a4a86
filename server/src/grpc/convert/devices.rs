//! DeviceImages' messages to and from domain types.

use retryd_client::v1 as pb;

use super::timestamp;
use super::uploads::time_bound;
use crate::core::devices::{
    Alert, Command, CommandStatus, Device, DeviceStatus, HistoryEvent, Image, ImageStatus,
    RetryReset, SweepOutcome, WakeSession, WakeSessionStatus,
};
use crate::core::Result;
use crate::service::devices::{QueueCommandInput, RegisterDeviceInput};

pub fn device_status(status: DeviceStatus) -> pb::DeviceStatus {
    match status {
        DeviceStatus::Registered => pb::DeviceStatus::Registered,
        DeviceStatus::Awake => pb::DeviceStatus::Awake,
        DeviceStatus::Asleep => pb::DeviceStatus::Asleep,
    }
}

pub fn image_status(status: ImageStatus) -> pb::ImageStatus {
    match status {
        ImageStatus::Pending => pb::ImageStatus::Pending,
        ImageStatus::Receiving => pb::ImageStatus::Receiving,
        ImageStatus::Complete => pb::ImageStatus::Complete,
        ImageStatus::Failed => pb::ImageStatus::Failed,
    }
}

pub fn command_status(status: CommandStatus) -> pb::CommandStatus {
    match status {
        CommandStatus::Pending => pb::CommandStatus::Pending,
        CommandStatus::Sent => pb::CommandStatus::Sent,
    }
}

pub fn wake_session_status(status: WakeSessionStatus) -> pb::WakeSessionStatus {
    match status {
        WakeSessionStatus::InProgress => pb::WakeSessionStatus::InProgress,
        WakeSessionStatus::Completed => pb::WakeSessionStatus::Completed,
        WakeSessionStatus::Timeout => pb::WakeSessionStatus::Timeout,
        WakeSessionStatus::Error => pb::WakeSessionStatus::Error,
    }
}

pub fn image_status_filter(value: i32) -> Result<Option<ImageStatus>> {
    super::status_filter(value, "image", ImageStatus::ALL, image_status)
}

pub fn command_status_filter(value: i32) -> Result<Option<CommandStatus>> {
    super::status_filter(value, "command", CommandStatus::ALL, command_status)
}

pub fn register_device_input(request: pb::RegisterDeviceRequest) -> Result<RegisterDeviceInput> {
    Ok(RegisterDeviceInput {
        next_wake_at: time_bound("next_wake_at", request.next_wake_at)?,
        mac: request.mac,
        name: request.name,
        wake_interval_seconds: request.wake_interval_seconds,
    })
}

pub fn queue_command_input(request: pb::QueueCommandRequest) -> Result<QueueCommandInput> {
    Ok(QueueCommandInput {
        scheduled_for: time_bound("scheduled_for", request.scheduled_for)?,
        expires_at: time_bound("expires_at", request.expires_at)?,
        mac: request.mac,
        command_type: request.r#type,
        payload: request.payload,
        priority: request.priority,
    })
}

pub fn device(device: Device) -> pb::Device {
    pb::Device {
        status: device_status(device.status).into(),
        mac: device.mac,
        name: device.name,
        wake_interval_seconds: device.wake_interval_seconds,
        next_wake_at: device.next_wake_at.map(timestamp),
        last_seen_at: device.last_seen_at.map(timestamp),
        firmware: device.firmware,
        battery_percent: device.battery_percent,
        pending_images: device.pending_images,
        failed_images: device.failed_images,
        created_at: Some(timestamp(device.created_at)),
    }
}

/// An image as lists show it: without its missing chunks, which can be thousands of numbers.
pub fn image(image: Image) -> pb::Image {
    pb::Image {
        status: image_status(image.status).into(),
        total_chunks: image.chunks.total(),
        chunks_received: image.chunks.received(),
        missing_chunks: Vec::new(),
        mac: image.mac,
        image_name: image.image_name,
        size_bytes: image.size_bytes,
        sha256: image.sha256,
        retry_count: image.retry_count,
        max_retries: image.max_retries,
        failed_at: image.failed_at.map(timestamp),
        timeout_reason: image.timeout_reason.unwrap_or_default(),
        created_at: Some(timestamp(image.created_at)),
        completed_at: image.completed_at.map(timestamp),
    }
}

/// An image as GetImage shows it: with the indices still missing.
pub fn image_with_missing_chunks(image: Image) -> pb::Image {
    let missing_chunks = image.chunks.missing();
    pb::Image {
        missing_chunks,
        ..self::image(image)
    }
}

pub fn command(command: Command) -> pb::DeviceCommand {
    pb::DeviceCommand {
        status: command_status(command.status).into(),
        id: command.id,
        mac: command.mac,
        r#type: command.command_type,
        payload: command.payload,
        priority: command.priority,
        scheduled_for: Some(timestamp(command.scheduled_for)),
        expires_at: command.expires_at.map(timestamp),
        created_at: Some(timestamp(command.created_at)),
        sent_at: command.sent_at.map(timestamp),
    }
}

pub fn alert(alert: Alert) -> pb::DeviceAlert {
    pb::DeviceAlert {
        id: alert.id,
        mac: alert.mac,
        alert_type: alert.alert_type,
        severity: alert.severity,
        message: alert.message,
        image_name: alert.image_name.unwrap_or_default(),
        created_at: Some(timestamp(alert.created_at)),
        acknowledged_at: alert.acknowledged_at.map(timestamp),
    }
}

pub fn wake_session(session: WakeSession) -> pb::WakeSession {
    pb::WakeSession {
        status: wake_session_status(session.status).into(),
        id: session.id,
        mac: session.mac,
        started_at: Some(timestamp(session.started_at)),
        ended_at: session.ended_at.map(timestamp),
        chunks_sent: session.chunks_sent,
        chunks_total: session.chunks_total,
        chunks_missing: session.chunks_missing,
        firmware: session.firmware,
        battery_percent: session.battery_percent,
        battery_millivolts: session.battery_millivolts,
        wifi_retries: session.wifi_retries,
        rssi_dbm: session.rssi_dbm,
        error_codes: session.error_codes,
    }
}

pub fn history_event(event: HistoryEvent) -> pb::HistoryEvent {
    pb::HistoryEvent {
        id: event.id,
        mac: event.mac,
        event_type: event.event_type,
        message: event.message,
        image_name: event.image_name.unwrap_or_default(),
        // The contract's "unset" for an event outside a session.
        session_id: event.session_id.unwrap_or_default(),
        created_at: Some(timestamp(event.created_at)),
    }
}

pub fn retry_reset(reset: RetryReset) -> pb::RetryFailedImagesResponse {
    pb::RetryFailedImagesResponse {
        images_reset: reset.images_reset,
        retries_queued: reset.retries_queued,
    }
}

pub fn sweep_outcome(outcome: SweepOutcome) -> pb::RunTimeoutSweepResponse {
    pb::RunTimeoutSweepResponse {
        images_timed_out: outcome.images_timed_out,
        retries_queued: outcome.retries_queued,
        failed_to_queue: outcome.failed_to_queue,
        expired_commands_removed: outcome.expired_commands_removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Error;

    #[test]
    fn every_domain_status_has_its_own_proto_value_and_filters_back_to_itself() {
        for status in ImageStatus::ALL {
            let value = i32::from(image_status(*status));
            assert_ne!(value, 0, "{status:?} is not unspecified");
            assert_eq!(image_status_filter(value).unwrap(), Some(*status));
        }
        for status in CommandStatus::ALL {
            let value = i32::from(command_status(*status));
            assert_ne!(value, 0, "{status:?} is not unspecified");
            assert_eq!(command_status_filter(value).unwrap(), Some(*status));
        }
        let devices: std::collections::HashSet<i32> = DeviceStatus::ALL
            .iter()
            .map(|status| i32::from(device_status(*status)))
            .collect();
        assert_eq!(devices.len(), DeviceStatus::ALL.len());
        assert!(!devices.contains(&0));
        let sessions: std::collections::HashSet<i32> = WakeSessionStatus::ALL
            .iter()
            .map(|status| i32::from(wake_session_status(*status)))
            .collect();
        assert_eq!(sessions.len(), WakeSessionStatus::ALL.len());
        assert!(!sessions.contains(&0));
    }

    #[test]
    fn unspecified_filters_nothing_and_unknown_numbers_name_the_field() {
        assert_eq!(image_status_filter(0).unwrap(), None);
        assert_eq!(command_status_filter(0).unwrap(), None);
        for refused in [
            image_status_filter(99).err(),
            command_status_filter(-1).err(),
        ] {
            let err = refused.expect("an unknown number is refused");
            assert!(
                matches!(&err, Error::InvalidArgument { .. }),
                "{err:?} is InvalidArgument"
            );
            assert!(err.to_string().contains("status"), "{err}");
        }
    }

    #[test]
    fn a_bad_timestamp_names_its_field() {
        let bad = Some(prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        });
        let err = queue_command_input(pb::QueueCommandRequest {
            expires_at: bad,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("expires_at"), "{err}");
        let err = register_device_input(pb::RegisterDeviceRequest {
            next_wake_at: bad,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("next_wake_at"), "{err}");
    }
}
