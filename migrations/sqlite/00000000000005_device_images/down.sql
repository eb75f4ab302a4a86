DROP TABLE device_history;
DROP TABLE device_alerts;
DROP TABLE device_commands;
DROP TABLE device_image_chunks;
DROP TABLE device_images;
DROP TABLE device_wake_sessions;
DROP TABLE devices;
