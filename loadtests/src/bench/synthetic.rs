//! The points the read benchmark loads: real places, visited in a scrambled but fixed order and
//! cycled through as often as the size asks, each copy moved by a small seeded jitter, with
//! ids that grow like UUIDv7 ids written one millisecond apart.

use std::fmt::Write as _;

use anyhow::bail;
use chrono::DateTime;
use geo::{Distance as _, Haversine, Point};
use uuid::Uuid;

use crate::places::Place;

/// Largest move of each coordinate, in degrees (about 1 km of latitude): a copy stays in the
/// town it came from, so the density of a city grows with the size as it would with real
/// traffic, yet no two copies of a place share a position.
pub const JITTER_DEGREES: f64 = 0.01;

/// Creation time of the first point, 2026-01-01T00:00:00Z in Unix milliseconds. Point `i` is
/// created `i` ms later, so a million points span under 17 minutes and never leave the day.
const FIRST_MILLIS: u64 = 1_767_225_600_000;

/// Where the stride through the places starts looking. About 0.43 of `places.csv`'s length and
/// prime: consecutive points land far apart, as writes from many clients do. A walk in file
/// order would instead load GeoNames country by country, so the first thousand points would
/// all lie in Andorra, the Emirates and Afghanistan, and the table's physical order would
/// follow geography, flattering every box query.
const STRIDE_START: usize = 100_003;

/// One generated row of `points`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticPoint<'a> {
    /// UUIDv7 layout: the creation millisecond, then seeded random bits.
    pub id: Uuid,
    /// The name of the place it copies.
    pub name: &'a str,
    /// Degrees, within [-180, 180].
    pub longitude: f64,
    /// Degrees, within [-90, 90].
    pub latitude: f64,
    /// Creation time, Unix milliseconds; also the id's timestamp.
    pub created_millis: u64,
    /// Stand-in for the stream sequence of the event that created it.
    pub sequence: u64,
}

/// Turns an index into a point, the same for the same places and seed on every run.
#[derive(Debug)]
pub struct Generator<'a> {
    places: &'a [Place],
    stride: usize,
    seed: u64,
}

impl<'a> Generator<'a> {
    /// A generator over `places`.
    ///
    /// # Errors
    /// When there are no places to copy.
    pub fn new(places: &'a [Place], seed: u64) -> anyhow::Result<Self> {
        if places.is_empty() {
            bail!("the places file holds no place to generate points from");
        }
        Ok(Self {
            places,
            stride: coprime_stride(places.len()),
            seed,
        })
    }

    /// Point number `index` (0 is the oldest).
    #[must_use]
    pub fn point(&self, index: u64) -> SyntheticPoint<'a> {
        let len = self.places.len() as u64;
        // A stride coprime with the length visits every place once per cycle.
        let at = (index % len) * self.stride as u64 % len;
        let place = &self.places[usize::try_from(at).expect("below the places' length")];
        let mut random = SplitMix64::new(self.seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
        let longitude =
            (place.longitude + random.symmetric() * JITTER_DEGREES).clamp(-180.0, 180.0);
        let latitude = (place.latitude + random.symmetric() * JITTER_DEGREES).clamp(-90.0, 90.0);
        let created_millis = FIRST_MILLIS + index;
        let mut tail = [0_u8; 10];
        tail[..8].copy_from_slice(&random.next().to_be_bytes());
        tail[8..].copy_from_slice(&random.next().to_be_bytes()[..2]);
        SyntheticPoint {
            id: uuid::Builder::from_unix_timestamp_millis(created_millis, &tail).into_uuid(),
            name: &place.name,
            longitude,
            latitude,
            created_millis,
            sequence: index + 1,
        }
    }
}

impl Generator<'_> {
    /// The indexes, in increasing order, of the `count` points nearest to `centre`
    /// (longitude, latitude) among points `0..among`: a small table whose every point lies
    /// around one city, drawn from the same points as the large table.
    #[must_use]
    pub fn nearest(&self, centre: (f64, f64), count: usize, among: u64) -> Vec<u64> {
        use std::collections::BinaryHeap;
        // A max-heap of (distance, index) keeps the `count` nearest seen so far. A distance is
        // never negative, and the bits of non-negative doubles order as the numbers do.
        let mut nearest: BinaryHeap<(u64, u64)> = BinaryHeap::with_capacity(count + 1);
        for index in 0..among {
            let point = self.point(index);
            // The sphere of PostGIS's geography `<->`, the mean radius 6,371,008.8 m.
            let metres = Haversine
                .distance(
                    Point::new(centre.0, centre.1),
                    Point::new(point.longitude, point.latitude),
                )
                .to_bits();
            if nearest.len() < count {
                nearest.push((metres, index));
            } else if nearest.peek().is_some_and(|(worst, _)| metres < *worst) {
                nearest.pop();
                nearest.push((metres, index));
            }
        }
        let mut indexes: Vec<u64> = nearest.into_iter().map(|(_, index)| index).collect();
        indexes.sort_unstable();
        indexes
    }
}

/// The smallest step from [`STRIDE_START`] (reduced modulo `len`) that shares no factor with
/// `len`.
fn coprime_stride(len: usize) -> usize {
    let mut stride = STRIDE_START % len;
    while gcd(stride, len) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The `SplitMix64` generator: tiny, seedable and good enough to scatter coordinates. A crate
/// would add a dependency for ten lines.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), from the top 32 bits.
    fn symmetric(&mut self) -> f64 {
        let bits = u32::try_from(self.next() >> 32).expect("a u64 shifted by 32 fits in 32 bits");
        f64::from(bits) / f64::from(u32::MAX / 2 + 1) - 1.0
    }
}

