//! The SQL behind a list of points (`GET /points`, the OGC items): one statement per page,
//! assembled from the filters, whose every predicate an index can serve.
//!
//! - No filter: `ORDER BY id DESC` walks the primary key; the cursor adds `id < $last`.
//! - `bbox`: `ST_Intersects` with the box, which PostGIS expands into `geom && box` plus the
//!   exact test, so a point on an edge or corner is inside (a box under a tenth of a
//!   millimetre both ways compares coordinates instead: [`THIN_BOX_DEGREES`]). How the page
//!   is found depends on the share of the points in the box ([`BoxScan`]), which the
//!   planner's statistics estimate before the page is read (`points_box_share`, one more
//!   round trip of about 0.1 ms):
//!   - under [`INDEXED_BOX_SHARE`]: a walk of `points_geom_newest`, a spatial index on the
//!     geometry and a key that follows the id, nearest-first to the largest key. It reads
//!     about a page's worth of entries however many points the box holds.
//!   - otherwise, or without statistics: the planner's choice between walking the primary key
//!     and skipping the points outside the box (cheap when most points are inside), and
//!     reading every point in the box from `points_geom_gist` and sorting them.
//!
//!   A box across the antimeridian is two boxes: joined by `OR` (a `BitmapOr` of two index
//!   scans) for the planner, or two walks whose pages are merged.
//! - `near`: a nearest-neighbour walk of the planar index `points_geom_gist` (`<->` on
//!   `geom`) inside the box that holds the circle, ordered again by the distance on the
//!   sphere, whose result is exact when a bound says so ([`PlanarWalk`]). A circle across the
//!   antimeridian, over or near a pole, or whose walk did not settle the page is searched
//!   through the expression index `points_geog_gist` (`<->` on `geom::geography`) bounded by
//!   `ST_DWithin`, which PostGIS expands into `&&` against the same index; see
//!   [`push_nearest`].
//! - `datetime`: a range on `updated_at`, which `points_updated_at` can serve; the planner
//!   weighs it against walking the primary key.
//!
//! Statements are sent unprepared (`persistent(false)`), so PostgreSQL plans each with the
//! actual box and radius. After five runs a prepared statement may switch to a generic plan,
//! which cannot tell a box around a town (best served by the spatial index) from one around a
//! continent (best served by walking the primary key and filtering).

use sqlx::postgres::PgRow;
use sqlx::{Connection as _, FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder, Row as _};
use uuid::Uuid;

use super::ListedPoint;
use super::cursor::Position;
use super::params::{BoundingBox, Filters, Near};
use super::sphere::PlanarWalk;
use crate::http::caching::{Checkpoint, READ_CHECKPOINT};

/// Up to `limit + 1` points after `after` (the extra one only tells whether a next page
/// exists), with the checkpoint they were read at.
///
/// One statement reads both, so both come from one snapshot without a transaction: the page
/// is the checkpoint's page, which the entity tag relies on. A `REPEATABLE READ` transaction
/// around two statements gave the same guarantee in four round trips (BEGIN, checkpoint,
/// page, COMMIT) holding a pooled connection throughout; this takes one. The checkpoint is
/// an aggregate, so the statement always yields a row: an empty page is that one row with
/// no point, which the `LEFT JOIN` keeps.
pub(crate) async fn select_page_at(
    connection: &mut PgConnection,
    filters: &Filters,
    after: Option<Position>,
    limit: u32,
) -> sqlx::Result<SelectedPage> {
    let walk = planar_walk(filters, after);
    if let Some(walk) = walk
        && let Some((checkpoint, points)) =
            walk_planar(&mut *connection, filters, walk, after, limit).await?
    {
        return Ok(SelectedPage {
            checkpoint,
            points,
            nearest: Some(NearestPath::Planar),
        });
    }
    let scan = box_scan(&mut *connection, filters).await?;
    let rows = match fetch_page(&mut *connection, filters, scan, after, limit).await {
        Err(error) if knn_out_of_order(&error) => {
            // PostGIS's geography index estimates a distance above the one `<->` then
            // computes when a point lies within about 1e-12 degrees of the centre (the
            // distance rounds to 0), and PostgreSQL refuses the nearest-neighbour scan. Without
            // index scans the page comes from a bitmap of the radius, sorted: slower, right.
            let mut transaction = connection.begin().await?;
            sqlx::query("SET LOCAL enable_indexscan = off")
                .execute(&mut *transaction)
                .await?;
            let rows = fetch_page(&mut transaction, filters, scan, after, limit).await?;
            transaction.commit().await?;
            rows
        }
        read => read?,
    };
    let (checkpoint, points) = checkpoint_and_points(rows);
    let nearest = filters.near.map(|_| {
        if walk.is_some() {
            NearestPath::PlanarThenSphere
        } else {
            NearestPath::Sphere
        }
    });
    Ok(SelectedPage {
        checkpoint,
        points,
        nearest,
    })
}

