-- Serves `GET /points?near=…&radius=…`. Radius searches measure metres on the WGS 84 spheroid,
-- so they test `ST_DWithin(geom::geography, …)`; PostgreSQL only uses an index for that predicate
-- when one is built on the very same expression. The planar index on `geom` cannot stand in:
-- degrees are not metres, and a planar box around a point near the antimeridian or a pole misses
-- neighbours that the geography index, working on the sphere, finds.
CREATE INDEX points_geog_gist ON points USING gist ((geom::geography));