/// Appends `point` as one line of `COPY points (id, name, geom, version, last_seq,
/// created_at, updated_at)` in text format.
pub fn push_copy_line(out: &mut String, point: &SyntheticPoint<'_>) {
    let created = DateTime::from_timestamp_millis(
        i64::try_from(point.created_millis).expect("the benchmark's dates lie in 2026"),
    )
    .expect("the benchmark's dates lie in 2026");
    let created = created.format("%Y-%m-%d %H:%M:%S%.3f+00");
    write!(out, "{}\t", point.id).expect("a String takes any text");
    push_copy_text(out, point.name);
    out.push('\t');
    push_hex_ewkb(out, point.longitude, point.latitude);
    writeln!(out, "\t1\t{}\t{created}\t{created}", point.sequence)
        .expect("a String takes any text");
}

/// COPY's text format gives backslash, tab and line ends a meaning, so they travel escaped.
fn push_copy_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A point in SRID 4326 as hex EWKB, which the geometry type reads directly and which keeps
/// both doubles bit for bit: byte order 1 (little-endian), type 1 (Point) with the SRID flag
/// 0x20000000, the SRID, then x and y.
fn push_hex_ewkb(out: &mut String, longitude: f64, latitude: f64) {
    let mut bytes = Vec::with_capacity(25);
    bytes.push(1);
    bytes.extend_from_slice(&0x2000_0001_u32.to_le_bytes());
    bytes.extend_from_slice(&4326_u32.to_le_bytes());
    bytes.extend_from_slice(&longitude.to_le_bytes());
    bytes.extend_from_slice(&latitude.to_le_bytes());
    for byte in bytes {
        write!(out, "{byte:02X}").expect("a String takes any text");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn places(count: usize) -> Vec<Place> {
        (0..count)
            .map(|i| Place {
                name: format!("place {i}"),
                longitude: 179.999,
                latitude: -89.999,
                country: "ZZ".to_owned(),
            })
            .collect()
    }

    #[test]
    fn the_nearest_points_are_the_nearest_and_come_in_index_order() {
        let spread: Vec<Place> = (0..50)
            .map(|i| Place {
                name: format!("place {i}"),
                longitude: f64::from(i) * 3.0 - 75.0,
                latitude: f64::from(i % 7) * 10.0 - 30.0,
                country: "ZZ".to_owned(),
            })
            .collect();
        let generator = Generator::new(&spread, 3).unwrap();
        let centre = (2.3522, 48.8566);
        let metres = |index: u64| {
            let point = generator.point(index);
            Haversine.distance(
                Point::new(centre.0, centre.1),
                Point::new(point.longitude, point.latitude),
            )
        };
        let chosen = generator.nearest(centre, 10, 200);
        assert_eq!(chosen.len(), 10);
        assert!(chosen.windows(2).all(|pair| pair[0] < pair[1]));
        let farthest_chosen = chosen.iter().map(|&i| metres(i)).fold(0.0, f64::max);
        for index in (0..200).filter(|i| !chosen.contains(i)) {
            assert!(metres(index) >= farthest_chosen, "point {index} is nearer");
        }
    }

    #[test]
    fn ids_grow_with_the_index_so_the_newest_point_has_the_greatest_id() {
        let places = places(7);
        let generator = Generator::new(&places, 1).unwrap();
        let ids: Vec<Uuid> = (0..5_000).map(|i| generator.point(i).id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }

    #[test]
    fn every_place_is_used_once_per_cycle_whatever_the_length() {
        for len in [1, 2, 4, 9, 10, 100_003, 234_908] {
            let places = places(len);
            let generator = Generator::new(&places, 1).unwrap();
            let len = len as u64;
            let names: HashSet<&str> = (0..len).map(|i| generator.point(i).name).collect();
            assert_eq!(names.len() as u64, len, "{len} places");
        }
    }

    #[test]
    fn the_jitter_is_small_seeded_and_keeps_coordinates_valid() {
        let places = places(3);
        let generator = Generator::new(&places, 42).unwrap();
        let again = Generator::new(&places, 42).unwrap();
        let other = Generator::new(&places, 43).unwrap();
        for i in 0..1_000 {
            let point = generator.point(i);
            assert_eq!(point, again.point(i));
            assert_ne!(point.id, other.point(i).id);
            assert!((179.989..=180.0).contains(&point.longitude), "{point:?}");
            assert!((-90.0..=-89.989).contains(&point.latitude), "{point:?}");
        }
    }

    #[test]
    fn a_copy_line_escapes_the_name_and_holds_the_ewkb_postgis_prints() {
        let point = SyntheticPoint {
            id: Uuid::nil(),
            name: "a\tb\\c",
            longitude: 1.0,
            latitude: 2.0,
            created_millis: FIRST_MILLIS + 1,
            sequence: 2,
        };
        let mut line = String::new();
        push_copy_line(&mut line, &point);
        // `SELECT ST_AsEWKB('SRID=4326;POINT(1 2)'::geometry)` in hex.
        let ewkb = "0101000020E6100000000000000000F03F0000000000000040";
        assert_eq!(
            line,
            format!(
                "00000000-0000-0000-0000-000000000000\ta\\tb\\\\c\t{ewkb}\t1\t2\t\
                 2026-01-01 00:00:00.001+00\t2026-01-01 00:00:00.001+00\n"
            )
        );
    }

    #[test]
    fn no_places_is_an_error() {
        assert!(Generator::new(&[], 1).is_err());
    }
}
