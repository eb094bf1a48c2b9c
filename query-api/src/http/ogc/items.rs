//! `/collections/points/items`: the features, a keyset page at a time, and one feature by id.
//! The parameters, cursor, SQL and GeoJSON are those of `GET /points` (`http::points`).
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `limit` | features per page: an integer from 1, by default [`OGC_DEFAULT_LIMIT`]; above [`OGC_MAX_LIMIT`] it is lowered to it, as Part 1 allows; 0, a negative or a non-integer is a 400 |
//! | `bbox` | `minLon,minLat,maxLon,maxLat` in CRS84; edges are inside; `minLon > maxLon` crosses the antimeridian. Six numbers (a box with heights) are a 400: CRS84 has no height |
//! | `datetime` | an RFC 3339 date-time, or `start/end` with `..` (or nothing) for an open end; matched against `updated_at`, both ends inside |
//! | `f` | `geojson` or `json`: the same GeoJSON, labelled `application/geo+json` or `application/json` |
//! | `cursor` | opaque, from a `next` link |
//!
//! A page links to itself, to the same page in the other label (`alternate`), to the
//! collection, and while more features follow to the next page (`next`, also as a `Link`
//! header), repeating every filter. Pages run newest first by id through the primary key, so
//! the thousandth page costs what the first does.
//!
//! `numberMatched` is only given when it is known without counting: on a first page that
//! holds every match. Counting all matches on every page is what makes other feature servers
//! slow on big tables, and a count taken on page one is stale by page two anyway.
//! `timeStamp` is when the projection last advanced, not when the page was rendered: the page
//! shows the read model as of that instant, and a page is then a pure function of the
//! checkpoint and the request, which its strong `ETag` promises.

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, LINK};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse as _, Response};
use uuid::Uuid;

use super::{BaseUrl, COLLECTION_PATH, ITEMS_PATH, check_collection};
use crate::error::{ApiError, ApiResult};
use crate::http::caching::{Versioned, entity_tag, not_modified, with_validators};
use crate::http::media::{self, GEO_JSON, JSON, Link};
use crate::http::points::{
    Feature, FeatureCollection, Format, GET_LISTED_POINT, Limits, ListedPoint, Listing, Members,
    current_cursor, link_header, list_href, list_params, read_listing,
};
use crate::http::{AppState, Path, Query};

/// Features a page holds when the request names no `limit`.
pub(crate) const OGC_DEFAULT_LIMIT: u32 = 100;
/// Most features one page holds. Large, because GIS clients export whole layers and each
/// page is an index walk of its own length; a page of 10,000 points is about 1.5 MB.
pub(crate) const OGC_MAX_LIMIT: u32 = 10_000;
/// The two as a pair.
pub(crate) const OGC_LIMITS: Limits = Limits::new_const(OGC_DEFAULT_LIMIT, OGC_MAX_LIMIT);

/// The parameters of the items; any other is refused.
pub(crate) const ITEMS_PARAMS: &[&str] = &["bbox", "datetime", "limit", "f", "cursor"];
/// The parameters of one item.
pub(crate) const ITEM_PARAMS: &[&str] = &["f"];

/// The label the features go out with: `f` if given, else what `Accept` prefers, GeoJSON by
/// default.
fn served_format(explicit: Option<Format>, headers: &HeaderMap) -> Format {
    explicit.unwrap_or_else(|| {
        if media::choose(headers, &[GEO_JSON, JSON]) == JSON {
            Format::Json
        } else {
            Format::GeoJson
        }
    })
}

fn media_type(format: Format) -> &'static str {
    match format {
        Format::GeoJson => GEO_JSON,
        Format::Json => JSON,
    }
}

fn other(format: Format) -> Format {
    match format {
        Format::GeoJson => Format::Json,
        Format::Json => Format::GeoJson,
    }
}

