//! Points as GeoJSON (RFC 7946) and pages as the client asked for them: for `GET /points`,
//! the JSON array existing clients read or a `FeatureCollection`, both with a
//! `Link: rel="next"` header while more points follow; for the OGC items, the members
//! OGC API Features adds to a `FeatureCollection`.

use axum::body::Bytes;
use axum::http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, LINK};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ListedPoint;
use super::cache::Coding;
use super::cursor::Cursor;
use super::params::{Format, ListParams};
use crate::http::media::{GEO_JSON, Link};

/// The format of the answer: `f` if given, otherwise GeoJSON only for a client that names
/// `application/geo+json` in `Accept` at least as eagerly as `application/json`. Wildcards
/// and everything else get the JSON array, so clients that never heard of GeoJSON keep
/// getting what they always got; there is no 406.
pub(super) fn negotiate(explicit: Option<Format>, headers: &HeaderMap) -> Format {
    if let Some(format) = explicit {
        return format;
    }
    let [geojson, json] = weights(headers, &ACCEPT, [&[GEO_JSON], &["application/json"]]);
    match geojson {
        Some(weight) if weight > 0.0 && weight >= json.unwrap_or(0.0) => Format::GeoJson,
        _ => Format::Json,
    }
}

/// Whether to send a body gzip-compressed: when `Accept-Encoding` gives `gzip` (or `x-gzip`) a
/// weight above 0, or gives none and `*` does; a weight that does not parse counts as 1.
/// The other routes are compressed by tower-http's layer, which reads the header a little
/// differently (it ignores `*`, and prefers identity when identity weighs more): both are
/// choices RFC 9110 allows, and both always send what the client said it takes.
pub(super) fn coding(headers: &HeaderMap) -> Coding {
    let [gzip, any] = weights(headers, &ACCEPT_ENCODING, [&["gzip", "x-gzip"], &["*"]]);
    if gzip.or(any).is_some_and(|weight| weight > 0.0) {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// The highest weight the `header` lines give any of each group of `names` (compared without
/// case), `None` for a group they do not list. Items are `name;q=w` separated by commas; an
/// item without a weight, or whose weight does not parse, weighs 1.
fn weights<const N: usize>(
    headers: &HeaderMap,
    header: &HeaderName,
    names: [&[&str]; N],
) -> [Option<f32>; N] {
    let mut best = [None::<f32>; N];
    let items = headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let Some(group) = names
            .iter()
            .position(|group| group.iter().any(|n| n.eq_ignore_ascii_case(name)))
        else {
            continue;
        };
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        best[group] = Some(best[group].map_or(weight, |w| w.max(weight)));
    }
    best
}

/// `path` with the query that asks for `params` again: every filter and the limit, `f` when
/// `format` is given, and `cursor` when given. The link is relative to the host, so it holds
/// behind HAProxy or any other proxy that keeps the path. Numbers are written shortest-first
/// and instants in UTC with the digits they need, which read back to the very same values,
/// so a cursor's fingerprint matches.
pub(crate) fn list_href(
    path: &str,
    params: &ListParams,
    format: Option<Format>,
    cursor: Option<&Cursor>,
) -> String {
    let mut query = Vec::with_capacity(8);
    if let Some(b) = &params.filters.bbox {
        query.push(format!(
            "bbox={},{},{},{}",
            b.west.degrees(),
            b.south.degrees(),
            b.east.degrees(),
            b.north.degrees()
        ));
    }
    if let Some(n) = &params.filters.near {
        query.push(format!(
            "near={},{}",
            n.longitude.degrees(),
            n.latitude.degrees()
        ));
        query.push(format!("radius={}", n.radius_metres));
    }
    if let Some(updated) = params.filters.updated {
        query.push(format!("datetime={}", updated.to_param()));
    }
    if let Some(format) = format {
        query.push(format!("f={}", format.as_param()));
    }
    query.push(format!("limit={}", params.limit));
    if let Some(cursor) = cursor {
        query.push(format!("cursor={}", cursor.encode()));
    }
    format!("{path}?{}", query.join("&"))
}

/// Where the page of `GET /points` after this one is: the same filters, limit and `f`, plus
/// the cursor.
pub(super) fn next_link(params: &ListParams, cursor: &Cursor) -> String {
    list_href("/points", params, params.format, Some(cursor))
}

/// The body of `GET /points` in `format`, with `next` as the `FeatureCollection`'s link.
pub(super) fn page_body(format: Format, points: &[ListedPoint], next: Option<&str>) -> Bytes {
    let written = match format {
        Format::Json => serde_json::to_vec(points),
        Format::GeoJson => {
            let links = next
                .map(|href| Link::new(href, "next", GEO_JSON))
                .into_iter()
                .collect();
            serde_json::to_vec(&FeatureCollection::new(points, Members::Listed, links))
        }
    };
    // Strings, finite numbers and UUIDs only: serde_json has nothing to refuse.
    Bytes::from(written.expect("a page of points serialises to JSON"))
}

/// The answer to `GET /points`: `body` as [`page_body`] rendered it for `format` and `next`,
/// in `coding`.
pub(super) fn page(format: Format, body: Bytes, next: Option<&str>, coding: Coding) -> Response {
    let media_type = match format {
        Format::Json => "application/json",
        Format::GeoJson => GEO_JSON,
    };
    let mut response =
        ([(CONTENT_TYPE, HeaderValue::from_static(media_type))], body).into_response();
    let headers = response.headers_mut();
    if coding == Coding::Gzip {
        // Set here, the compression layer leaves the body alone.
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(href) = next {
        headers.insert(LINK, link_header(href, None));
    }
    response
}

/// A `Link` header naming `href` as the next page.
pub(crate) fn link_header(href: &str, media_type: Option<&str>) -> HeaderValue {
    let value = match media_type {
        Some(media_type) => format!("<{href}>; rel=\"next\"; type=\"{media_type}\""),
        None => format!("<{href}>; rel=\"next\""),
    };
    HeaderValue::try_from(value)
        .expect("a next link holds only ASCII numbers, commas, letters, colons and hex digits")
}

/// Which properties a feature carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Members {
    /// `GET /points`: `name`, and `distance` in radius searches.
    Listed,
    /// OGC API Features: `name` and `updated_at`, the property `datetime` filters on.
    Ogc,
}

/// A GeoJSON `FeatureCollection`; the OGC members are left out of `GET /points` pages.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FeatureCollection)]
pub(crate) struct FeatureCollection<'a> {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    #[schema(example = "FeatureCollection")]
    kind: &'static str,
    features: Vec<Feature<'a>>,
    links: Vec<Link>,
    /// When the projection last advanced: the state of the read model this page shows.
    #[serde(rename = "timeStamp", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    time_stamp: Option<String>,
    /// How many features match the filters in all; given only when known without counting,
    /// that is when this first page holds them all.
    #[serde(rename = "numberMatched", skip_serializing_if = "Option::is_none")]
    number_matched: Option<usize>,
    /// How many features this page holds.
    #[serde(rename = "numberReturned", skip_serializing_if = "Option::is_none")]
    number_returned: Option<usize>,
}

