//! The query string of a list of points (`GET /points` and the OGC items), checked into
//! typed values. Every bad parameter is reported at once, each under its own name.

use geoledger_common::point::{FieldError, Latitude, Longitude};

use super::Limits;
use super::cursor::{Cursor, Position};
use super::datetime::UpdatedWithin;
use crate::MAX_RADIUS_METRES;

/// The parameters `GET /points` knows; any other is refused.
pub(crate) const POINTS_PARAMS: &[&str] = &["bbox", "near", "radius", "limit", "f", "cursor"];

/// A `bbox`, corners in CRS84 order. `west > east` means the box crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BoundingBox {
    pub(crate) west: Longitude,
    pub(crate) south: Latitude,
    pub(crate) east: Longitude,
    pub(crate) north: Latitude,
}

impl BoundingBox {
    pub(crate) fn crosses_antimeridian(&self) -> bool {
        self.west > self.east
    }
}

/// A `near` centre with its `radius`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Near {
    pub(crate) longitude: Longitude,
    pub(crate) latitude: Latitude,
    /// Above 0 and at most [`MAX_RADIUS_METRES`].
    pub(crate) radius_metres: f64,
}

/// Which points a request asks for. A cursor belongs to one value of this.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Filters {
    pub(crate) bbox: Option<BoundingBox>,
    pub(crate) near: Option<Near>,
    /// `datetime`, on `updated_at`; only the OGC items take it.
    pub(crate) updated: Option<UpdatedWithin>,
}

/// The order of a page, which follows from the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// `id DESC`: UUIDv7 ids grow with creation time.
    Newest,
    /// Distance from the `near` centre, then id.
    Nearest,
}

impl Filters {
    pub(crate) fn order(&self) -> Order {
        if self.near.is_some() {
            Order::Nearest
        } else {
            Order::Newest
        }
    }

    /// A digest of the exact bits of every filter value. It only has to tell a client's
    /// honest mistake (a cursor pasted onto another query) from a match.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut input = Vec::with_capacity(3 + 7 * 8 + 26);
        if let Some(b) = self.bbox {
            input.push(b'b');
            for value in [
                b.west.degrees(),
                b.south.degrees(),
                b.east.degrees(),
                b.north.degrees(),
            ] {
                input.extend_from_slice(&value.to_bits().to_be_bytes());
            }
        }
        if let Some(n) = self.near {
            input.push(b'n');
            for value in [n.longitude.degrees(), n.latitude.degrees(), n.radius_metres] {
                input.extend_from_slice(&value.to_bits().to_be_bytes());
            }
        }
        if let Some(updated) = self.updated {
            input.push(b't');
            input.extend_from_slice(&updated.fingerprint_bytes());
        }
        fnv1a(&input)
    }
}

/// The 64-bit FNV-1a digest of `input`. Cursors and entity tags must come out the same on
/// every instance and release, which rules out std's `Hasher`s.
pub(crate) fn fnv1a(input: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    input.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The representation asked for with `f`; without `f`, the `Accept` header decides. On
/// `GET /points`, `json` is the plain array; on the OGC items, both are GeoJSON and `json`
/// only labels it `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The JSON array existing clients read.
    Json,
    /// A GeoJSON `FeatureCollection`.
    GeoJson,
}

impl Format {
    /// The value of `f` that asks for this format.
    pub(crate) fn as_param(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::GeoJson => "geojson",
        }
    }
}

/// Parameters of a list of points, checked.
#[derive(Debug, PartialEq)]
pub(crate) struct ListParams {
    pub(crate) limit: u32,
    pub(crate) filters: Filters,
    /// `f`, if given.
    pub(crate) format: Option<Format>,
    /// Where the previous page ended, from `cursor`.
    pub(crate) after: Option<Position>,
}

