//! The extent of the `points` collection: the exact box around every point and the first and
//! last `updated_at`, read in a few milliseconds whatever the table's size, and kept for a
//! while so that GIS clients opening the layer over and over cost nothing more.
//!
//! The box comes from four nearest-neighbour searches on `points_geom_gist`: the point nearest
//! to a line just west of -180 has the least longitude, and likewise for the other three
//! sides. Each is a descent of the index to one leaf, unlike `ST_Extent`, which reads every
//! row (180 ms on GeoNames' 235,000 places, and linear in the table), and unlike
//! `ST_EstimatedExtent`, which is cheap but comes from `ANALYZE`'s sample: on a table larger
//! than the sample it can miss the outermost points, and it is rounded to single precision.
//! The time span comes from `min` and `max` over `points_updated_at`, one index probe each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Mutex;

/// How long an extent is served before it is read again, in seconds. Points added meanwhile
/// may lie outside the advertised box for that long; clients use the box to zoom to the
/// layer, not to filter, so slightly stale is harmless.
pub(crate) const EXTENT_MAX_AGE: Duration = Duration::from_secs(30);

/// The box's sides are the nearest points to lines just outside the valid range. Eight
/// candidates per side rather than one: distances to a line are computed in floating point,
/// so points whose coordinates differ in the last bits may tie or swap, and the exact
/// minimum or maximum of the few nearest is taken instead. PostGIS 2.2 or later orders `<->`
/// by the true distance through the index (KNN recheck).
const READ_EXTENT: &str = "SELECT \
     (SELECT min(x) FROM (SELECT ST_X(geom) AS x FROM points ORDER BY geom <-> \
       'SRID=4326;LINESTRING(-181 -91, -181 91)'::geometry LIMIT 8) w) AS west, \
     (SELECT min(y) FROM (SELECT ST_Y(geom) AS y FROM points ORDER BY geom <-> \
       'SRID=4326;LINESTRING(-181 -91, 181 -91)'::geometry LIMIT 8) s) AS south, \
     (SELECT max(x) FROM (SELECT ST_X(geom) AS x FROM points ORDER BY geom <-> \
       'SRID=4326;LINESTRING(181 -91, 181 91)'::geometry LIMIT 8) e) AS east, \
     (SELECT max(y) FROM (SELECT ST_Y(geom) AS y FROM points ORDER BY geom <-> \
       'SRID=4326;LINESTRING(-181 91, 181 91)'::geometry LIMIT 8) n) AS north, \
     (SELECT min(updated_at) FROM points) AS first_update, \
     (SELECT max(updated_at) FROM points) AS last_update";

/// What the collection advertises; both parts are `None` while the table is empty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataExtent {
    /// `[west, south, east, north]` in CRS84.
    pub(crate) bbox: Option<[f64; 4]>,
    /// First and last `updated_at`.
    pub(crate) updated: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

#[derive(sqlx::FromRow)]
struct Row {
    west: Option<f64>,
    south: Option<f64>,
    east: Option<f64>,
    north: Option<f64>,
    first_update: Option<DateTime<Utc>>,
    last_update: Option<DateTime<Utc>>,
}

/// The extent last read, shared by the requests of one instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExtentCache {
    last: Arc<Mutex<Option<(Instant, DataExtent)>>>,
}

impl ExtentCache {
    /// The extent, read again when the one held is older than [`EXTENT_MAX_AGE`]. Concurrent
    /// callers wait for the one read in progress rather than each starting their own.
    pub(crate) async fn get(&self, pool: &PgPool) -> sqlx::Result<DataExtent> {
        let mut last = self.last.lock().await;
        if let Some((read_at, extent)) = *last
            && read_at.elapsed() < EXTENT_MAX_AGE
        {
            return Ok(extent);
        }
        let row: Row = sqlx::query_as(READ_EXTENT).fetch_one(pool).await?;
        let extent = DataExtent {
            bbox: match (row.west, row.south, row.east, row.north) {
                (Some(west), Some(south), Some(east), Some(north)) => {
                    Some([west, south, east, north])
                }
                _ => None,
            },
            updated: row.first_update.zip(row.last_update),
        };
        *last = Some((Instant::now(), extent));
        Ok(extent)
    }
}
