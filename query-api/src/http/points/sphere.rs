//! A radius search read through the planar index: the bounds that make its answer exact.
//!
//! `near` lists points by their distance on PostGIS's sphere. The geography index orders by
//! that distance itself, but it is a poor tree once grown by live writes in arrival order:
//! on a million points, ten kilometres around Paris, its nearest-neighbour descent visits
//! about a hundred index pages and takes 0.5 ms before the first row. The planar index on
//! `geom`, grown the same way, finds the same hundred rows in 0.2 ms in all.
//!
//! Planar distance in degrees is not distance on the sphere, so the planar walk reads more
//! points than the page needs and orders them by the sphere's distance; a bound then says
//! whether a point the walk did not reach could still belong on the page:
//!
//! - [`PlanarWalk::around`] takes the box, in degrees, that holds the whole circle, and
//!   walks only inside it; a circle across the antimeridian or over a pole has no such box,
//!   and is searched through the geography index as before.
//! - Inside that box, a point at planar distance `p` from the centre lies at least
//!   [`PlanarWalk::sphere_distance_at_least`]`(p)` away on the sphere.
//! - The walk stops after [`PlanarWalk::rows_to_walk`] points in planar order. If it ran
//!   out of points, or if the page's last row is nearer than that bound at the walk's
//!   farthest point, no point left unread can come before it: the page is exact
//!   ([`PlanarWalk::settles`]). Otherwise query-api reads the page through the geography
//!   index, and has paid for both.
//!
//! Why the bound holds, for centre `(λ0, φ0)` and a point `(λ, φ)` in the box, angles in
//! radians: the haversine formula gives `sin²(σ/2) = sin²(Δφ/2) + cos φ0 cos φ sin²(Δλ/2)`
//! for the central angle `σ`. In the box `|Δφ| <= Φ`, `|Δλ| <= Λ` and `cos φ >= cos φmax`,
//! and `sin(x/2) >= (x/2) sin(X/2)/(X/2)` for `0 <= x <= X <= π`. So
//! `sin(σ/2) >= q p/2` with `q = min(s(Φ), sqrt(cos φ0 cos φmax) s(Λ))`, `s(X) =
//! sin(X/2)/(X/2)`: the distance is at least `2 R asin(q p/2)`.

use std::f64::consts::FRAC_PI_2;

/// A radius smaller than the sphere of PostGIS's geography (6,371,008.77 m, the WGS 84 mean
/// radius): the box is a little larger and the bound a little lower than exact, never the
/// other way round.
const SAFE_RADIUS_METRES: f64 = 6_370_000.0;

/// Added to every side of the box, in degrees (about a centimetre), so that a point on the
/// circle is in the box whatever the rounding.
const BOX_PAD_DEGREES: f64 = 1e-7;

/// How much the bound is lowered before it is trusted, against rounding in PostGIS's
/// distance and in this one.
const BOUND_SLACK: f64 = 1e-9;

/// Metres taken off the bound besides, for PostGIS's absolute error near the centre. It
/// converts each coordinate to radians on its own, which at a few micrometres moves a
/// distance by up to 1 % (about 2e-8 m), and it gives exactly 0 for points within about
/// 3e-12 degrees of the centre. Without this, a walk that had read only points at distance 0
/// could settle a page while unread points also at 0, with smaller ids, belonged on it. A
/// millimetre is far above either error and far below any distance a page is cut at.
const DISTANCE_SLACK_METRES: f64 = 1e-3;

/// Above this many planar points per point of the page, the walk costs more than the
/// geography index saves: within about 15 degrees of a pole the disc the walk must cover
/// holds four times the circle.
const MAX_SPREAD: f64 = 4.0;

/// How many more points the walk reads than it expects to need, for the unevenness of real
/// places around the centre; a walk that falls short costs a second read.
const WALK_MARGIN: f64 = 1.2;

/// How a radius search can walk the planar index; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlanarWalk {
    /// The circle's box, `[west, south, east, north]` in degrees, never across the
    /// antimeridian nor over a pole.
    pub(crate) envelope: [f64; 4],
    /// The circle's radius.
    pub(crate) radius_metres: f64,
    /// `q` of the module documentation.
    shrink: f64,
    /// How many points of the planar disc the walk must cover per point of the circle, for a
    /// uniform spread of points: the disc's area over the circle's, `cos φ0 / q²`.
    spread: f64,
}

