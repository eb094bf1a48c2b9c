-- no-transaction
-- The index of box pages (see the previous migration). Built CONCURRENTLY so that upgrading a
-- read model that already holds many points does not stop the projector: a plain CREATE
-- INDEX would block its writes for the whole build (7 s at a million points, built row by
-- row). CONCURRENTLY cannot run in a transaction, so this file holds this one statement. If
-- the build fails (the server restarts, say), PostgreSQL leaves an invalid index of this
-- name behind and the migration stays unapplied; drop it (DROP INDEX CONCURRENTLY
-- points_geom_newest) and start the projector or run `projector migrate` again.
CREATE INDEX CONCURRENTLY points_geom_newest ON points USING gist (geom, point_list_key(id));
