-- Serves a page of a box that holds many points but a small share of the table (a 1-degree
-- map window, say). A box page lists newest first, by id. Without an index for it PostgreSQL
-- has two ways to do it, and both cost more as the table grows: read every point in the box
-- and sort them (6 to 25 ms in the database for the 3,500 points of a 1-degree box around
-- Paris in a million), or walk the primary key and skip the points outside the box (cheap only
-- when the box holds a large share of the table). A GiST index on the geometry and a number
-- that follows the id can be walked nearest-first to the largest such number: newest first,
-- inside the box, stopping after the page (0.6 ms for the same box). query-api chooses that
-- walk for boxes that points_box_share says hold under 1% of the points; see query-api's
-- `points::select`. The index itself is built by the next migration, outside a transaction.

-- btree_gist gives the plain bigint its GiST operator class and its `<->` distance.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The id's first 64 bits (for a UUIDv7, its millisecond time and the first random bits), read
-- as an unsigned number and halved, so that it fits a bigint without turning negative: `<->`
-- from the largest bigint then never overflows. It follows the id's order (two ids that differ
-- in their first 63 bits compare the same way as their keys); ids with equal keys are put in
-- order by the id itself (query-api reads ties with `WITH TIES`).
CREATE FUNCTION point_list_key(id uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (('x' || translate(left(id::text, 18), '-', ''))::bit(64) >> 1)::bigint;

-- The share of the points in `box`, from the planner's statistics of points.geom: the same
-- estimate PostgreSQL makes for `geom && box`, with no scan. NULL when there are no statistics
-- yet (a table never analysed) or the estimate fails for any other reason: the estimate only
-- chooses how to read a page, so it must never fail the read.
CREATE FUNCTION points_box_share(box geometry) RETURNS float8
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN _postgis_selectivity('points'::regclass, 'geom', box);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