/// The page of [`select_page_at`] without a planar walk.
async fn fetch_page(
    connection: &mut PgConnection,
    filters: &Filters,
    scan: BoxScan,
    after: Option<Position>,
    limit: u32,
) -> sqlx::Result<Vec<PageRow>> {
    page_at_query_with("", filters, scan, None, after, limit)
        .build_query_as()
        .persistent(false)
        .fetch_all(connection)
        .await
}

/// Whether PostgreSQL stopped a nearest-neighbour index scan whose index gave a distance
/// above the one computed from the row (an internal error, which has no code of its own).
fn knn_out_of_order(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.message().contains("index returned tuples in wrong order"))
}

/// The page of a radius search read by `walk`, or `None` when the walk cannot prove it
/// exact ([`PlanarWalk::settles`]).
async fn walk_planar(
    connection: &mut PgConnection,
    filters: &Filters,
    walk: PlanarWalk,
    after: Option<Position>,
    limit: u32,
) -> sqlx::Result<Option<(Checkpoint, Vec<ListedPoint>)>> {
    let mut sql = page_at_query_with("", filters, BoxScan::Planned, Some(walk), after, limit);
    let rows: Vec<WalkRow> = sql
        .build_query_as()
        .persistent(false)
        .fetch_all(connection)
        .await?;
    // An empty walk's page is the single row of the checkpoint, with nulls.
    let walked = rows.first().and_then(|row| row.walked).unwrap_or(0);
    let reach = rows.first().and_then(|row| row.reach).unwrap_or(0.0);
    let (checkpoint, points) = checkpoint_and_points(rows.into_iter().map(|row| PageRow {
        point: row.page.point.filter(|_| row.inside),
        ..row.page
    }));
    let extra = points
        .get(usize::try_from(limit).unwrap_or(usize::MAX))
        .and_then(ListedPoint::distance);
    let to_walk = walk.rows_to_walk(i64::from(limit) + 1);
    Ok(walk
        .settles(walked, to_walk, reach, extra, walk.radius_metres)
        .then_some((checkpoint, points)))
}

/// A page as [`select_page_at`] read it: up to `limit + 1` points and the checkpoint they
/// were read at, and for a radius search, how they were found.
pub(crate) struct SelectedPage {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) points: Vec<ListedPoint>,
    pub(crate) nearest: Option<NearestPath>,
}

/// How a radius search's page was found, as `query_nearest_pages_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NearestPath {
    /// The planar walk settled the page.
    Planar,
    /// The planar walk did not settle it, and the geography index was read after it.
    PlanarThenSphere,
    /// No planar walk (a circle across the antimeridian or near a pole, or a page after the
    /// first): the geography index alone.
    Sphere,
}

impl NearestPath {
    pub(crate) const ALL: [Self; 3] = [Self::Planar, Self::PlanarThenSphere, Self::Sphere];

    /// Where `self` is in [`NearestPath::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Planar => 0,
            Self::PlanarThenSphere => 1,
            Self::Sphere => 2,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Planar => "planar",
            Self::PlanarThenSphere => "planar_then_sphere",
            Self::Sphere => "sphere",
        }
    }
}

/// The checkpoint of a page's rows (all carry it; an empty page is one row without a point)
/// and their points.
fn checkpoint_and_points(
    rows: impl IntoIterator<Item = PageRow>,
) -> (Checkpoint, Vec<ListedPoint>) {
    let mut rows = rows.into_iter().peekable();
    let checkpoint = rows
        .peek()
        .map_or(Checkpoint { seq: 0, at: None }, |row| row.checkpoint);
    (checkpoint, rows.filter_map(|row| row.point).collect())
}

/// The planar walk for the radius search of `filters`, if it has one: only a first page has.
///
/// A later page's walk would read the points of the earlier pages again, as the geography
/// index's walk does, but about `1 / cos φ` times as many of them, since the plane's disc
/// around the earlier pages holds that many more points than their circle; and skipping them
/// does not count towards the points it is allowed, so it would need to know how many there
/// were, which the cursor does not carry. With a first page's allowance, a third of the later
/// pages of the e2e suite's searches fell back to the geography index after the walk, paying
/// for both. Past a few pages the geography index's walk is the cheaper one anyway.
fn planar_walk(filters: &Filters, after: Option<Position>) -> Option<PlanarWalk> {
    if after.is_some() {
        return None;
    }
    let near = filters.near.as_ref()?;
    PlanarWalk::around(
        near.longitude.degrees(),
        near.latitude.degrees(),
        near.radius_metres,
    )
}

