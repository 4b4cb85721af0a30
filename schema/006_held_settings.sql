-- 006: room settings kept as they were set by hand.
--
-- The spec's levels that the original service never set (invite, and the
-- space's state_default) are raised only from Synapse's preset value. A room
-- where someone had set another value keeps it; each pass records those
-- here (replacing the rows when they differ), so that `status` shows what
-- the spec would have set instead.
CREATE TABLE held_settings (
    room    TEXT NOT NULL,  -- the room's key (space, admin, general, ...)
    setting TEXT NOT NULL,  -- e.g. "m.room.power_levels invite"
    have    TEXT NOT NULL,  -- the room's value, as JSON
    want    TEXT NOT NULL,  -- the spec's value, as JSON
    PRIMARY KEY (room, setting)
);
