//! One simulated device's state, without any I/O: what it says in `hello` and `sleep`, what it
//! does with a command or an ack, and what the server's view of its image means for it. The
//! wake (`wake.rs`) carries these messages over MQTT.

use std::collections::HashSet;

use prost::Message;
use retryd_client::v1::{Ack, Command, Hello, RetryImagePayload, Sleep};

use super::image::SimImage;

/// The command type that asks for chunks again (device_contract.proto).
const RETRY_IMAGE: &str = "retry_image";
const FIRMWARE: &str = "sim-1.0";

/// How a device's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server holds the whole image with a matching checksum.
    Complete,
    /// FAILED with its retries used up: the server queues no more retries.
    FailedForGood,
    /// Neither after `--max-wakes` wakes.
    GaveUp,
}

/// What the server says about the device's image (GetImage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOnServer {
    /// NOT_FOUND: the announcement never arrived.
    Unknown,
    /// Announced, no chunk yet.
    Pending,
    Receiving,
    Complete,
    Failed {
        retry_count: u32,
        max_retries: u32,
    },
}

/// What the device does this wake, given the server's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Finished: no more wakes.
    Done(Outcome),
    /// The server has none of the image: announce it and send every chunk again.
    SendWhole,
    /// Say hello and do what the commands say.
    FollowCommands,
}

/// What the device does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAction {
    /// Send exactly these chunks again.
    Resend(Vec<u32>),
    /// An id seen before: skipped.
    Duplicate,
    /// Not a retry of this device's image: logged and ignored.
    Ignored(String),
}

pub struct SimDevice {
    pub mac: String,
    image_name: String,
    image: Option<SimImage>,
    outcome: Option<Outcome>,
    seen_commands: HashSet<i64>,
    wakes: u32,
    battery_percent: u32,
    rng: fastrand::Rng,
}

impl SimDevice {
    pub fn new(mac: String, image_name: String, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        Self {
            mac,
            image_name,
            image: None,
            outcome: None,
            seen_commands: HashSet::new(),
            wakes: 0,
            battery_percent: rng.u32(60..=100),
            rng,
        }
    }

    /// `retryd/devices/{mac}/{leaf}`.
    pub fn topic(&self, leaf: &str) -> String {
        format!("retryd/devices/{}/{leaf}", self.mac)
    }

    pub fn image_name(&self) -> &str {
        &self.image_name
    }

    pub fn image(&self) -> Option<&SimImage> {
        self.image.as_ref()
    }