impl PlanarWalk {
    /// The walk for a circle of `radius_metres` around (`longitude`, `latitude`), or `None`
    /// when the geography index must serve it: the circle crosses the antimeridian, reaches a
    /// pole, or lies so near one that the walk would read several times the page.
    pub(crate) fn around(longitude: f64, latitude: f64, radius_metres: f64) -> Option<Self> {
        let angle = radius_metres / SAFE_RADIUS_METRES;
        let centre = latitude.to_radians();
        let (south, north) = (centre - angle, centre + angle);
        let pad = BOX_PAD_DEGREES.to_radians();
        // No cap over or touching a pole: `|φ0| + angle` stays below π/2.
        if angle.is_nan() || angle <= 0.0 || centre.abs() + angle + pad >= FRAC_PI_2 {
            return None;
        }
        // The widest longitude of the cap; `asin`'s argument is below 1 as `|φ0| + angle < π/2`.
        let half_width = (angle.sin() / centre.cos()).min(1.0).asin();
        let envelope = [
            longitude - half_width.to_degrees() - BOX_PAD_DEGREES,
            (south.to_degrees() - BOX_PAD_DEGREES).max(-90.0),
            longitude + half_width.to_degrees() + BOX_PAD_DEGREES,
            (north.to_degrees() + BOX_PAD_DEGREES).min(90.0),
        ];
        if envelope[0] < -180.0 || envelope[2] > 180.0 {
            return None;
        }
        let farthest = envelope[1].abs().max(envelope[3].abs()).to_radians();
        let shrink = chord_ratio(angle + pad)
            .min((centre.cos() * farthest.cos()).sqrt() * chord_ratio(half_width + pad));
        let spread = centre.cos() / (shrink * shrink);
        (shrink > 0.0 && spread <= MAX_SPREAD).then_some(Self {
            envelope,
            radius_metres,
            shrink,
            spread,
        })
    }

    /// How many points to walk for a page of `rows`.
    pub(crate) fn rows_to_walk(&self, rows: i64) -> i64 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "rows is at most the largest limit plus one, and spread at most 4"
        )]
        let expected = (rows as f64 * self.spread * WALK_MARGIN).ceil() as i64;
        expected.max(rows) + 8
    }

    /// The least distance in metres on the sphere, as PostGIS computes it, of a point in the
    /// box that lies `planar_degrees` from the centre in the plane of longitude and latitude;
    /// negative when the bound says nothing.
    pub(crate) fn sphere_distance_at_least(&self, planar_degrees: f64) -> f64 {
        let half_chord = (self.shrink * planar_degrees.to_radians() / 2.0).min(1.0);
        2.0 * SAFE_RADIUS_METRES * half_chord.asin() * (1.0 - BOUND_SLACK) - DISTANCE_SLACK_METRES
    }

    /// Whether a walk that read `walked` of the `to_walk` points it was allowed, the farthest
    /// `reach` degrees away, found the page of a circle of `radius_metres` for certain, given
    /// the distance of the page's extra row (the one that tells whether another page
    /// follows), which a page without it lacks.
    ///
    /// It did if it ran out of points inside the box, or if no point beyond its reach can be
    /// as near as the extra row, or, without one, inside the circle at all.
    pub(crate) fn settles(
        &self,
        walked: i64,
        to_walk: i64,
        reach: f64,
        extra_distance: Option<f64>,
        radius_metres: f64,
    ) -> bool {
        if walked < to_walk {
            return true;
        }
        extra_distance.unwrap_or(radius_metres) < self.sphere_distance_at_least(reach)
    }
}