/// Boxes holding less than this share of the points are read through `points_geom_newest`.
///
/// Measured on a million points in arrival order (the database's own time, warm):
///
/// | box | share | planner's choice | `points_geom_newest` |
/// |---|---|---|---|
/// | Paris, 18 x 11 km | 0.02 % | 0.75 ms | 1.1 ms |
/// | 1 degree around Paris | 0.13 % | 6.5 ms (3,500 points sorted) | 1.8 ms |
/// | 5 x 5 degrees, France | 2.5 % | 1.3 ms (primary key) | 2.2 ms |
/// | Europe | 39 % | 0.2 ms (primary key) | 3.4 ms |
///
/// The walk of the index costs 1 to 3 ms whatever the box; the primary key walk costs about
/// 1/share rows, and sorting the box's points about share x rows. 1 % is near where the
/// primary key walk becomes the cheaper one at any table size.
pub const INDEXED_BOX_SHARE: f64 = 0.01;

/// How a page of a box is found; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxScan {
    /// One statement ordered by id, planned by PostgreSQL: no box, a box with a large share of
    /// the points, a box with a `datetime` or `near` filter, or no statistics yet.
    Planned,
    /// A nearest-first walk of `points_geom_newest` inside the box.
    Newest,
}

/// Which [`BoxScan`] reads the page of `filters`: asks the planner's statistics for the box's
/// share of the points when that can matter.
///
/// A `datetime` filter keeps the planned statement, which can use the `updated_at` index when
/// the interval is the narrower filter; the walk would skip every point outside it.
pub(crate) async fn box_scan(
    executor: impl PgExecutor<'_>,
    filters: &Filters,
) -> sqlx::Result<BoxScan> {
    let (Some(bbox), None, None) = (&filters.bbox, &filters.near, &filters.updated) else {
        return Ok(BoxScan::Planned);
    };
    let mut sql = QueryBuilder::new("SELECT ");
    for (i, part) in box_parts(bbox).iter().enumerate() {
        if i > 0 {
            sql.push(" + ");
        }
        sql.push("points_box_share(");
        push_envelope(&mut sql, *part);
        sql.push(")");
    }
    let share: Option<f64> = sql.build_query_scalar().fetch_one(executor).await?;
    Ok(match share {
        Some(share) if share < INDEXED_BOX_SHARE => BoxScan::Newest,
        _ => BoxScan::Planned,
    })
}

/// The first statement of [`select_page_at`], after `head` (empty, or an `EXPLAIN`): for a
/// radius search, its planar walk when it has one.
pub(crate) fn page_at_query(
    head: &str,
    filters: &Filters,
    scan: BoxScan,
    after: Option<Position>,
    limit: u32,
) -> QueryBuilder<'static, Postgres> {
    page_at_query_with(
        head,
        filters,
        scan,
        planar_walk(filters, after),
        after,
        limit,
    )
}

/// The page's statement joined to the checkpoint; a radius search walks `walk` when given,
/// else the geography index.
fn page_at_query_with(
    head: &str,
    filters: &Filters,
    scan: BoxScan,
    walk: Option<PlanarWalk>,
    after: Option<Position>,
    limit: u32,
) -> QueryBuilder<'static, Postgres> {
    let head = format!(
        "{head}SELECT checkpoint.seq AS checkpoint_seq, checkpoint.at AS checkpoint_at, \
         page.* FROM ({READ_CHECKPOINT}) AS checkpoint LEFT JOIN LATERAL ("
    );
    let mut sql = page_query(&head, filters, scan, walk, after, limit);
    // The page's own order does not survive the join by any guarantee, so it is said again.
    sql.push(if filters.near.is_some() {
        ") AS page ON TRUE ORDER BY page.distance, page.id"
    } else {
        ") AS page ON TRUE ORDER BY page.id DESC"
    });
    sql
}

/// The columns of a listed point, less its distance, which each statement adds its own way.
const LISTED_COLUMNS: &str =
    "SELECT id, name, ST_X(geom) AS longitude, ST_Y(geom) AS latitude, updated_at, ";

/// A row of [`select_page_at`]: the checkpoint, and a point unless the page is empty.
struct PageRow {
    checkpoint: Checkpoint,
    point: Option<ListedPoint>,
}

impl<'r> FromRow<'r, PgRow> for PageRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let checkpoint = Checkpoint {
            seq: row.try_get("checkpoint_seq")?,
            at: row.try_get("checkpoint_at")?,
        };
        let point = match row.try_get::<Option<Uuid>, _>("id")? {
            Some(_) => Some(ListedPoint::from_row(row)?),
            None => None,
        };
        Ok(Self { checkpoint, point })
    }
}