    /// Takes the device's one picture (the first wake).
    pub fn capture(&mut self, total_chunks: u32, chunk_bytes: u32) -> &SimImage {
        let name = self.image_name.clone();
        let rng = &mut self.rng;
        self.image
            .get_or_insert_with(|| SimImage::capture(name, total_chunks, chunk_bytes, rng))
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    pub fn wakes(&self) -> u32 {
        self.wakes
    }

    pub fn give_up(&mut self) {
        self.outcome.get_or_insert(Outcome::GaveUp);
    }

    /// Decides this wake from the server's view of the image.
    pub fn review(&mut self, server: ImageOnServer) -> Review {
        let review = match server {
            ImageOnServer::Complete => Review::Done(Outcome::Complete),
            ImageOnServer::Failed {
                retry_count,
                max_retries,
            } if retry_count >= max_retries => Review::Done(Outcome::FailedForGood),
            // The timeout rule only fails images that are receiving: one whose chunks were all
            // lost would wait for a retry that never comes, so the device starts over.
            ImageOnServer::Unknown | ImageOnServer::Pending => Review::SendWhole,
            ImageOnServer::Receiving | ImageOnServer::Failed { .. } => Review::FollowCommands,
        };
        if let Review::Done(outcome) = review {
            self.outcome = Some(outcome);
        }
        review
    }

    /// The first message of a wake (which it counts).
    pub fn hello(&mut self, now_unix_seconds: u64, wake_interval_seconds: u32) -> Hello {
        self.wakes += 1;
        // Each wake costs a little charge.
        self.battery_percent = self.battery_percent.saturating_sub(self.rng.u32(0..=1));
        let pending_images = match (&self.image, self.outcome) {
            (Some(image), None) => vec![image.name.clone()],
            _ => Vec::new(),
        };
        Hello {
            firmware: FIRMWARE.into(),
            battery_percent: self.battery_percent,
            battery_millivolts: 3300 + self.battery_percent * 9,
            wifi_retries: self.rng.u32(0..=3),
            rssi_dbm: -self.rng.i32(40..=85),
            next_wake_unix_seconds: now_unix_seconds + u64::from(wake_interval_seconds),
            wake_interval_seconds,
            pending_images,
        }
    }

    /// The last message of a wake.
    pub fn sleep(&self, now_unix_seconds: u64, wake_interval_seconds: u32) -> Sleep {
        Sleep {
            next_wake_unix_seconds: now_unix_seconds + u64::from(wake_interval_seconds),
            reason: String::new(),
            error_codes: Vec::new(),
        }
    }

    pub fn on_command(&mut self, command: &Command) -> CommandAction {
        if !self.seen_commands.insert(command.id) {
            return CommandAction::Duplicate;
        }
        if command.r#type != RETRY_IMAGE {
            return CommandAction::Ignored(format!("command type {:?}", command.r#type));
        }
        let payload = match RetryImagePayload::decode(command.payload.as_slice()) {
            Ok(payload) => payload,
            Err(err) => return CommandAction::Ignored(format!("undecodable payload: {err}")),
        };
        let Some(image) = self.image.as_ref().filter(|i| i.name == payload.image_name) else {
            return CommandAction::Ignored(format!("unknown image {:?}", payload.image_name));
        };
        let total = image.total_chunks();
        if let Some(bad) = payload.missing_chunks.iter().find(|i| **i >= total) {
            return CommandAction::Ignored(format!("chunk {bad} of an image of {total} chunks"));
        }
        CommandAction::Resend(payload.missing_chunks)
    }

    /// True when this ack completes the image.
    pub fn on_ack(&mut self, ack: &Ack) -> bool {
        let completes = ack.image_complete
            && ack.image_name == self.image_name
            && self.image.is_some()
            && self.outcome.is_none();
        if completes {
            self.outcome = Some(Outcome::Complete);
        }
        completes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_with_image() -> SimDevice {
        let mut device = SimDevice::new("02AB00000003".into(), "img_a.jpg".into(), 1);
        device.capture(8, 16);
        device
    }

    fn retry(id: i64, image_name: &str, missing: Vec<u32>) -> Command {
        Command {
            id,
            r#type: "retry_image".into(),
            priority: 8,
            payload: RetryImagePayload {
                image_name: image_name.into(),
                missing_chunks: missing,
            }
            .encode_to_vec(),
        }
    }

    #[test]
    fn a_retry_asks_for_exactly_its_chunks() {
        let mut device = device_with_image();
        assert_eq!(
            device.on_command(&retry(10, "img_a.jpg", vec![1, 5, 7])),
            CommandAction::Resend(vec![1, 5, 7])
        );
        assert_eq!(
            device.on_command(&retry(11, "img_a.jpg", vec![0])),
            CommandAction::Resend(vec![0])
        );
    }

    #[test]
    fn a_command_id_seen_before_is_skipped() {
        let mut device = device_with_image();
        let command = retry(10, "img_a.jpg", vec![2]);
        assert_eq!(device.on_command(&command), CommandAction::Resend(vec![2]));
        assert_eq!(device.on_command(&command), CommandAction::Duplicate);
        // Even an ignored command counts as seen.
        let reboot = Command {
            id: 12,
            r#type: "reboot".into(),
            ..Default::default()
        };
        assert!(matches!(
            device.on_command(&reboot),
            CommandAction::Ignored(_)
        ));
        assert_eq!(device.on_command(&reboot), CommandAction::Duplicate);
    }

    #[test]
    fn commands_that_are_not_retries_of_this_image_are_ignored() {
        let mut device = device_with_image();
        for command in [
            retry(1, "img_other.jpg", vec![1]),
            retry(2, "img_a.jpg", vec![8]),
            Command {
                id: 3,
                r#type: "retry_image".into(),
                priority: 8,
                payload: vec![0xff, 0xff, 0xff],
            },
            Command {
                id: 4,
                r#type: "set_wake_interval".into(),
                ..Default::default()
            },
        ] {
            let action = device.on_command(&command);
            assert!(
                matches!(action, CommandAction::Ignored(_)),
                "{command:?}: {action:?}"
            );
        }
        // A device without an image has nothing to resend.
        let mut empty = SimDevice::new("02AB00000000".into(), "img_a.jpg".into(), 1);
        assert!(matches!(
            empty.on_command(&retry(5, "img_a.jpg", vec![0])),
            CommandAction::Ignored(_)
        ));
    }

    #[test]
    fn only_a_complete_ack_for_its_image_finishes_the_device() {
        let mut device = device_with_image();
        let ack = |name: &str, complete| Ack {
            image_name: name.into(),
            chunks_received: 8,
            total_chunks: 8,
            image_complete: complete,
        };
        assert!(!device.on_ack(&ack("img_a.jpg", false)));
        assert!(!device.on_ack(&ack("img_other.jpg", true)));
        assert_eq!(device.outcome(), None);
        assert!(device.on_ack(&ack("img_a.jpg", true)));
        assert_eq!(device.outcome(), Some(Outcome::Complete));
        // Said once: a second complete ack changes nothing.
        assert!(!device.on_ack(&ack("img_a.jpg", true)));
    }

    #[test]
    fn the_servers_view_decides_the_wake() {
        let mut device = device_with_image();
        assert_eq!(device.review(ImageOnServer::Unknown), Review::SendWhole);
        assert_eq!(device.review(ImageOnServer::Pending), Review::SendWhole);
        assert_eq!(
            device.review(ImageOnServer::Receiving),
            Review::FollowCommands
        );
        let failed = |retry_count| ImageOnServer::Failed {
            retry_count,
            max_retries: 3,
        };
        assert_eq!(device.review(failed(2)), Review::FollowCommands);
        assert_eq!(device.outcome(), None);
        assert_eq!(
            device.review(failed(3)),
            Review::Done(Outcome::FailedForGood)
        );
        assert_eq!(device.outcome(), Some(Outcome::FailedForGood));
        let mut other = device_with_image();
        assert_eq!(
            other.review(ImageOnServer::Complete),
            Review::Done(Outcome::Complete)
        );
    }

    #[test]
    fn hello_and_sleep_say_the_next_wake_and_what_is_pending() {
        let mut device = SimDevice::new("02AB00000000".into(), "img_a.jpg".into(), 1);
        let hello = device.hello(1_000, 5);
        assert_eq!(hello.firmware, "sim-1.0");
        assert_eq!(hello.next_wake_unix_seconds, 1_005);
        assert_eq!(hello.wake_interval_seconds, 5);
        assert!(hello.pending_images.is_empty());
        assert!(hello.battery_percent <= 100 && hello.wifi_retries <= 3);
        device.capture(4, 8);
        assert_eq!(device.hello(2_000, 5).pending_images, vec!["img_a.jpg"]);
        assert_eq!(device.wakes(), 2);
        assert_eq!(device.sleep(2_001, 5).next_wake_unix_seconds, 2_006);
        device.review(ImageOnServer::Complete);
        assert!(device.hello(3_000, 5).pending_images.is_empty());
    }
}