/// `sin(x/2) / (x/2)`: how much shorter than the arc `x` its chord is, for `x` in `[0, π]`.
fn chord_ratio(x: f64) -> f64 {
    if x <= f64::EPSILON {
        1.0
    } else {
        (x / 2.0).sin() / (x / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The great-circle distance PostGIS gives geography on its sphere, by the haversine.
    fn sphere_metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (la, pa) = (a.0.to_radians(), a.1.to_radians());
        let (lb, pb) = (b.0.to_radians(), b.1.to_radians());
        let h =
            ((pb - pa) / 2.0).sin().powi(2) + pa.cos() * pb.cos() * ((lb - la) / 2.0).sin().powi(2);
        2.0 * 6_371_008.771_4 * h.sqrt().min(1.0).asin()
    }

    /// The point `metres` from `from` on the sphere, towards `bearing` (radians from north).
    fn destination(from: (f64, f64), bearing: f64, metres: f64) -> (f64, f64) {
        let (lon, lat) = (from.0.to_radians(), from.1.to_radians());
        let angle = metres / 6_371_008.771_4;
        let to_lat = (lat.sin() * angle.cos() + lat.cos() * angle.sin() * bearing.cos()).asin();
        let to_lon = lon
            + (bearing.sin() * angle.sin() * lat.cos())
                .atan2(angle.cos() - lat.sin() * to_lat.sin());
        (to_lon.to_degrees(), to_lat.to_degrees())
    }

    fn planar(a: (f64, f64), b: (f64, f64)) -> f64 {
        (a.0 - b.0).hypot(a.1 - b.1)
    }

    #[test]
    fn circles_across_the_antimeridian_or_over_a_pole_keep_the_geography_index() {
        assert!(PlanarWalk::around(2.3522, 48.8566, 10_000.0).is_some());
        assert!(PlanarWalk::around(179.95, -16.5, 10_000.0).is_none());
        assert!(PlanarWalk::around(-179.95, -16.5, 10_000.0).is_none());
        assert!(PlanarWalk::around(0.0, 89.95, 10_000.0).is_none());
        assert!(PlanarWalk::around(0.0, -89.95, 10_000.0).is_none());
        // Tromsø walks; 80° north would read more than four times the page.
        assert!(PlanarWalk::around(18.95, 69.65, 10_000.0).is_some());
        assert!(PlanarWalk::around(18.0, 80.0, 10_000.0).is_none());
        assert!(PlanarWalk::around(0.0, 0.0, 2_000_000.0).is_some());
    }

    #[test]
    fn a_walk_reads_about_the_page_over_the_cosine_of_the_latitude() {
        let equator = PlanarWalk::around(0.0, 0.0, 10_000.0).unwrap();
        let paris = PlanarWalk::around(2.3522, 48.8566, 10_000.0).unwrap();
        assert_eq!(equator.rows_to_walk(101), 130);
        assert!((180..200).contains(&paris.rows_to_walk(101)), "{paris:?}");
    }

    #[test]
    fn a_walk_that_ran_out_or_passed_the_extra_row_settles_the_page() {
        let walk = PlanarWalk::around(2.3522, 48.8566, 10_000.0).unwrap();
        // 0.05 degrees of latitude are 5.6 km; at this latitude the bound is about 3.6 km.
        let bound = walk.sphere_distance_at_least(0.05);
        assert!((3_500.0..3_700.0).contains(&bound), "{bound}");
        assert!(walk.settles(50, 190, 0.05, Some(9_000.0), 10_000.0));
        assert!(walk.settles(190, 190, 0.05, Some(bound - 1.0), 10_000.0));
        assert!(!walk.settles(190, 190, 0.05, Some(bound), 10_000.0));
        // Points PostGIS puts at distance 0 may lie a little way off in the plane: a walk that
        // reached only those proves nothing.
        assert!(!walk.settles(190, 190, 1e-11, Some(0.0), 10_000.0));
        assert!(walk.sphere_distance_at_least(1e-11) < 0.0);
        // A short page is exact only if the walk went past the radius.
        assert!(!walk.settles(190, 190, 0.05, None, 10_000.0));
        assert!(walk.settles(190, 190, 0.05, None, bound - 1.0));
    }

    proptest! {
        /// Every point of the circle lies in the box, and every point of the box is at least
        /// the bound away from the centre: the two facts the walk's exactness rests on.
        #[test]
        fn the_box_holds_the_circle_and_the_bound_never_overshoots(
            longitude in -179.0_f64..179.0,
            latitude in -85.0_f64..85.0,
            radius in 1.0_f64..2_000_000.0,
            bearing in 0.0_f64..std::f64::consts::TAU,
            inside in 0.0_f64..=1.0,
            corner in (0.0_f64..=1.0, 0.0_f64..=1.0),
        ) {
            let Some(walk) = PlanarWalk::around(longitude, latitude, radius) else {
                return Ok(());
            };
            let [west, south, east, north] = walk.envelope;
            let centre = (longitude, latitude);
            let on_circle = destination(centre, bearing, radius * inside);
            prop_assert!(
                (west..=east).contains(&on_circle.0) && (south..=north).contains(&on_circle.1),
                "{on_circle:?} outside {:?}", walk.envelope
            );
            let in_box = (west + corner.0 * (east - west), south + corner.1 * (north - south));
            let bound = walk.sphere_distance_at_least(planar(centre, in_box));
            let actual = sphere_metres(centre, in_box);
            prop_assert!(bound <= actual, "bound {bound} above {actual} for {in_box:?}");
        }
    }
}