/// Features of the `points` collection, newest first, a keyset page at a time.
#[utoipa::path(
    get,
    path = "/collections/points/items",
    tag = "OGC API Features",
    operation_id = "getFeatures",
    responses(
        (status = 200, description = "A page of features, with a `next` link while more \
            follow",
            content(
                ("application/geo+json" = FeatureCollection),
                ("application/json" = FeatureCollection),
            )),
        (status = 304, description = "`If-None-Match` holds the current tag"),
        (status = 400, description = "An unknown, repeated or invalid parameter",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(
    skip_all,
    fields(query.limit, query.bbox, query.datetime, query.cursor, db.rows)
)]
pub(super) async fn list_items(
    State(state): State<AppState>,
    base: BaseUrl,
    headers: HeaderMap,
    Path(collection_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_collection(&collection_id)?;
    let params = list_params(&pairs, ITEMS_PARAMS, OGC_LIMITS).map_err(ApiError::Validation)?;
    let served = served_format(params.format, &headers);
    let span = tracing::Span::current();
    span.record("query.limit", params.limit);
    span.record("query.bbox", params.filters.bbox.is_some());
    span.record("query.datetime", params.filters.updated.is_some());
    span.record("query.cursor", params.after.is_some());

    let current = current_cursor(&params);
    let self_href = base.join(&list_href(
        ITEMS_PATH,
        &params,
        Some(served),
        current.as_ref(),
    ));
    // The links in the body start with the host, so the tag covers it through `self`.
    let (read, tag) = match read_listing(&state, &headers, &params, &self_href).await? {
        Listing::Page { read, tag } => (read, tag),
        Listing::NotModified(response) => return Ok(response),
    };
    let (checkpoint, page) = (&read.checkpoint, &read.page);
    let as_of = checkpoint.at;

    let all_on_this_page = params.after.is_none() && page.next.is_none();
    let next_href = page.next.map(|cursor| {
        base.join(&list_href(
            ITEMS_PATH,
            &params,
            params.format,
            Some(&cursor),
        ))
    });
    let alternate_href = base.join(&list_href(
        ITEMS_PATH,
        &params,
        Some(other(served)),
        current.as_ref(),
    ));
    let mut links = vec![
        Link::new(self_href, "self", media_type(served)),
        Link::new(alternate_href, "alternate", media_type(other(served))),
        Link::new(base.join(COLLECTION_PATH), "collection", JSON),
    ];
    if let Some(href) = &next_href {
        links.push(Link::new(href.clone(), "next", media_type(served)));
    }
    let collection = FeatureCollection::new(&page.points, Members::Ogc, links)
        .counted(as_of, all_on_this_page.then_some(page.points.len()));
    let mut response = axum::Json(collection).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type(served)));
    if let Some(href) = &next_href {
        response_headers.insert(LINK, link_header(href, Some(media_type(served))));
    }
    Ok(with_validators(response, &tag))
}

/// One feature of the `points` collection.
#[utoipa::path(
    get,
    path = "/collections/points/items/{featureId}",
    tag = "OGC API Features",
    operation_id = "getFeature",
    params(("featureId" = Uuid, Path, description = "The point's id, a UUID")),
    responses(
        (status = 200, description = "The feature",
            content(
                ("application/geo+json" = Feature),
                ("application/json" = Feature),
            )),
        (status = 304, description = "`If-None-Match` holds the current tag"),
        (status = 400, description = "An unknown or invalid parameter",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No point has this id (yet: the projection may lag)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot answer now",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(point.id))]
pub(super) async fn get_item(
    State(state): State<AppState>,
    base: BaseUrl,
    headers: HeaderMap,
    Path((collection_id, raw_id)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_collection(&collection_id)?;
    let params = list_params(&pairs, ITEM_PARAMS, OGC_LIMITS).map_err(ApiError::Validation)?;
    let served = served_format(params.format, &headers);
    let id = Uuid::try_parse(&raw_id)
        .map_err(|_| ApiError::NotFound("the id is not a UUID, so no feature has it".to_owned()))?;
    tracing::Span::current().record("point.id", tracing::field::display(id));
    let Versioned { seq, row } = sqlx::query_as::<_, Versioned<ListedPoint>>(GET_LISTED_POINT)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no feature has the id {id}")))?;
    let path = base.join(&format!("{ITEMS_PATH}/{}", row.id()));
    let self_href = format!("{path}?f={}", served.as_param());
    let tag = entity_tag(seq, &self_href);
    if let Some(not_modified) = not_modified(&headers, &tag) {
        return Ok(not_modified);
    }
    let feature = Feature::new(&row, Members::Ogc).with_links(vec![
        Link::new(self_href.clone(), "self", media_type(served)),
        Link::new(
            format!("{path}?f={}", other(served).as_param()),
            "alternate",
            media_type(other(served)),
        ),
        Link::new(base.join(COLLECTION_PATH), "collection", JSON),
    ]);
    let mut response = axum::Json(feature).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media_type(served)));
    Ok(with_validators(response, &tag))
}

#[cfg(test)]
mod tests {
    use axum::http::header::ACCEPT;

    use super::*;

    #[test]
    fn geojson_is_served_unless_json_is_asked_for() {
        let mut headers = HeaderMap::new();
        assert_eq!(served_format(None, &headers), Format::GeoJson);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(served_format(None, &headers), Format::Json);
        assert_eq!(
            served_format(Some(Format::GeoJson), &headers),
            Format::GeoJson
        );
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/geo+json, application/json"),
        );
        assert_eq!(served_format(None, &headers), Format::GeoJson);
    }

    #[test]
    fn the_limits_follow_part_1() {
        assert_eq!(OGC_LIMITS.default_limit(), OGC_DEFAULT_LIMIT);
        assert_eq!(OGC_LIMITS.max_limit(), OGC_MAX_LIMIT);
    }
}
