DROP INDEX device_commands_by_image;
ALTER TABLE device_commands DROP COLUMN image_id;
