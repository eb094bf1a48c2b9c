//! Pages kept in memory for the checkpoint they were read at, so that the same page asked for
//! again before the projection moves is answered without PostgreSQL.
//!
//! A page is a pure function of the request and the checkpoint (the entity tag already
//! relies on it), so an entry is keyed by both: when the projector commits, the announced
//! checkpoint moves on and every older entry simply stops being asked for. Readers who miss
//! the same key at the same time share one database read. The many readers of a popular page
//! (the newest points, a city's box) then cost one statement per projector commit rather than
//! one each: at 2,000 writes a second the projector commits a few dozen times a second, while
//! the readers of the first page may ask thousands of times.
//!
//! # Staleness
//!
//! The checkpoint used for the key is the one query-api has heard announced (see
//! `http::consistency`), which trails the database by the notification's delay, a
//! millisecond or so. Pages are served from memory only while announcements are being heard;
//! with the listening connection down every read goes to the database. Whatever else goes
//! wrong (an announcement lost on a connection that died silently, rows changed without the
//! checkpoint moving, as a `projector rebuild` onto the same checkpoint does), no entry is
//! served longer than its time to live after it was read: one second unless configured
//! otherwise (`GEOLEDGER_PAGE_CACHE_TTL_MS`; 0 turns the cache off).
//!
//! # Cost
//!
//! Memory: at most [`MAX_CACHED_POINTS`] points across all entries, about 110 bytes each as
//! read (22 MB at the cap), plus the bodies rendered from them, which the weight leaves out:
//! about 85 bytes a point for the array and 150 for GeoJSON, and a quarter of that again
//! compressed. Were every page asked for in all three representations, compressed and not,
//! that would be about 480 bytes a point (96 MB at the cap); the chart's 256 MiB limit holds
//! both. A read whose page is not in memory takes the same single statement as without the
//! cache, plus a hash of its canonical URL.
//!
//! A body is rendered and compressed by the first reader who needs it, on its worker
//! thread; readers of the same body meanwhile wait for it (a fraction of a millisecond for
//! a page of 100 points) rather than render it again.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;

use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use super::select::NearestPath;
use super::{Format, ListParams, Page, current_cursor, list_href, read_page};
use crate::http::caching::Checkpoint;
use crate::http::consistency;

/// Most points held across all entries; an entry weighs its number of points plus one.
pub(crate) const MAX_CACHED_POINTS: u64 = 200_000;

/// A page as read, shared by every reader of its entry.
pub(crate) type ReadPage = Arc<PageRead>;

/// A page, the checkpoint the database was at when it was read, and the bodies of
/// `GET /points` once rendered from it.
#[derive(Debug)]
pub(crate) struct PageRead {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) page: Page,
    /// Rendered on first use by each representation ([`Rendition`]) and coding: a popular
    /// page is then serialised once per checkpoint rather than once per reader (about a sixth
    /// of query-api's CPU in the 80/20 list mix), and compressed once rather than once per
    /// client that accepts gzip (which took first-page reads from 13,000 to 4,500 a second).
    /// Indexed by `Rendition as usize`, then plain and gzip.
    bodies: [[OnceLock<Bytes>; 2]; 3],
}

/// How a body travels: as rendered, or gzip-compressed for a client that accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
}

/// The representations of one page that differ in their bytes. The array has no links; the
/// `FeatureCollection`'s `next` link repeats `f` when the request gave it, so the two ways of
/// asking for GeoJSON render apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rendition {
    Array,
    GeoJsonNegotiated,
    GeoJsonNamed,
}

impl Rendition {
    /// The rendition of a page answered in `format`, which the request named in `f` or not.
    pub(crate) fn of(format: Format, named: Option<Format>) -> Self {
        match (format, named) {
            (Format::Json, _) => Self::Array,
            (Format::GeoJson, None) => Self::GeoJsonNegotiated,
            (Format::GeoJson, Some(_)) => Self::GeoJsonNamed,
        }
    }
}

impl PageRead {
    pub(crate) fn new(checkpoint: Checkpoint, page: Page) -> Self {
        Self {
            checkpoint,
            page,
            bodies: Default::default(),
        }
    }

    /// The body of `rendition` in `coding`, rendered by `render` (and compressed) the first
    /// time it is asked for.
    pub(crate) fn body(
        &self,
        rendition: Rendition,
        coding: Coding,
        render: impl FnOnce(&Page) -> Bytes,
    ) -> Bytes {
        let [plain, gzipped] = &self.bodies[rendition as usize];
        let plain = plain.get_or_init(|| render(&self.page));
        match coding {
            Coding::Identity => plain.clone(),
            Coding::Gzip => gzipped.get_or_init(|| gzip(plain)).clone(),
        }
    }
}

/// `body` compressed at zlib's default level: done once per page and checkpoint, so the
/// smaller body is worth the slower level.
fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write as _;

    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    encoder.write_all(body).expect("gzip into memory");
    Bytes::from(encoder.finish().expect("gzip into memory"))
}

