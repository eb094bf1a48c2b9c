//! Media types the read side speaks, the choice among them by `Accept`, and the link object
//! its JSON documents carry.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use serde::Serialize;
use utoipa::ToSchema;

/// GeoJSON, RFC 7946 section 12.
pub(crate) const GEO_JSON: &str = "application/geo+json";
/// Plain JSON, for every document that is not GeoJSON or an OpenAPI description.
pub(crate) const JSON: &str = "application/json";
/// An OpenAPI 3.0 description in JSON, as OGC API Features Part 1 names it for `service-desc`.
pub(crate) const OPENAPI_JSON: &str = "application/vnd.oai.openapi+json;version=3.0";

/// The one of `offered` (best first) that `Accept` rates highest; a tie goes to the earlier
/// one. A missing header, a header that names none of them, and one that refuses all of them
/// (`q=0`) all get `offered[0]`: RFC 9110 section 12.5.1 lets a server disregard `Accept`
/// rather than answer 406, and a GIS client sent a document it can read is better served
/// than one sent an error.
///
/// Media type parameters other than `q` are ignored, so `application/vnd.oai.openapi+json`
/// with any `version` counts as the OpenAPI type.
pub(crate) fn choose(headers: &HeaderMap, offered: &[&'static str]) -> &'static str {
    let ranges: Vec<(String, f32)> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(parse_range)
        .collect();
    let mut best = (offered[0], 0.0_f32);
    for &candidate in offered {
        let quality = quality(&ranges, essence(candidate));
        if quality > best.1 {
            best = (candidate, quality);
        }
    }
    best.0
}

/// `type/subtype`, lowercased, and its weight.
fn parse_range(range: &str) -> Option<(String, f32)> {
    let mut parts = range.split(';');
    let media_range = parts.next()?.trim().to_ascii_lowercase();
    if media_range.is_empty() {
        return None;
    }
    let weight = parts
        .filter_map(|p| {
            let (key, value) = p.split_once('=')?;
            key.trim().eq_ignore_ascii_case("q").then(|| value.trim())
        })
        .find_map(|q| q.parse::<f32>().ok())
        .unwrap_or(1.0);
    Some((media_range, weight.clamp(0.0, 1.0)))
}

/// The weight of the most specific range that matches `media_type` (exact, then `type/*`,
/// then `*/*`), or 0 when none does.
fn quality(ranges: &[(String, f32)], media_type: &str) -> f32 {
    let main_type = media_type.split('/').next().unwrap_or_default();
    let specificity = |range: &str| {
        if range == media_type {
            Some(3)
        } else if range.strip_suffix("/*") == Some(main_type) {
            Some(2)
        } else if range == "*/*" {
            Some(1)
        } else {
            None
        }
    };
    ranges
        .iter()
        .filter_map(|(range, weight)| specificity(range).map(|s| (s, *weight)))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map_or(0.0, |(_, weight)| weight)
}

/// A media type without its parameters.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or(media_type).trim()
}

/// A typed link in a JSON document, as OGC API and the GeoJSON pages write them: absolute in
/// OGC documents, relative to the host in `/points` pages.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Link {
    /// Target.
    pub(crate) href: String,
    /// Relation type (RFC 8288 or OGC API).
    pub(crate) rel: &'static str,
    /// Media type of the target.
    #[serde(rename = "type")]
    pub(crate) media_type: &'static str,
    /// What the target is, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<&'static str>,
}

impl Link {
    pub(crate) fn new(
        href: impl Into<String>,
        rel: &'static str,
        media_type: &'static str,
    ) -> Self {
        Self {
            href: href.into(),
            rel,
            media_type,
            title: None,
        }
    }

    #[must_use]
    pub(crate) fn titled(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_first_offer_wins_ties_wildcards_and_silence() {
        let offered = [GEO_JSON, JSON];
        let rows = [
            ("application/geo+json, application/json", GEO_JSON),
            ("application/json, application/geo+json", GEO_JSON),
            ("*/*", GEO_JSON),
            ("application/*", GEO_JSON),
            ("text/html", GEO_JSON),
            ("application/geo+json;q=0, application/json;q=0", GEO_JSON),
            ("application/json", JSON),
            ("application/json;q=0.9, application/geo+json;q=0.5", JSON),
            ("application/geo+json;q=0, */*", JSON),
            ("APPLICATION/JSON", JSON),
            (
                "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8",
                JSON,
            ),
        ];
        for (value, expected) in rows {
            assert_eq!(
                choose(&accept(value), &offered),
                expected,
                "Accept: {value}"
            );
        }
        assert_eq!(choose(&HeaderMap::new(), &offered), GEO_JSON);
    }

    #[test]
    fn the_openapi_type_matches_whatever_version_is_asked_for() {
        let offered = [OPENAPI_JSON, JSON];
        for value in [
            "application/vnd.oai.openapi+json;version=3.0",
            "application/vnd.oai.openapi+json",
            "application/vnd.oai.openapi+json;version=3.0, application/json;q=0.9",
        ] {
            assert_eq!(choose(&accept(value), &offered), OPENAPI_JSON, "{value}");
        }
        assert_eq!(choose(&accept("application/json"), &offered), JSON);
    }
}
