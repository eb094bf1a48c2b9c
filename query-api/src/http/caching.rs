//! Validators and freshness for data answers: strong `ETag`s that change only when the
//! projection advances, `If-None-Match` answered 304, and `Cache-Control`.
//!
//! The read model changes only when the projector applies events, and it moves its checkpoint
//! (`projection_checkpoint.last_seq`) in the same transaction as the rows.
//!
//! - A page is read in the same statement as the checkpoint, hence in the same snapshot, so it
//!   is a pure function of that checkpoint and the request: its tag is
//!   `"<checkpoint>-<digest of the request>"`. A conditional request is compared with the tag
//!   of the page a 200 would serve: while the page cache serves (see `http::points::cache`),
//!   the page it holds or loads, so a popular page costs no statement; otherwise the
//!   checkpoint is read alone first, so one whose tag is still current costs one indexed
//!   read, not the page.
//! - A single point is tagged with its own version, the stream sequence of its last event
//!   (`points.last_seq`): `"<sequence>"` on `/points/{id}`, the very tag command-api answers
//!   writes with, so it serves as `If-Match` on `PATCH` and `DELETE /points/{id}`; and
//!   `"<sequence>-<digest>"` on the OGC feature, another representation.
//!
//! Data answers say `Cache-Control: no-cache`: a cache may keep them but must revalidate
//! before every reuse, so a reader never sees data older than the read model itself (which
//! lags the stream by the projector's batch time) and a revalidation is cheap.
//!
//! # Limitations
//!
//! - A tag names the representation before content coding: a gzip answer and an identity one
//!   share it, where RFC 9110 (section 8.8.3) would have them differ. Nothing here serves
//!   byte ranges, where that would matter, and a suffixed tag would no longer work as
//!   command-api's `If-Match`.
//! - The tag assumes only the projector writes the read model. Rows changed behind its back
//!   (a manual fix, a bulk load that does not move the checkpoint) keep the old tag, and a
//!   client holding it is told 304 until the next event is projected.
//! - `projector rebuild` builds new tables beside these and swaps them in with a checkpoint at
//!   or past the old one, so tags never go back; a tag from before the swap may still match
//!   after it, which is right as long as replaying the same events gives the same rows.

use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, Row as _};

/// Freshness of data answers: store, but revalidate before every reuse.
pub(crate) const DATA_CACHE_CONTROL: &str = "no-cache";
/// Freshness of documents that change with a release or slowly (landing page, conformance,
/// the OpenAPI description, the collection with its cached extent), in seconds.
pub(crate) const METADATA_MAX_AGE_SECS: u32 = 60;

/// How far the projection has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Checkpoint {
    /// Stream sequence of the last applied event; 0 before the first.
    pub(crate) seq: i64,
    /// When the projection last moved; `None` before the first event.
    pub(crate) at: Option<DateTime<Utc>>,
}

/// The checkpoint as one row, also as the first part of a page's statement.
pub(crate) const READ_CHECKPOINT: &str = "SELECT COALESCE(MAX(last_seq), 0) AS seq, \
     MAX(updated_at) AS at FROM projection_checkpoint WHERE projection = 'points'";

pub(crate) async fn read_checkpoint(executor: impl PgExecutor<'_>) -> sqlx::Result<Checkpoint> {
    sqlx::query_as(READ_CHECKPOINT).fetch_one(executor).await
}

/// A point read together with its `last_seq`, selected as `version_seq`.
pub(crate) struct Versioned<T> {
    pub(crate) seq: i64,
    pub(crate) row: T,
}

impl<'r, T: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Versioned<T> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            seq: row.try_get("version_seq")?,
            row: T::from_row(row)?,
        })
    }
}

/// The tag of a point at stream sequence `seq`, in command-api's form.
pub(crate) fn version_tag(seq: i64) -> String {
    format!("\"{seq}\"")
}

