//! A page of points as the client asked for it: the JSON array existing clients read, or a
//! GeoJSON `FeatureCollection` (RFC 7946), both with a `Link: rel="next"` header while more
//! points follow.

use axum::Json;
use axum::http::header::{ACCEPT, CONTENT_TYPE, LINK, VARY};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::ListedPoint;
use super::cursor::Cursor;
use super::params::{Format, ListParams};

/// Media type of GeoJSON, per RFC 7946 section 12.
pub(super) const GEO_JSON: &str = "application/geo+json";

/// The format of the answer: `f` if given, otherwise GeoJSON only for a client that names
/// `application/geo+json` in `Accept` at least as eagerly as `application/json`. Wildcards
/// and everything else get the JSON array, so clients that never heard of GeoJSON keep
/// getting what they always got; there is no 406.
pub(super) fn negotiate(explicit: Option<Format>, headers: &HeaderMap) -> Format {
    if let Some(format) = explicit {
        return format;
    }
    let (mut geojson, mut json) = (None::<f32>, None::<f32>);
    let ranges = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = if media_type.eq_ignore_ascii_case(GEO_JSON) {
            &mut geojson
        } else if media_type.eq_ignore_ascii_case("application/json") {
            &mut json
        } else {
            continue;
        };
        *slot = Some(slot.map_or(weight, |w| w.max(weight)));
    }
    match geojson {
        Some(weight) if weight > 0.0 && weight >= json.unwrap_or(0.0) => Format::GeoJson,
        _ => Format::Json,
    }
}

/// Where the page after this one is: the same filters, limit and `f`, plus the cursor. The
/// link is relative to the host, so it holds behind HAProxy or any other proxy that keeps the
/// path. Numbers are written shortest-first, which reads back to the very same doubles, so
/// the cursor's fingerprint matches.
pub(super) fn next_link(params: &ListParams, cursor: &Cursor) -> String {
    let mut query = Vec::with_capacity(6);
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
    if let Some(format) = params.format {
        query.push(format!("f={}", format.as_param()));
    }
    query.push(format!("limit={}", params.limit));
    query.push(format!("cursor={}", cursor.encode()));
    format!("/points?{}", query.join("&"))
}

/// The answer to `GET /points`.
pub(super) fn page(format: Format, points: Vec<ListedPoint>, next: Option<&str>) -> Response {
    let mut response = match format {
        Format::Json => Json(points).into_response(),
        Format::GeoJson => {
            let collection = FeatureCollection::new(&points, next);
            let mut response = Json(collection).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(GEO_JSON));
            response
        }
    };
    let headers = response.headers_mut();
    // The same URL answers in two formats, so caches must key on Accept too.
    headers.insert(VARY, HeaderValue::from_static("accept"));
    if let Some(href) = next {
        let value = HeaderValue::try_from(format!("<{href}>; rel=\"next\""))
            .expect("a next link holds only ASCII numbers, commas, letters and hex digits");
        headers.insert(LINK, value);
    }
    response
}

#[derive(Serialize)]
struct FeatureCollection<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    features: Vec<Feature<'a>>,
    links: Vec<Link<'a>>,
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Uuid,
    geometry: Geometry,
    properties: Properties<'a>,
}

#[derive(Serialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Longitude first, as RFC 7946 requires; the stored doubles, written shortest-first.
    coordinates: [f64; 2],
}

#[derive(Serialize)]
struct Properties<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<f64>,
}

#[derive(Serialize)]
struct Link<'a> {
    href: &'a str,
    rel: &'static str,
    #[serde(rename = "type")]
    media_type: &'static str,
}

impl<'a> FeatureCollection<'a> {
    fn new(points: &'a [ListedPoint], next: Option<&'a str>) -> Self {
        let features = points
            .iter()
            .map(|point| Feature {
                kind: "Feature",
                id: point.id,
                geometry: Geometry {
                    kind: "Point",
                    coordinates: [point.longitude, point.latitude],
                },
                properties: Properties {
                    name: &point.name,
                    distance: point.distance,
                },
            })
            .collect();
        let links = next
            .map(|href| Link {
                href,
                rel: "next",
                media_type: GEO_JSON,
            })
            .into_iter()
            .collect();
        Self {
            kind: "FeatureCollection",
            features,
            links,
        }
    }
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
        }
    }

    async fn body(response: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_geojson_page_is_a_feature_collection_with_a_next_link() {
        let response = page(Format::GeoJson, vec![paris(Some(433.7))], Some("/points?x"));
        assert_eq!(response.headers()[CONTENT_TYPE], GEO_JSON);
        assert_eq!(response.headers()[LINK], "</points?x>; rel=\"next\"");
        assert_eq!(response.headers()[VARY], "accept");
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

    #[tokio::test]
    async fn the_last_page_has_no_next_link() {
        let response = page(Format::Json, vec![paris(None)], None);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert!(!response.headers().contains_key(LINK));
        let response = page(Format::GeoJson, Vec::new(), None);
        assert_eq!(body(response).await["links"], serde_json::json!([]));
    }
}