impl<'a> FeatureCollection<'a> {
    pub(crate) fn new(points: &'a [ListedPoint], members: Members, links: Vec<Link>) -> Self {
        Self {
            kind: "FeatureCollection",
            features: points.iter().map(|p| Feature::new(p, members)).collect(),
            links,
            time_stamp: None,
            number_matched: None,
            number_returned: None,
        }
    }

    /// Adds `numberReturned`, and `timeStamp` and `numberMatched` when known.
    #[must_use]
    pub(crate) fn counted(
        mut self,
        time_stamp: Option<DateTime<Utc>>,
        number_matched: Option<usize>,
    ) -> Self {
        self.time_stamp = time_stamp.map(instant);
        self.number_matched = number_matched;
        self.number_returned = Some(self.features.len());
        self
    }
}

/// One point as a GeoJSON `Feature`, with the point's id as the feature's `id`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Feature)]
pub(crate) struct Feature<'a> {
    /// Always `Feature`.
    #[serde(rename = "type")]
    #[schema(example = "Feature")]
    kind: &'static str,
    id: Uuid,
    geometry: Geometry,
    properties: Properties<'a>,
    /// Only on a feature read on its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link>,
}

impl<'a> Feature<'a> {
    pub(crate) fn new(point: &'a ListedPoint, members: Members) -> Self {
        Self {
            kind: "Feature",
            id: point.id,
            geometry: Geometry {
                kind: "Point",
                coordinates: [point.longitude, point.latitude],
            },
            properties: Properties {
                name: &point.name,
                distance: point.distance.filter(|_| members == Members::Listed),
                updated_at: (members == Members::Ogc).then(|| instant(point.updated_at)),
            },
            links: Vec::new(),
        }
    }