/// A strong entity tag for an answer that depends on `checkpoint` and on `request`: a
/// canonical description of the route, the parameters and the representation. The release
/// is part of the digest, so an upgrade that changes the output changes every tag.
pub(crate) fn entity_tag(checkpoint: i64, request: &str) -> String {
    let digest = super::points::fnv1a(
        [
            env!("CARGO_PKG_VERSION").as_bytes(),
            b"\0",
            request.as_bytes(),
        ]
        .concat()
        .as_slice(),
    );
    format!("\"{checkpoint}-{digest:016x}\"")
}

/// For a list request with `If-None-Match` while the page cache is not serving: the 304 when
/// the tag of `request` at the current checkpoint is still the client's. Reads the checkpoint
/// alone, so a current tag costs one indexed read, not the page; a request without the header
/// costs nothing.
pub(crate) async fn list_not_modified(
    pool: &sqlx::PgPool,
    headers: &HeaderMap,
    request: &str,
) -> sqlx::Result<Option<Response>> {
    if !headers.contains_key(IF_NONE_MATCH) {
        return Ok(None);
    }
    let checkpoint = read_checkpoint(pool).await?;
    Ok(not_modified(headers, &entity_tag(checkpoint.seq, request)))
}

/// The 304 answer when `If-None-Match` holds `tag` (or `*`), else `None`. Comparison is weak,
/// as RFC 9110 section 13.1.2 asks for `If-None-Match`.
pub(crate) fn not_modified(headers: &HeaderMap, tag: &str) -> Option<Response> {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == "*" || candidate == tag)
        .then(|| {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_validators(response.headers_mut(), tag);
            response
        })
}

/// Adds the tag, the freshness and `Vary: accept, accept-encoding` to a data answer: the same
/// URL answers in more than one media type, and compressed or not. A 304 carries the same
/// `Vary` as the 200 it stands for.
pub(crate) fn with_validators(mut response: Response, tag: &str) -> Response {
    set_validators(response.headers_mut(), tag);
    response
}

fn set_validators(headers: &mut HeaderMap, tag: &str) {
    if let Ok(value) = HeaderValue::from_str(tag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(DATA_CACHE_CONTROL));
    headers.insert(VARY, HeaderValue::from_static("accept, accept-encoding"));
}

/// `Cache-Control` of slowly changing documents.
pub(crate) fn metadata_cache_control() -> (axum::http::HeaderName, HeaderValue) {
    (
        CACHE_CONTROL,
        HeaderValue::from_str(&format!("max-age={METADATA_MAX_AGE_SECS}"))
            .expect("a max-age directive is a valid header value"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_none_match(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_tag_changes_with_the_checkpoint_and_with_the_request() {
        let tag = entity_tag(7, "items?limit=10");
        assert!(tag.starts_with("\"7-") && tag.ends_with('"'), "{tag}");
        assert_eq!(tag, entity_tag(7, "items?limit=10"));
        assert_ne!(tag, entity_tag(8, "items?limit=10"));
        assert_ne!(tag, entity_tag(7, "items?limit=11"));
    }

    #[test]
    fn if_none_match_matches_the_tag_its_weak_form_and_a_star() {
        let tag = entity_tag(3, "x");
        let opaque = tag.trim_matches('"');
        let rows = [
            (tag.clone(), true),
            (format!("W/{tag}"), true),
            (format!("\"other\", {tag}"), true),
            ("*".to_owned(), true),
            ("\"other\"".to_owned(), false),
            (format!("\"{opaque}-gzip\""), false),
            (opaque.to_owned(), false),
        ];
        for (header, matches) in rows {
            let answer = not_modified(&if_none_match(&header), &tag);
            assert_eq!(answer.is_some(), matches, "If-None-Match: {header}");
            if let Some(response) = answer {
                assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
                assert_eq!(response.headers()[ETAG], tag.as_str());
                assert_eq!(response.headers()[CACHE_CONTROL], DATA_CACHE_CONTROL);
            }
        }
        assert!(not_modified(&HeaderMap::new(), &tag).is_none());
    }

    #[test]
    fn a_point_is_tagged_as_command_api_tags_it() {
        assert_eq!(version_tag(42), "\"42\"");
    }
}