/// A row of a planar walk's page: a [`PageRow`], with how many points the walk read, how far
/// from the centre it reached in the plane (null on an empty walk), and whether the point is
/// inside the radius.
struct WalkRow {
    page: PageRow,
    walked: Option<i64>,
    reach: Option<f64>,
    inside: bool,
}

impl<'r> FromRow<'r, PgRow> for WalkRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            page: PageRow::from_row(row)?,
            walked: row.try_get("walked")?,
            reach: row.try_get("reach")?,
            inside: row.try_get::<Option<bool>, _>("inside")?.unwrap_or(false),
        })
    }
}

pub(crate) fn page_query(
    head: &str,
    filters: &Filters,
    scan: BoxScan,
    walk: Option<PlanarWalk>,
    after: Option<Position>,
    limit: u32,
) -> QueryBuilder<'static, Postgres> {
    let mut sql = QueryBuilder::new(head);
    if let Some(near) = &filters.near {
        match walk {
            Some(walk) => push_planar_walk(&mut sql, filters, near, walk, after, limit),
            None => push_nearest(&mut sql, filters, near, after, limit),
        }
        return sql;
    }
    // The walk knows no `datetime`; `box_scan` never chooses it for one.
    if let (BoxScan::Newest, Some(bbox), None) = (scan, &filters.bbox, &filters.updated) {
        push_newest_in_box(&mut sql, bbox, after, limit);
        return sql;
    }
    sql.push(LISTED_COLUMNS)
        .push("NULL::float8 AS distance FROM points WHERE TRUE");
    push_box_and_time(&mut sql, filters);
    push_below_cursor(&mut sql, after, false);
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    sql
}

/// Nearest first, as two steps. The inner query walks `points_geog_gist` in distance order
/// (`<->` on geography, a k-nearest-neighbour index scan) and stops after the page plus every
/// point tied with its last distance (`WITH TIES`); the outer one orders that handful by
/// distance, then id. The index cannot order by `(distance, id)` itself, and without the ties
/// the cut could fall between two points at the same distance and the cursor would skip one.
/// A page thus reads about as many index entries as it returns, however many points lie in
/// the radius, except that the points of earlier pages are read again and skipped: page `k`
/// of a walk costs about `k` pages' worth.
fn push_nearest(
    sql: &mut QueryBuilder<'static, Postgres>,
    filters: &Filters,
    near: &Near,
    after: Option<Position>,
    limit: u32,
) {
    let rows = i64::from(limit) + 1;
    sql.push(LISTED_COLUMNS)
        .push("distance FROM (SELECT id, name, geom, updated_at, ");
    push_distance(sql, near);
    sql.push(" AS distance FROM points WHERE TRUE");
    push_box_and_time(sql, filters);
    push_radius(sql, near, true);
    push_after_nearest(sql, near, after);
    sql.push(" ORDER BY ");
    push_distance(sql, near);
    sql.push(" FETCH FIRST (")
        .push_bind(rows)
        .push(") ROWS WITH TIES) AS nearest ORDER BY distance, id LIMIT ")
        .push_bind(rows);
}

/// Nearest first through the planar index ([`PlanarWalk`]): the inner query walks
/// `points_geom_gist` inside the circle's box in planar distance order (`<->` on `geom`) for
/// [`PlanarWalk::rows_to_walk`] points; the outer one orders them by the distance on the
/// sphere, then id, those inside the radius first, keeps a page's worth, and says how many
/// points the walk read (`walked`) and how far it reached (`reach`, in degrees), from which
/// [`PlanarWalk::settles`] tells whether the page is exact. Rows outside the radius
/// (`inside` false) are there only so that a walk that found none inside still says how far
/// it went; [`select_page_at`] drops them.
///
/// The radius is tested outside the walk, on the distance the walk computed: with
/// `ST_DWithin` inside, the planner multiplied its selectivity with the box's, expected a
/// single row, and read every point of the box through a bitmap to sort them, which at a
/// million points took 2 ms instead of 0.5; and `ST_DWithin` on each walked point cost
/// another 0.2 ms.
fn push_planar_walk(
    sql: &mut QueryBuilder<'static, Postgres>,
    filters: &Filters,
    near: &Near,
    walk: PlanarWalk,
    after: Option<Position>,
    limit: u32,
) {
    let rows = i64::from(limit) + 1;
    sql.push(LISTED_COLUMNS).push(
        "distance, walked, reach, inside FROM (SELECT *, count(*) OVER () AS walked, \
         max(planar) OVER () AS reach, distance <= ",
    );
    sql.push_bind(near.radius_metres)
        .push(" AS inside FROM (SELECT id, name, geom, updated_at, ");
    push_distance(sql, near);
    sql.push(" AS distance, geom <-> ");
    push_planar_centre(sql, near);
    let [west, south, east, north] = walk.envelope;
    sql.push(" AS planar FROM points WHERE geom && ST_MakeEnvelope(")
        .push_bind(west)
        .push(", ")
        .push_bind(south)
        .push(", ")
        .push_bind(east)
        .push(", ")
        .push_bind(north)
        .push(", 4326)");
    push_box_and_time(sql, filters);
    push_after_nearest(sql, near, after);
    sql.push(" ORDER BY geom <-> ");
    push_planar_centre(sql, near);
    sql.push(" LIMIT ")
        .push_bind(walk.rows_to_walk(rows))
        .push(") AS walk) AS walked ORDER BY NOT inside, distance, id LIMIT ")
        .push_bind(rows);
}