/// Checks the query of a list that takes the parameters in `known` (a subset of `bbox`,
/// `near`, `radius`, `datetime`, `limit`, `f`, `cursor`); any other is refused.
pub(crate) fn list_params(
    pairs: &[(String, String)],
    known: &[&str],
    limits: Limits,
) -> Result<ListParams, Vec<FieldError>> {
    let mut query = Checked {
        pairs,
        known,
        errors: reject_unknown(pairs, known).err().unwrap_or_default(),
    };
    let limit = query
        .single("limit", |raw| parse_limit(raw, limits))
        .unwrap_or(limits.default);
    let bbox = query.single("bbox", parse_bbox);
    let centre = query.single("near", parse_near);
    let radius = query.single("radius", parse_radius);
    let format = query.single("f", parse_format);
    let updated = query.single("datetime", UpdatedWithin::parse);
    match (query.given("near"), query.given("radius")) {
        (true, false) => query.refuse("radius", "is required with near"),
        (false, true) => query.refuse("radius", "is only allowed together with near"),
        _ => {}
    }
    let filters = Filters {
        bbox,
        near: centre
            .zip(radius)
            .map(|((longitude, latitude), radius_metres)| Near {
                longitude,
                latitude,
                radius_metres,
            }),
        updated,
    };
    // A cursor is read even when other parameters are wrong, so that a garbled one is
    // reported with them; whether it fits the filters is only known once they are valid.
    let filters_valid = query.errors.is_empty();
    let after = query
        .single("cursor", |raw| {
            let cursor = Cursor::decode(raw)?;
            filters_valid
                .then(|| cursor.position_for(&filters))
                .transpose()
        })
        .flatten();
    if query.errors.is_empty() {
        Ok(ListParams {
            limit,
            filters,
            format,
            after,
        })
    } else {
        Err(query.errors)
    }
}

/// The query pairs, the names this list takes, and the errors found so far.
struct Checked<'a> {
    pairs: &'a [(String, String)],
    known: &'a [&'a str],
    errors: Vec<FieldError>,
}

impl Checked<'_> {
    /// Whether a parameter this list takes was given; one it does not take is already
    /// refused as unknown and counts as absent.
    fn given(&self, name: &str) -> bool {
        self.known.contains(&name) && self.pairs.iter().any(|(key, _)| key == name)
    }

    fn refuse(&mut self, name: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: name.to_owned(),
            reason: reason.into(),
        });
    }

    /// The one value of `name`, parsed; `None` when it is absent, not taken here, or was
    /// refused.
    fn single<T, R: Into<String>>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, R>,
    ) -> Option<T> {
        if !self.known.contains(&name) {
            return None;
        }
        let mut values = self.pairs.iter().filter(|(key, _)| key == name);
        let (_, raw) = values.next()?;
        if values.next().is_some() {
            self.refuse(name, "must be given at most once");
            return None;
        }
        parse(raw).map_err(|reason| self.refuse(name, reason)).ok()
    }
}

/// Reads a `limit`: ASCII digits only (no sign, space or fraction), at least 1; anything above
/// the maximum, however large, becomes the maximum.
fn parse_limit(raw: &str, limits: Limits) -> Result<u32, &'static str> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a positive integer");
    }
    // Only digits are left, so parsing fails only on overflow: a request for more than any
    // maximum.
    let requested = raw.parse::<u64>().unwrap_or(u64::MAX);
    if requested == 0 {
        return Err("must be a positive integer");
    }
    Ok(u32::try_from(requested).map_or(limits.max, |n| n.min(limits.max)))
}

/// `N` comma-separated numbers, or `None` if there are more, fewer or any is not a number.
/// Non-finite values (`inf`, `NaN`, `1e999`) are read here and refused by the coordinate types.
fn numbers<const N: usize>(raw: &str) -> Option<[f64; N]> {
    let mut values = [0.0; N];
    let mut parts = raw.split(',');
    for value in &mut values {
        *value = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(values)
}

/// Reads `minLon,minLat,maxLon,maxLat`. A box may cross the antimeridian (`minLon >
/// maxLon`), but not a pole, so `minLat > maxLat` is refused. Six numbers are a box with
/// heights, which CRS84 (two axes, and the only CRS served) cannot have; they are refused
/// with a message that says so, as OGC API Features Part 1 makes the number of values
/// follow the axes of the CRS.
fn parse_bbox(raw: &str) -> Result<BoundingBox, String> {
    if numbers::<6>(raw).is_some() {
        return Err(
            "has six numbers, a box with heights; points here have none, so give \
                    four: minLon,minLat,maxLon,maxLat"
                .to_owned(),
        );
    }
    let [west, south, east, north] =
        numbers(raw).ok_or("must be four comma-separated numbers: minLon,minLat,maxLon,maxLat")?;
    let longitude = |name: &str, value| {
        Longitude::try_from(value).map_err(|e| format!("has a {name} that {e}"))
    };
    let latitude =
        |name: &str, value| Latitude::try_from(value).map_err(|e| format!("has a {name} that {e}"));
    let bbox = BoundingBox {
        west: longitude("minLon", west)?,
        south: latitude("minLat", south)?,
        east: longitude("maxLon", east)?,
        north: latitude("maxLat", north)?,
    };
    if bbox.south > bbox.north {
        return Err("has a minLat above its maxLat".to_owned());
    }
    Ok(bbox)
}

/// Reads `lon,lat`.
fn parse_near(raw: &str) -> Result<(Longitude, Latitude), String> {
    let [longitude, latitude] =
        numbers(raw).ok_or("must be two comma-separated numbers: lon,lat")?;
    Ok((
        Longitude::try_from(longitude).map_err(|e| format!("has a longitude that {e}"))?,
        Latitude::try_from(latitude).map_err(|e| format!("has a latitude that {e}"))?,
    ))
}

/// Reads a radius in metres.
fn parse_radius(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(metres) if metres > 0.0 && metres <= MAX_RADIUS_METRES => Ok(metres),
        _ => Err(format!(
            "must be a number of metres above 0 and at most {MAX_RADIUS_METRES}"
        )),
    }
}

