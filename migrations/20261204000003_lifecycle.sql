-- Points can now be renamed, moved and deleted, and creations carry properties.

-- Free-form attributes from PointCreated v2; v1 events project to an empty object, so both
-- versions give the same row shape.
ALTER TABLE points ADD COLUMN properties jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Deleted points leave the points table (readers need no filter), but their id stays here
-- so that a re-published or replayed PointCreated cannot bring a deleted point back.
CREATE TABLE point_tombstones (
    id          uuid PRIMARY KEY,
    -- The version the point had once deleted.
    version     bigint NOT NULL,
    deleted_at  timestamptz NOT NULL
);