/// The radius: points whose distance on the sphere, as `<->` computes it, is at most the
/// radius, so that a listed distance never exceeds it. `ST_DWithin`, a little wider, is there
/// for the index: PostGIS turns it into `&&` against `points_geog_gist`. Its own distance
/// takes another path that can differ from `<->`'s in the last bits, which would make a point
/// on the very edge of the circle listed or not depending on how the page was read.
fn push_radius(sql: &mut QueryBuilder<'static, Postgres>, near: &Near, index: bool) {
    if index {
        sql.push(" AND ST_DWithin(geom::geography, ");
        push_centre(sql, near);
        sql.push(", ")
            .push_bind(near.radius_metres * (1.0 + 1e-9) + 1e-3)
            .push(", false)");
    }
    sql.push(" AND ");
    push_distance(sql, near);
    sql.push(" <= ").push_bind(near.radius_metres);
}

/// The condition of a nearest-first page after `after`.
fn push_after_nearest(
    sql: &mut QueryBuilder<'static, Postgres>,
    near: &Near,
    after: Option<Position>,
) {
    match after {
        None => {}
        Some(Position::Nearest {
            last_distance,
            last_id,
        }) => {
            // The distance is computed again rather than compared within a tolerance: the
            // same function over the same doubles gives the same bits, so the row that ended
            // the previous page is excluded exactly and nothing after it is lost.
            sql.push(" AND (");
            push_distance(sql, near);
            sql.push(", id) > (")
                .push_bind(last_distance)
                .push("::float8, ")
                .push_bind(last_id)
                .push(")");
        }
        Some(Position::Newest { .. }) => {
            sql.push(" AND FALSE");
        }
    }
}

/// Newest first inside the box, by walking `points_geom_newest` nearest-first to the largest
/// key: the inner query stops after the page plus every point tied with its last key (`WITH
/// TIES`, as keys are 63 bits of a 128-bit id), and the outer one puts that handful in id
/// order. A box across the antimeridian is walked as its two halves, each for a whole page;
/// their union holds the page. The cursor's `id < last` also bounds the key, which the index
/// can use, so a page starts where the last one ended without reading the points before it.
fn push_newest_in_box(
    sql: &mut QueryBuilder<'static, Postgres>,
    bbox: &BoundingBox,
    after: Option<Position>,
    limit: u32,
) {
    let rows = i64::from(limit) + 1;
    sql.push(LISTED_COLUMNS)
        .push("NULL::float8 AS distance FROM (");
    for (i, part) in box_parts(bbox).iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push("(SELECT id, name, geom, updated_at FROM points WHERE ");
        push_envelope_test(sql, *part);
        push_below_cursor(sql, after, true);
        // 9223372036854775807 is the largest bigint; keys are at most half of 2^64, so the
        // distance never overflows.
        sql.push(" ORDER BY point_list_key(id) <-> 9223372036854775807 FETCH FIRST (")
            .push_bind(rows)
            .push(") ROWS WITH TIES)");
    }
    sql.push(") AS newest ORDER BY id DESC LIMIT ")
        .push_bind(rows);
}

/// The condition of a newest-first page after `after`: ids below the cursor's, and with
/// `key` the same bound on `point_list_key`, which `points_geom_newest` can use. A cursor of
/// a nearest-first walk matches nothing (`list_params` only lets a cursor through when its
/// order is the filters' order).
fn push_below_cursor(
    sql: &mut QueryBuilder<'static, Postgres>,
    after: Option<Position>,
    key: bool,
) {
    match after {
        None => {}
        Some(Position::Newest { last_id }) => {
            sql.push(" AND id < ").push_bind(last_id);
            if key {
                sql.push(" AND point_list_key(id) <= point_list_key(")
                    .push_bind(last_id)
                    .push(")");
            }
        }
        Some(Position::Nearest { .. }) => {
            sql.push(" AND FALSE");
        }
    }
}