/// The pages recently read, by announced checkpoint and canonical request.
#[derive(Debug, Clone)]
pub(crate) struct PageCache {
    /// `None` when the cache is off.
    pages: Option<Cache<(u64, String), ReadPage>>,
    /// Pages answered from memory: the `source="memory"` series of `query_page_reads_total`.
    from_memory: Counter,
    /// Pages read from the database, or whose read failed: `source="database"`.
    from_database: Counter,
    /// Radius searches' pages read from the database, by how they were found
    /// (`query_nearest_pages_total`), one series per [`NearestPath::ALL`] in its order.
    nearest: [Counter; NearestPath::ALL.len()],
}

impl PageCache {
    /// An empty cache whose entries live `time_to_live` (off when zero), its counter
    /// registered as `query_page_reads_total` in `registry`.
    pub(crate) fn new(registry: &mut Registry, time_to_live: Duration) -> Self {
        let reads = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register(
            "query_page_reads",
            "Pages of GET /points and the OGC items answered, by source: memory (read at the \
             announced checkpoint within the cache's time to live) or database",
            reads.clone(),
        );
        let series = |source| reads.get_or_create(&vec![("source", source)]).clone();
        let nearest = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register(
            "query_nearest_pages",
            "Pages of radius searches read from the database, by how they were found: planar \
             (the planar index settled the page), planar_then_sphere (it did not, and the \
             geography index was read too) or sphere (the geography index alone: a page \
             after the first, or a circle across the antimeridian or near a pole)",
            nearest.clone(),
        );
        let nearest = NearestPath::ALL
            .map(|path| nearest.get_or_create(&vec![("path", path.label())]).clone());
        Self {
            nearest,
            from_memory: series("memory"),
            from_database: series("database"),
            pages: (!time_to_live.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(MAX_CACHED_POINTS)
                    .weigher(|_, page: &ReadPage| {
                        u32::try_from(page.page.points.len())
                            .unwrap_or(u32::MAX)
                            .saturating_add(1)
                    })
                    .time_to_live(time_to_live)
                    .build()
            }),
        }
    }

    /// Whether [`PageCache::read`] would answer from memory now: the cache is on and the
    /// announcements are being heard.
    pub(crate) fn serving(&self, announced: &consistency::Checkpoint) -> bool {
        self.pages.is_some() && announced.current().is_some()
    }

    /// The page `params` asks for, from memory when it was read at the checkpoint announced
    /// now, else from the database.
    pub(crate) async fn read(
        &self,
        announced: &consistency::Checkpoint,
        pool: &PgPool,
        params: &ListParams,
    ) -> Result<ReadPage, Arc<sqlx::Error>> {
        let load = async {
            let (checkpoint, page, nearest) = read_page(pool, params).await?;
            if let Some(path) = nearest {
                self.nearest[path.index()].inc();
            }
            Ok(Arc::new(PageRead::new(checkpoint, page)))
        };
        let (read, from_memory) = match (&self.pages, announced.current()) {
            (None, _) | (_, None) => (load.await.map_err(Arc::new), false),
            (Some(pages), Some(checkpoint)) => {
                // Every filter, the limit and the position, in canonical form; the format is
                // left out, as both formats render the same page.
                let request = list_href("", params, None, current_cursor(params).as_ref());
                // Fresh when this reader's load ran; readers who waited on another's load, or
                // found the page in memory, get a page already there. A failed read counts
                // as the database's, whichever reader made it.
                match pages
                    .entry((checkpoint, request))
                    .or_try_insert_with(load)
                    .await
                {
                    Ok(entry) => {
                        let fresh = entry.is_fresh();
                        (Ok(entry.into_value()), !fresh)
                    }
                    Err(error) => (Err(error), false),
                }
            }
        };
        if from_memory {
            self.from_memory.inc();
        } else {
            self.from_database.inc();
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn each_rendition_is_rendered_once_and_kept_apart() {
        let read = PageRead::new(
            Checkpoint { seq: 7, at: None },
            Page {
                points: Vec::new(),
                next: None,
            },
        );
        let renders = Cell::new(0);
        let render = |text: &'static str| {
            let renders = &renders;
            move |_: &Page| {
                renders.set(renders.get() + 1);
                Bytes::from_static(text.as_bytes())
            }
        };
        let plain = Coding::Identity;
        assert_eq!(read.body(Rendition::Array, plain, render("[]")), "[]");
        assert_eq!(
            read.body(Rendition::GeoJsonNamed, plain, render("named")),
            "named"
        );
        assert_eq!(read.body(Rendition::Array, plain, render("again")), "[]");
        assert_eq!(
            read.body(Rendition::GeoJsonNegotiated, plain, render("neg")),
            "neg"
        );
        assert_eq!(
            read.body(Rendition::GeoJsonNamed, plain, render("again")),
            "named"
        );
        assert_eq!(renders.get(), 3);

        // The compressed body is the rendered one, compressed, rendered no second time.
        let gzipped = read.body(Rendition::GeoJsonNamed, Coding::Gzip, render("again"));
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&gzipped[..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, "named");
        let again = read.body(Rendition::GeoJsonNamed, Coding::Gzip, render("again"));
        assert_eq!(
            again.as_ptr(),
            gzipped.as_ptr(),
            "compressed once, then shared"
        );
        let other = read.body(Rendition::GeoJsonNegotiated, Coding::Gzip, render("again"));
        assert_ne!(other, gzipped);
        assert_eq!(renders.get(), 3);
    }
}
