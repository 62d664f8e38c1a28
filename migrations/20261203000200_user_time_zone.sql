-- The time zone a user plans in (IANA name, e.g. Asia/Shanghai): the studio's schedule and the
-- lesson form use it. NULL: the browser's own zone.
ALTER TABLE users ADD COLUMN time_zone text CHECK (length(time_zone) BETWEEN 1 AND 64);