    #[must_use]
    pub(crate) fn with_links(mut self, links: Vec<Link>) -> Self {
        self.links = links;
        self
    }
}

/// A GeoJSON `Point`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Geometry {
    /// Always `Point`.
    #[serde(rename = "type")]
    #[schema(example = "Point")]
    kind: &'static str,
    /// Longitude then latitude in CRS84, as RFC 7946 requires; the stored doubles, written
    /// shortest-first, so they read back exactly as written.
    #[schema(value_type = Vec<f64>, min_items = 2, max_items = 2)]
    coordinates: [f64; 2],
}

/// What a feature says besides where it is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Properties<'a> {
    name: &'a str,
    /// Metres from the `near` centre, in radius searches of `GET /points`.
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<f64>,
    /// When the point last changed; on OGC features only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    updated_at: Option<String>,
}

/// An instant as RFC 3339 in UTC, with as many fraction digits as it needs.
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::super::cursor::Position;
    use super::super::params::Filters;
    use super::super::params::tests::{bbox, near};
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_chooses_geojson_only_when_it_is_named_and_not_outranked() {
        let rows = [
            ("application/geo+json", Format::GeoJson),
            ("Application/GEO+JSON", Format::GeoJson),
            (
                "application/json;q=0.9, application/geo+json",
                Format::GeoJson,
            ),
            ("application/geo+json, application/json", Format::GeoJson),
            ("application/geo+json;q=0.5, application/json", Format::Json),
            ("application/geo+json;q=0", Format::Json),
            ("application/json", Format::Json),
            ("*/*", Format::Json),
            ("text/html,application/xhtml+xml,*/*;q=0.8", Format::Json),
            ("", Format::Json),
        ];
        for (value, expected) in rows {
            assert_eq!(negotiate(None, &accept(value)), expected, "Accept: {value}");
        }
        assert_eq!(negotiate(None, &HeaderMap::new()), Format::Json);
    }

    #[test]
    fn f_overrides_accept() {
        let headers = accept("application/geo+json");
        assert_eq!(negotiate(Some(Format::Json), &headers), Format::Json);
        assert_eq!(
            negotiate(Some(Format::GeoJson), &HeaderMap::new()),
            Format::GeoJson
        );
    }

    #[test]
    fn the_next_link_repeats_every_filter_and_the_limit() {
        let filters = Filters {
            bbox: Some(bbox(170.0, -20.5, -170.0, -10.0)),
            near: Some(near(179.9, -16.5, 100_000.0)),
            updated: None,
        };
        let params = ListParams {
            limit: 50,
            filters,
            format: Some(Format::GeoJson),
            after: None,
        };
        let cursor = Cursor::new(
            &filters,
            Position::Nearest {
                last_distance: 1.0,
                last_id: Uuid::nil(),
            },
        );
        assert_eq!(
            next_link(&params, &cursor),
            format!(
                "/points?bbox=170,-20.5,-170,-10&near=179.9,-16.5&radius=100000&f=geojson\
                 &limit=50&cursor={}",
                cursor.encode()
            )
        );
    }

    fn paris(distance: Option<f64>) -> ListedPoint {
        ListedPoint {
            id: Uuid::nil(),
            name: "Paris".to_owned(),
            longitude: 2.3488,
            latitude: 48.85341,
            distance,
            updated_at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn rendered(format: Format, points: &[ListedPoint], next: Option<&str>) -> Response {
        page(
            format,
            page_body(format, points, next),
            next,
            Coding::Identity,
        )
    }

    async fn body(response: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_geojson_page_is_a_feature_collection_with_a_next_link() {
        let response = rendered(Format::GeoJson, &[paris(Some(433.7))], Some("/points?x"));
        assert_eq!(response.headers()[CONTENT_TYPE], GEO_JSON);
        assert_eq!(response.headers()[LINK], "</points?x>; rel=\"next\"");
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "type": "FeatureCollection",
                "features": [{
                    "type": "Feature",
                    "id": "00000000-0000-0000-0000-000000000000",
                    "geometry": {"type": "Point", "coordinates": [2.3488, 48.85341]},
                    "properties": {"name": "Paris", "distance": 433.7}
                }],
                "links": [{"href": "/points?x", "rel": "next", "type": GEO_JSON}]
            })
        );
    }

    #[test]
    fn gzip_is_sent_when_accept_encoding_weighs_it_or_a_wildcard_above_zero() {
        let coding_for = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            }
            coding(&headers)
        };
        for values in [
            &["gzip"][..],
            &["GZIP"],
            &["x-gzip"],
            &["deflate, gzip;q=0.1, br"],
            &["*"],
            &["br", "gzip"],
            &["gzip;q=0", "gzip;q=0.5"],
            &["br;q=1, *;q=0.2"],
        ] {
            assert_eq!(coding_for(values), Coding::Gzip, "{values:?}");
        }
        for values in [
            &[][..],
            &["identity"],
            &["br, deflate"],
            &["gzip;q=0"],
            &["gzip;q=0, *"],
            &["*;q=0"],
            &["gzip;q=0.0"],
        ] {
            assert_eq!(coding_for(values), Coding::Identity, "{values:?}");
        }
    }

    #[tokio::test]
    async fn the_last_page_has_no_next_link() {
        let response = rendered(Format::Json, &[paris(None)], None);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert!(!response.headers().contains_key(LINK));
        let response = rendered(Format::GeoJson, &[], None);
        assert_eq!(body(response).await["links"], serde_json::json!([]));
    }

    #[test]
    fn an_ogc_page_counts_its_features_and_its_features_carry_updated_at() {
        let points = [paris(Some(1.0))];
        let collection = FeatureCollection::new(&points, Members::Ogc, Vec::new())
            .counted(Some(points[0].updated_at), Some(1));
        let json = serde_json::to_value(&collection).unwrap();
        assert_eq!(json["numberReturned"], 1);
        assert_eq!(json["numberMatched"], 1);
        assert_eq!(json["timeStamp"], "2026-01-02T03:04:05.500Z");
        assert_eq!(
            json["features"][0]["properties"],
            serde_json::json!({"name": "Paris", "updated_at": "2026-01-02T03:04:05.500Z"})
        );
        let unknown = FeatureCollection::new(&points, Members::Ogc, Vec::new()).counted(None, None);
        let json = serde_json::to_value(&unknown).unwrap();
        assert!(json.get("numberMatched").is_none() && json.get("timeStamp").is_none());
    }

    #[test]
    fn a_link_repeats_the_datetime_filter_in_utc() {
        let params = ListParams {
            limit: 10,
            filters: Filters {
                updated: Some(
                    super::super::datetime::UpdatedWithin::parse("../2026-01-01T01:00:00+01:00")
                        .unwrap(),
                ),
                ..Filters::default()
            },
            format: None,
            after: None,
        };
        assert_eq!(
            list_href(
                "/collections/points/items",
                &params,
                Some(Format::Json),
                None
            ),
            "/collections/points/items?datetime=../2026-01-01T00:00:00Z&f=json&limit=10"
        );
    }
}
