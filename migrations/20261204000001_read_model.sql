-- The read model of points, kept by the projector from the event stream. Everything in this
-- database can be dropped and rebuilt by replaying the stream; nothing here is a source of truth.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE points (
    -- The point's aggregate id (UUIDv7), assigned by command-api. Being time-ordered, it also
    -- gives "newest first" and keyset paging through the primary key alone.
    id          uuid PRIMARY KEY,
    -- VARCHAR counts characters, matching the 100-character rule command-api enforces.
    name        varchar(100) NOT NULL,
    -- WGS 84 longitude/latitude; float8 coordinates keep every written value bit for bit.
    geom        geometry(Point, 4326) NOT NULL,
    -- The point's aggregate version: 1 after creation, +1 per later event. The projector only
    -- applies an event whose version is newer, which makes a redelivered event a no-op.
    version     bigint NOT NULL CHECK (version >= 1),
    -- Stream sequence of the last event applied to this row.
    last_seq    bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Serves every spatial filter (bbox with &&, radius with ST_DWithin, nearest with <->).
CREATE INDEX points_geom_gist ON points USING gist (geom);

-- Serves the temporal extent and datetime filters on the last update.
CREATE INDEX points_updated_at ON points (updated_at);

-- How far each projection has got in the stream. It is written in the same transaction as the
-- rows an event produced, so the rows and the position can never disagree after a crash.
CREATE TABLE projection_checkpoint (
    projection  text PRIMARY KEY,
    last_seq    bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
