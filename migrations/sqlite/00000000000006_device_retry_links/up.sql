-- A retry_image command names the image it retries, so a newer retry replaces an older pending
-- one, and a failed image whose retry went unused (expired, or sent but answered with nothing)
-- is retried again at its device's next wake instead of staying failed with retries left.
ALTER TABLE device_commands ADD COLUMN image_id BIGINT REFERENCES device_images (id) ON DELETE CASCADE;
CREATE INDEX device_commands_by_image ON device_commands (image_id);