/// The box as `[west, south, east, north]` boxes that do not cross the antimeridian: itself,
/// or its halves on either side.
fn box_parts(bbox: &BoundingBox) -> Vec<[f64; 4]> {
    let (west, south) = (bbox.west.degrees(), bbox.south.degrees());
    let (east, north) = (bbox.east.degrees(), bbox.north.degrees());
    if bbox.crosses_antimeridian() {
        vec![[west, south, 180.0, north], [-180.0, south, east, north]]
    } else {
        vec![[west, south, east, north]]
    }
}

fn push_box_and_time(sql: &mut QueryBuilder<'static, Postgres>, filters: &Filters) {
    if let Some(bbox) = &filters.bbox {
        sql.push(" AND ");
        push_bbox(sql, bbox);
    }
    if let Some(updated) = &filters.updated {
        if let Some(start) = updated.start_micros() {
            sql.push(" AND updated_at >= ").push_bind(start);
        }
        if let Some(end) = updated.end_micros() {
            sql.push(" AND updated_at <= ").push_bind(end);
        }
    }
}

/// The distance in metres on the sphere PostGIS uses for geography (the WGS 84 mean radius,
/// 6,371,008.8 m), as `<->` computes it: the operator the nearest-neighbour index scan orders
/// by, so the order, the cursor and the listed distance are one and the same number.
fn push_distance(sql: &mut QueryBuilder<'static, Postgres>, near: &Near) {
    sql.push("geom::geography <-> ");
    push_centre(sql, near);
}

/// The centre as a planar geometry, which `points_geom_gist` orders by.
fn push_planar_centre(sql: &mut QueryBuilder<'static, Postgres>, near: &Near) {
    sql.push("ST_SetSRID(ST_MakePoint(")
        .push_bind(near.longitude.degrees())
        .push(", ")
        .push_bind(near.latitude.degrees())
        .push("), 4326)");
}

fn push_centre(sql: &mut QueryBuilder<'static, Postgres>, near: &Near) {
    push_planar_centre(sql, near);
    sql.push("::geography");
}

fn push_bbox(sql: &mut QueryBuilder<'static, Postgres>, bbox: &BoundingBox) {
    sql.push("(");
    for (i, part) in box_parts(bbox).iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        push_envelope_test(sql, *part);
    }
    sql.push(")");
}

/// Below this width and height in degrees (about 0.1 mm), a box is tested by its coordinates.
///
/// PostGIS 3.3's `ST_Intersects` fails boxes thinner than about 1e-12 degrees in both
/// directions: it answers the first row right and, once it has prepared the box for the
/// rows that follow, calls the points inside it outside (1 of 9 such points listed). A box
/// thin in one direction only (a line along a parallel or a meridian) is answered right. The
/// comparisons are exact at any size, but their selectivity, unknown to the planner, would
/// multiply the box's estimate and could steer a continent's box to a sort of every point
/// in it; so they serve only boxes this small, which hold next to nothing anyway.
const THIN_BOX_DEGREES: f64 = 1e-9;

/// Whether a point lies in the box `[west, south, east, north]`, edges included:
/// `ST_Intersects`, or `&&` and the coordinates for a box under [`THIN_BOX_DEGREES`] both ways.
fn push_envelope_test(sql: &mut QueryBuilder<'static, Postgres>, part: [f64; 4]) {
    let [west, south, east, north] = part;
    if east - west < THIN_BOX_DEGREES && north - south < THIN_BOX_DEGREES {
        sql.push("(geom && ");
        push_envelope(sql, part);
        sql.push(" AND ST_X(geom) BETWEEN ")
            .push_bind(west)
            .push(" AND ")
            .push_bind(east)
            .push(" AND ST_Y(geom) BETWEEN ")
            .push_bind(south)
            .push(" AND ")
            .push_bind(north)
            .push(")");
        return;
    }
    sql.push("ST_Intersects(geom, ");
    push_envelope(sql, part);
    sql.push(")");
}