fn parse_format(raw: &str) -> Result<Format, &'static str> {
    [Format::Json, Format::GeoJson]
        .into_iter()
        .find(|format| format.as_param() == raw)
        .ok_or("must be json or geojson")
}

/// One field error per parameter whose name is not in `known`.
pub(crate) fn reject_unknown(
    pairs: &[(String, String)],
    known: &[&str],
) -> Result<(), Vec<FieldError>> {
    let errors: Vec<FieldError> = pairs
        .iter()
        .filter(|(key, _)| !known.contains(&key.as_str()))
        .map(|(key, _)| FieldError {
            field: key.clone(),
            reason: "is not a known query parameter".to_owned(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use uuid::Uuid;

    use super::*;

    const LIMITS: Limits = Limits {
        default: 100,
        max: 1000,
    };

    pub(in crate::http::points) fn bbox(
        west: f64,
        south: f64,
        east: f64,
        north: f64,
    ) -> BoundingBox {
        BoundingBox {
            west: Longitude::try_from(west).unwrap(),
            south: Latitude::try_from(south).unwrap(),
            east: Longitude::try_from(east).unwrap(),
            north: Latitude::try_from(north).unwrap(),
        }
    }

    pub(in crate::http::points) fn near(longitude: f64, latitude: f64, radius_metres: f64) -> Near {
        Near {
            longitude: Longitude::try_from(longitude).unwrap(),
            latitude: Latitude::try_from(latitude).unwrap(),
            radius_metres,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        list_params(&query(pairs), POINTS_PARAMS, LIMITS).unwrap()
    }

    fn bad_fields(pairs: &[(&str, &str)]) -> Vec<String> {
        list_params(&query(pairs), POINTS_PARAMS, LIMITS)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn no_parameters_mean_the_newest_points_up_to_the_default() {
        let parsed = params(&[]);
        assert_eq!(parsed.limit, 100);
        assert_eq!(parsed.filters, Filters::default());
        assert_eq!(parsed.filters.order(), Order::Newest);
        assert_eq!(parsed.format, None);
        assert_eq!(parsed.after, None);
    }

    #[test]
    fn a_limit_within_bounds_is_taken_as_given() {
        for (raw, expected) in [("1", 1), ("42", 42), ("007", 7), ("1000", 1000)] {
            assert_eq!(params(&[("limit", raw)]).limit, expected, "limit={raw}");
        }
    }

    #[test]
    fn a_limit_above_the_maximum_is_lowered_to_it() {
        for raw in ["1001", "4294967296", "99999999999999999999999999"] {
            assert_eq!(params(&[("limit", raw)]).limit, 1000, "limit={raw}");
        }
    }

    #[test]
    fn a_limit_that_is_not_a_positive_integer_is_refused_by_name() {
        let rows = [
            ("-1", "negative"),
            ("0", "zero"),
            ("000", "zero with padding"),
            ("abc", "not a number"),
            ("1.5", "a fraction"),
            ("1e3", "an exponent"),
            ("+5", "a sign"),
            (" 5", "a space"),
            ("", "empty"),
        ];
        for (raw, description) in rows {
            assert_eq!(
                bad_fields(&[("limit", raw)]),
                ["limit"],
                "{description}: limit={raw:?}"
            );
        }
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        for name in ["limit", "bbox", "f"] {
            let value = if name == "bbox" { "0,0,1,1" } else { "json" };
            let value = if name == "limit" { "5" } else { value };
            assert_eq!(
                bad_fields(&[(name, value), (name, value)]),
                [name],
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_parameters_are_refused_by_name_alongside_a_bad_limit() {
        assert_eq!(bad_fields(&[("bboxx", "1,2,3,4")]), ["bboxx"]);
        assert_eq!(
            bad_fields(&[("Limit", "5"), ("limit", "x")]),
            ["Limit", "limit"]
        );
    }

    #[test]
    fn a_bbox_is_read_longitude_first() {
        let parsed = params(&[("bbox", "-10,35,30,60")]);
        assert_eq!(parsed.filters.bbox, Some(bbox(-10.0, 35.0, 30.0, 60.0)));
        assert!(!parsed.filters.bbox.unwrap().crosses_antimeridian());
        let crossing = params(&[("bbox", "170,-20,-170,-10")])
            .filters
            .bbox
            .unwrap();
        assert!(crossing.crosses_antimeridian());
    }

    #[test]
    fn a_degenerate_bbox_on_the_limits_is_accepted() {
        for raw in [
            "-180,-90,180,90",
            "2,48,2,48",
            "180,0,-180,0",
            "1e1,0,1e1,1",
        ] {
            assert!(
                params(&[("bbox", raw)]).filters.bbox.is_some(),
                "bbox={raw}"
            );
        }
    }

    #[test]
    fn a_bad_bbox_is_refused_by_name() {
        let rows = [
            ("1,2,3", "three numbers"),
            ("1,2,3,4,5,6", "six numbers (a 3D box)"),
            ("1,2,3,x", "not a number"),
            ("1,2,3,4,", "a trailing comma"),
            ("1, 2,3,4", "a space"),
            ("", "empty"),
            ("0,91,1,92", "a latitude of 91"),
            ("0,-90.5,1,0", "a latitude below -90"),
            ("-181,0,1,1", "a longitude below -180"),
            ("0,0,180.0001,1", "a longitude above 180"),
            ("0,10,1,5", "minLat above maxLat"),
            ("NaN,0,1,1", "NaN"),
            ("0,0,inf,1", "infinity"),
            ("0,0,1e999,1", "a literal too large for a double"),
        ];
        for (raw, description) in rows {
            assert_eq!(
                bad_fields(&[("bbox", raw)]),
                ["bbox"],
                "{description}: bbox={raw:?}"
            );
        }
    }

    #[test]
    fn near_and_radius_go_together() {
        let parsed = params(&[("near", "2.3522,48.8566"), ("radius", "50000")]);
        assert_eq!(parsed.filters.near, Some(near(2.3522, 48.8566, 50_000.0)));
        assert_eq!(parsed.filters.order(), Order::Nearest);
        assert_eq!(bad_fields(&[("near", "2,48")]), ["radius"]);
        assert_eq!(bad_fields(&[("radius", "10")]), ["radius"]);
    }

    #[test]
    fn near_and_bbox_apply_together() {
        let parsed = params(&[("bbox", "0,40,10,50"), ("near", "2,48"), ("radius", "1000")]);
        assert!(parsed.filters.bbox.is_some() && parsed.filters.near.is_some());
    }

    #[test]
    fn a_bad_near_or_radius_is_refused_by_name() {
        let rows = [
            ("2", "1000", "near", "one number"),
            ("2,48,0", "1000", "near", "three numbers"),
            ("200,48", "1000", "near", "a longitude of 200"),
            ("2,-91", "1000", "near", "a latitude of -91"),
            ("2,48", "-5", "radius", "a negative radius"),
            ("2,48", "0", "radius", "a zero radius"),
            ("2,48", "ten", "radius", "a radius that is not a number"),
            ("2,48", "NaN", "radius", "a NaN radius"),
            (
                "2,48",
                "1000000.001",
                "radius",
                "a radius above the maximum",
            ),
        ];
        for (centre, radius, field, description) in rows {
            assert_eq!(
                bad_fields(&[("near", centre), ("radius", radius)]),
                [field],
                "{description}: near={centre} radius={radius}"
            );
        }
        assert_eq!(
            params(&[("near", "2,48"), ("radius", "1e6")])
                .filters
                .near
                .map(|n| n.radius_metres),
            Some(MAX_RADIUS_METRES)
        );
    }

    #[test]
    fn f_names_one_of_two_formats() {
        assert_eq!(params(&[("f", "json")]).format, Some(Format::Json));
        assert_eq!(params(&[("f", "geojson")]).format, Some(Format::GeoJson));
        for raw in ["GeoJSON", "xml", ""] {
            assert_eq!(bad_fields(&[("f", raw)]), ["f"], "f={raw:?}");
        }
    }

    #[test]
    fn a_cursor_is_taken_only_for_the_filters_it_was_issued_for() {
        let filters = Filters {
            bbox: Some(bbox(0.0, 40.0, 10.0, 50.0)),
            near: None,
            updated: None,
        };
        let position = Position::Newest {
            last_id: Uuid::now_v7(),
        };
        let cursor = Cursor::new(&filters, position).encode();
        let parsed = params(&[("bbox", "0,40,10,50"), ("cursor", &cursor)]);
        assert_eq!(parsed.after, Some(position));
        // The limit and the format may change from page to page.
        let parsed = params(&[
            ("f", "geojson"),
            ("limit", "7"),
            ("cursor", &cursor),
            ("bbox", "0,40,10,50"),
        ]);
        assert_eq!(parsed.after, Some(position));
        assert_eq!(bad_fields(&[("cursor", &cursor)]), ["cursor"]);
        assert_eq!(
            bad_fields(&[("bbox", "0,40,10,51"), ("cursor", &cursor)]),
            ["cursor"]
        );
    }

    #[test]
    fn a_garbled_cursor_is_reported_with_the_other_errors() {
        assert_eq!(bad_fields(&[("cursor", "nonsense")]), ["cursor"]);
        assert_eq!(
            bad_fields(&[("cursor", "nonsense"), ("bbox", "1,2,3")]),
            ["bbox", "cursor"]
        );
        // A well-formed cursor next to a bad filter cannot be matched, and is not blamed.
        let cursor = Cursor::new(
            &Filters::default(),
            Position::Newest {
                last_id: Uuid::now_v7(),
            },
        )
        .encode();
        assert_eq!(
            bad_fields(&[("cursor", &cursor), ("bbox", "1,2,3")]),
            ["bbox"]
        );
    }

    const ITEMS: &[&str] = &["bbox", "datetime", "limit", "f", "cursor"];

    fn item_fields(pairs: &[(&str, &str)]) -> Vec<String> {
        list_params(&query(pairs), ITEMS, LIMITS)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_list_takes_only_its_own_parameters_each_refused_once() {
        let parsed = list_params(
            &query(&[("datetime", "2026-01-01T00:00:00Z/..")]),
            ITEMS,
            LIMITS,
        )
        .unwrap();
        assert!(parsed.filters.updated.is_some());
        assert_eq!(
            bad_fields(&[("datetime", "2026-01-01T00:00:00Z")]),
            ["datetime"]
        );
        // Unknown to the items, so refused as unknown and not also as a radius-less near.
        assert_eq!(item_fields(&[("near", "2,48")]), ["near"]);
        assert_eq!(item_fields(&[("datetime", "soon")]), ["datetime"]);
    }

    #[test]
    fn a_cursor_is_refused_under_another_datetime() {
        let issued = list_params(
            &query(&[("datetime", "2026-01-01T00:00:00Z/..")]),
            ITEMS,
            LIMITS,
        )
        .unwrap();
        let cursor = Cursor::new(
            &issued.filters,
            Position::Newest {
                last_id: Uuid::now_v7(),
            },
        )
        .encode();
        assert!(
            item_fields(&[("datetime", "2026-01-01T00:00:00Z/.."), ("cursor", &cursor)]).is_empty()
        );
        assert_eq!(
            item_fields(&[("datetime", "2026-01-02T00:00:00Z/.."), ("cursor", &cursor)]),
            ["cursor"]
        );
        assert_eq!(item_fields(&[("cursor", &cursor)]), ["cursor"]);
    }

    #[test]
    fn a_box_with_heights_is_refused_with_a_reason_that_says_so() {
        let errors = list_params(&query(&[("bbox", "1,2,0,3,4,10")]), ITEMS, LIMITS).unwrap_err();
        assert!(errors[0].reason.contains("heights"), "{}", errors[0].reason);
    }

    #[test]
    fn the_fingerprint_tells_every_filter_apart() {
        let all = [
            Filters::default(),
            Filters {
                bbox: Some(bbox(0.0, 0.0, 1.0, 1.0)),
                near: None,
                updated: None,
            },
            Filters {
                bbox: Some(bbox(0.0, 0.0, 1.0, 2.0)),
                near: None,
                updated: None,
            },
            Filters {
                bbox: Some(bbox(-0.0, 0.0, 1.0, 1.0)),
                near: None,
                updated: None,
            },
            Filters {
                bbox: None,
                near: Some(near(0.0, 0.0, 1.0)),
                updated: None,
            },
            Filters {
                bbox: None,
                near: Some(near(0.0, 0.0, 2.0)),
                updated: None,
            },
            Filters {
                bbox: Some(bbox(0.0, 0.0, 1.0, 1.0)),
                near: Some(near(0.0, 0.0, 1.0)),
                updated: None,
            },
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.fingerprint(), b.fingerprint(), "{a:?} vs {b:?}");
            }
        }
    }
}