/// The box `[west, south, east, north]` as a geometry: the envelope of its diagonal rather
/// than `ST_MakeEnvelope`, because a box of zero width or height must become a line or a
/// point: a collapsed polygon intersects nothing, not even its own corner.
fn push_envelope(sql: &mut QueryBuilder<'static, Postgres>, [west, south, east, north]: [f64; 4]) {
    sql.push("ST_SetSRID(ST_Envelope(ST_MakeLine(ST_MakePoint(")
        .push_bind(west)
        .push(", ")
        .push_bind(south)
        .push("), ST_MakePoint(")
        .push_bind(east)
        .push(", ")
        .push_bind(north)
        .push("))), 4326)");
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::datetime::UpdatedWithin;
    use super::super::params::tests::{bbox, near};
    use super::*;

    fn sql(filters: &Filters, after: Option<Position>) -> String {
        page_query("", filters, BoxScan::Planned, None, after, 10).into_sql()
    }

    #[test]
    fn without_filters_the_newest_come_first_through_the_primary_key() {
        let text = sql(&Filters::default(), None);
        assert!(
            text.ends_with("FROM points WHERE TRUE ORDER BY id DESC LIMIT $1"),
            "{text}"
        );
        let text = sql(
            &Filters::default(),
            Some(Position::Newest {
                last_id: Uuid::nil(),
            }),
        );
        assert!(
            text.contains("WHERE TRUE AND id < $1 ORDER BY id DESC LIMIT $2"),
            "{text}"
        );
    }

    #[test]
    fn a_box_across_the_antimeridian_becomes_two_boxes() {
        let plain = Filters {
            bbox: Some(bbox(-10.0, 35.0, 30.0, 60.0)),
            near: None,
            updated: None,
        };
        assert_eq!(sql(&plain, None).matches("ST_Intersects").count(), 1);
        let crossing = Filters {
            bbox: Some(bbox(170.0, -20.0, -170.0, -10.0)),
            near: None,
            updated: None,
        };
        let text = sql(&crossing, None);
        assert_eq!(text.matches("ST_Intersects").count(), 2, "{text}");
        assert!(text.contains(" OR "), "{text}");
    }

    #[test]
    fn a_box_thinner_than_a_tenth_of_a_millimetre_compares_coordinates() {
        let thin = |width: f64, height: f64| Filters {
            bbox: Some(bbox(2.35, 48.1, 2.35 + width, 48.1 + height)),
            near: None,
            updated: None,
        };
        for (width, height) in [(1e-13, 1e-13), (0.0, 1e-10), (0.0, 0.0)] {
            let text = sql(&thin(width, height), None);
            assert!(!text.contains("ST_Intersects"), "{text}");
            assert!(text.contains("(geom && ST_SetSRID(ST_Envelope("), "{text}");
            assert!(text.contains("ST_X(geom) BETWEEN $"), "{text}");
            assert!(text.contains("ST_Y(geom) BETWEEN $"), "{text}");
        }
        for (width, height) in [(1e-6, 1e-6), (0.0, 1.0), (1.0, 0.0)] {
            let text = sql(&thin(width, height), None);
            assert!(text.contains("ST_Intersects(geom, "), "{text}");
            assert!(!text.contains("BETWEEN"), "{text}");
        }
    }

    fn box_only(west: f64, south: f64, east: f64, north: f64) -> Filters {
        Filters {
            bbox: Some(bbox(west, south, east, north)),
            near: None,
            updated: None,
        }
    }

    #[test]
    fn a_small_box_walks_the_spatial_key_index_from_the_largest_key() {
        let filters = box_only(15.53, 47.61, 17.17, 48.59);
        let text = page_query("", &filters, BoxScan::Newest, None, None, 10).into_sql();
        assert_eq!(
            text.matches("ORDER BY point_list_key(id) <-> 9223372036854775807")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("ROWS WITH TIES)) AS newest ORDER BY id DESC"),
            "{text}"
        );
        // The key is what the index orders by; the planned statement has none of it.
        let planned = page_query("", &filters, BoxScan::Planned, None, None, 10).into_sql();
        assert!(!planned.contains("point_list_key"), "{planned}");
    }

    #[test]
    fn a_walk_resumes_below_the_cursor_in_both_id_and_key() {
        let text = page_query(
            "",
            &box_only(15.53, 47.61, 17.17, 48.59),
            BoxScan::Newest,
            None,
            Some(Position::Newest {
                last_id: Uuid::nil(),
            }),
            10,
        )
        .into_sql();
        assert!(
            text.contains("AND id < $5 AND point_list_key(id) <= point_list_key($6)"),
            "{text}"
        );
    }

    #[test]
    fn a_walk_across_the_antimeridian_walks_each_half_for_a_whole_page() {
        let text = page_query(
            "",
            &box_only(170.0, -20.0, -170.0, -10.0),
            BoxScan::Newest,
            None,
            None,
            10,
        )
        .into_sql();
        assert_eq!(text.matches(" UNION ALL ").count(), 1, "{text}");
        assert_eq!(text.matches("ROWS WITH TIES)").count(), 2, "{text}");
        assert!(!text.contains(" OR "), "{text}");
    }

    #[test]
    fn only_a_box_alone_may_walk_the_spatial_key_index() {
        let near = Filters {
            near: Some(near(2.3522, 48.8566, 50_000.0)),
            ..box_only(1.0, 48.0, 3.0, 49.0)
        };
        let text = page_query("", &near, BoxScan::Newest, None, None, 10).into_sql();
        assert!(!text.contains("point_list_key"), "{text}");
        let newest =
            page_query("", &Filters::default(), BoxScan::Newest, None, None, 10).into_sql();
        assert!(!newest.contains("point_list_key"), "{newest}");
    }

    fn near_only(longitude: f64, latitude: f64, radius_metres: f64) -> Filters {
        Filters {
            near: Some(near(longitude, latitude, radius_metres)),
            ..Filters::default()
        }
    }

    #[test]
    fn each_nearest_path_knows_its_place_among_all() {
        for (i, path) in NearestPath::ALL.into_iter().enumerate() {
            assert_eq!(path.index(), i, "{path:?}");
        }
    }

    #[test]
    fn a_radius_search_walks_the_planar_index_inside_the_circles_box() {
        let paris = near_only(2.3522, 48.8566, 10_000.0);
        let walk = planar_walk(&paris, None).expect("Paris has a planar walk");
        let text = page_query("", &paris, BoxScan::Planned, Some(walk), None, 10).into_sql();
        assert!(text.contains("WHERE geom && ST_MakeEnvelope($"), "{text}");
        assert!(text.contains(" ORDER BY geom <-> ST_SetSRID("), "{text}");
        assert!(
            text.contains(") AS walk) AS walked ORDER BY NOT inside, distance, id LIMIT $"),
            "{text}"
        );
        // Inside the walk it would lead the planner to read the whole box (see the function).
        assert!(!text.contains("ST_DWithin"), "{text}");
        // The page statement query-api runs first is the walk; the geography index is the
        // fallback, and the only way for a circle across the antimeridian.
        let first = page_at_query("", &paris, BoxScan::Planned, None, 10).into_sql();
        assert!(first.contains("AS walked"), "{first}");
        let later = Position::Nearest {
            last_distance: 12.5,
            last_id: Uuid::nil(),
        };
        assert_eq!(
            planar_walk(&paris, Some(later)),
            None,
            "only a first page walks"
        );
        let fiji = near_only(179.9, -18.0, 200_000.0);
        assert_eq!(planar_walk(&fiji, None), None);
        let text = page_at_query("", &fiji, BoxScan::Planned, None, 10).into_sql();
        assert!(text.contains("ORDER BY geom::geography <-> "), "{text}");
        assert!(!text.contains("AS walked"), "{text}");
    }

    #[test]
    fn both_radius_statements_resume_after_the_cursors_distance_and_id() {
        let paris = near_only(2.3522, 48.8566, 10_000.0);
        let after = Some(Position::Nearest {
            last_distance: 1_234.5,
            last_id: Uuid::nil(),
        });
        for walk in [planar_walk(&paris, None), None] {
            let text = page_query("", &paris, BoxScan::Planned, walk, after, 10).into_sql();
            assert!(
                text.contains(", id) > ($") && text.contains("::float8, $"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_datetime_filter_bounds_updated_at_on_the_ends_it_has() {
        let closed = Filters {
            updated: Some(
                UpdatedWithin::parse("2026-01-01T00:00:00Z/2026-02-01T00:00:00Z").unwrap(),
            ),
            ..Filters::default()
        };
        let text = sql(&closed, None);
        assert!(
            text.contains("AND updated_at >= $1 AND updated_at <= $2 ORDER BY id DESC"),
            "{text}"
        );
        let open_start = Filters {
            updated: Some(UpdatedWithin::parse("../2026-02-01T00:00:00Z").unwrap()),
            ..Filters::default()
        };
        let text = sql(&open_start, None);
        assert!(!text.contains(">="), "{text}");
        assert!(text.contains("AND updated_at <= $1"), "{text}");
    }

    #[test]
    fn a_radius_search_orders_by_distance_then_id_and_resumes_after_both() {
        let filters = Filters {
            bbox: None,
            near: Some(near(2.3522, 48.8566, 50_000.0)),
            updated: None,
        };
        let text = sql(
            &filters,
            Some(Position::Nearest {
                last_distance: 12.5,
                last_id: Uuid::nil(),
            }),
        );
        // `ST_DWithin` for the index, `<->` for who is in: the listed distance.
        assert!(text.contains("ST_DWithin(geom::geography, "), "{text}");
        assert!(text.contains("::geography <= $8 AND ("), "{text}");
        assert!(text.contains(", id) > ("), "{text}");
        assert!(text.contains("ROWS WITH TIES) AS nearest"), "{text}");
        assert!(text.ends_with(" ORDER BY distance, id LIMIT $16"), "{text}");
    }
}
