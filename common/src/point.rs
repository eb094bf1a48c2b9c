//! Validated point values. A handler never sees an unchecked coordinate or name: the only way
//! to get a [`Longitude`], [`Latitude`] or [`PointName`] is through their `TryFrom`/`parse`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Longest point name, in Unicode scalar values (the read model column is `VARCHAR(100)`, which
/// PostgreSQL counts in characters, not bytes).
pub const MAX_NAME_CHARS: usize = 100;

/// A longitude in degrees, WGS 84, within [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Longitude(f64);

/// A latitude in degrees, WGS 84, within [-90, 90].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Latitude(f64);

/// A point's name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters, no
/// bidirectional overrides, and something visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PointName(String);

/// Why a single value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidValue {
    /// The value is NaN or infinite (or a literal too large for an f64, such as `1e999`).
    #[error("must be a finite number")]
    NotFinite,
    /// The value lies outside the allowed closed interval.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Lower bound, inclusive.
        min: f64,
        /// Upper bound, inclusive.
        max: f64,
    },
    /// The name is empty once leading and trailing white space is removed.
    #[error("must not be empty or only white space")]
    Empty,
    /// The name has more characters than the column holds.
    #[error("must be at most {MAX_NAME_CHARS} characters, got {0}")]
    TooLong(usize),
    /// The name holds a control character (including line breaks and tabs).
    #[error("must not contain control characters")]
    ControlCharacter,
    /// The name holds a bidirectional embedding, override or isolate, which can make a name
    /// display as something else than it is (a map label reading backwards, a spoofed name).
    /// The plain marks U+200E and U+200F, which mixed-script names use, are allowed.
    #[error("must not contain bidirectional override, embedding or isolate characters")]
    BidiControl,
    /// The name is made only of characters that display as nothing (zero-width spaces,
    /// joiners, variation selectors and the like), so a map would show an empty label.
    #[error("must contain a visible character")]
    Invisible,
}

/// Formatting characters of bidirectional text that change how what follows is laid out.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's default-ignorable code points: drawn as nothing where a font has no glyph for
/// them. They are fine inside a name (U+200C and U+200D shape Persian and emoji), not alone.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

fn finite_in(value: f64, min: f64, max: f64) -> Result<f64, InvalidValue> {
    if !value.is_finite() {
        return Err(InvalidValue::NotFinite);
    }
    if !(min..=max).contains(&value) {
        return Err(InvalidValue::OutOfRange { min, max });
    }
    Ok(value)
}

impl TryFrom<f64> for Longitude {
    type Error = InvalidValue;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        finite_in(value, -180.0, 180.0).map(Self)
    }
}

impl TryFrom<f64> for Latitude {
    type Error = InvalidValue;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        finite_in(value, -90.0, 90.0).map(Self)
    }
}

impl Longitude {
    /// The value in degrees.
    #[must_use]
    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl Latitude {
    /// The value in degrees.
    #[must_use]
    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl PointName {
    /// Trims white space at both ends and checks the rest.
    ///
    /// # Errors
    /// [`InvalidValue::Empty`], [`InvalidValue::TooLong`], [`InvalidValue::ControlCharacter`],
    /// [`InvalidValue::BidiControl`] or [`InvalidValue::Invisible`].
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(InvalidValue::TooLong(chars));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidValue::ControlCharacter);
        }
        if trimmed.chars().any(is_bidi_control) {
            return Err(InvalidValue::BidiControl);
        }
        if trimmed.chars().all(is_invisible) {
            return Err(InvalidValue::Invisible);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Longitude {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Latitude {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for PointName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A validated `{"longitude", "latitude", "name"}` write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPoint {
    /// Where the point is, longitude.
    pub longitude: Longitude,
    /// Where the point is, latitude.
    pub latitude: Latitude,
    /// What the point is called.
    pub name: PointName,
    /// Client-supplied attributes, a JSON object; empty when the write had none.
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// The members of one JSON object, unparsed. A member named twice is refused: RFC 8259
/// leaves open which of the two counts, parsers differ (the first, the last, an error), so
/// two readers of one stored body could disagree on what was written.
#[derive(Debug, Default)]
pub struct Members<'a>(pub BTreeMap<String, &'a RawValue>);

/// The start of the error a repeated member raises, which [`describe_json_error`] passes on.
const DUPLICATE_MEMBER: &str = "a member is named twice";

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = Members<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = BTreeMap::new();
                // Keys arrive unescaped, so `"na\u006de"` and `"name"` are the same member.
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if members.contains_key(&key) {
                        return Err(A::Error::custom(format!("{DUPLICATE_MEMBER}: {key:?}")));
                    }
                    members.insert(key, value);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// One field's problem, as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON member the problem is about.
    pub field: String,
    /// What is wrong with it, for a person.
    pub reason: String,
}

/// Why a body could not become a [`NewPoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewPointError {
    /// The body is not JSON, or is JSON but not an object.
    #[error("the body must be a JSON object: {0}")]
    NotAnObject(String),
    /// The object parsed but one or more members are missing, unknown or invalid.
    #[error("{} field(s) are invalid", .0.len())]
    Fields(Vec<FieldError>),
}

impl NewPoint {
    /// Validates a JSON document of the form `{"longitude": 2.35, "latitude": 48.85, "name":
    /// "Paris"}` and reports every bad field at once.
    ///
    /// Numbers are read from their JSON text rather than through serde's number type, so that a
    /// literal that overflows an f64 (`1e999`) is reported as a bad longitude rather than as a
    /// JSON syntax error, and so that a string holding a number (`"2.35"`) is refused rather
    /// than coerced.
    ///
    /// # Errors
    /// [`NewPointError::NotAnObject`] when the document is not a JSON object,
    /// [`NewPointError::Fields`] when any member is missing, unknown or invalid.
    pub fn from_json(body: &[u8]) -> Result<Self, NewPointError> {
        let Members(members) = serde_json::from_slice(body)
            .map_err(|e| NewPointError::NotAnObject(describe_json_error(&e)))?;
        Self::from_members(&members)
    }

    /// Validates an already split JSON object (one item of a batch, say).
    ///
    /// # Errors
    /// As [`NewPoint::from_json`], without the object check.
    pub fn from_members(members: &BTreeMap<String, &RawValue>) -> Result<Self, NewPointError> {
        let mut errors = Vec::new();
        let mut push = |field: &str, reason: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                reason,
            });
        };

        let longitude = number_field(members, "longitude")
            .and_then(|v| Longitude::try_from(v).map_err(|e| e.to_string()))
            .map_err(|reason| push("longitude", reason))
            .ok();
        let latitude = number_field(members, "latitude")
            .and_then(|v| Latitude::try_from(v).map_err(|e| e.to_string()))
            .map_err(|reason| push("latitude", reason))
            .ok();
        let name = string_field(members, "name")
            .and_then(|v| PointName::parse(&v).map_err(|e| e.to_string()))
            .map_err(|reason| push("name", reason))
            .ok();
        // The top level of `properties` is checked for repeated members like the body; what
        // nests deeper is the client's own document and is stored as parsed (last one wins).
        let properties = match members.get("properties") {
            None => Some(serde_json::Map::new()),
            Some(raw) => serde_json::from_str::<Members<'_>>(raw.get())
                .map_err(|e| {
                    if is_duplicate_member(&e) {
                        e.to_string()
                    } else {
                        "must be a JSON object".to_owned()
                    }
                })
                .and_then(|_| {
                    serde_json::from_str(raw.get()).map_err(|_| "must be a JSON object".to_owned())
                })
                .and_then(|properties| match nul_in_properties(&properties) {
                    Some(reason) => Err(reason.to_owned()),
                    None => Ok(properties),
                })
                .map_err(|reason| push("properties", reason))
                .ok(),
        };
        for unknown in members
            .keys()
            .filter(|k| !["longitude", "latitude", "name", "properties"].contains(&k.as_str()))
        {
            push(unknown, "is not a known field".to_owned());
        }

        match (longitude, latitude, name, properties) {
            (Some(longitude), Some(latitude), Some(name), Some(properties))
                if errors.is_empty() =>
            {
                Ok(Self {
                    longitude,
                    latitude,
                    name,
                    properties,
                })
            }
            _ => Err(NewPointError::Fields(errors)),
        }
    }
}

/// A validated `PATCH`: a new name, new coordinates, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct PointPatch {
    /// The new name, when renaming.
    pub name: Option<PointName>,
    /// The new coordinates, when moving; longitude and latitude always change together.
    pub position: Option<(Longitude, Latitude)>,
}

impl PointPatch {
    /// Validates `{"name"?, "longitude"?, "latitude"?}`: at least one change, and the two
    /// coordinates together or not at all.
    ///
    /// # Errors
    /// As [`NewPoint::from_json`].
    pub fn from_json(body: &[u8]) -> Result<Self, NewPointError> {
        let Members(members) = serde_json::from_slice(body)
            .map_err(|e| NewPointError::NotAnObject(describe_json_error(&e)))?;
        let mut errors = Vec::new();
        let mut push = |field: &str, reason: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                reason,
            });
        };
        let name = members.contains_key("name").then(|| {
            string_field(&members, "name")
                .and_then(|v| PointName::parse(&v).map_err(|e| e.to_string()))
                .map_err(|reason| push("name", reason))
                .ok()
        });
        let longitude = members.contains_key("longitude").then(|| {
            number_field(&members, "longitude")
                .and_then(|v| Longitude::try_from(v).map_err(|e| e.to_string()))
                .map_err(|reason| push("longitude", reason))
                .ok()
        });
        let latitude = members.contains_key("latitude").then(|| {
            number_field(&members, "latitude")
                .and_then(|v| Latitude::try_from(v).map_err(|e| e.to_string()))
                .map_err(|reason| push("latitude", reason))
                .ok()
        });
        match (&longitude, &latitude) {
            (Some(_), None) => push("latitude", "is required when longitude is given".to_owned()),
            (None, Some(_)) => push("longitude", "is required when latitude is given".to_owned()),
            (None, None) if name.is_none() => push(
                "body",
                "must change at least one of name, or longitude with latitude".to_owned(),
            ),
            _ => {}
        }
        for unknown in members
            .keys()
            .filter(|k| !["longitude", "latitude", "name"].contains(&k.as_str()))
        {
            push(unknown, "is not a known field".to_owned());
        }
        if !errors.is_empty() {
            return Err(NewPointError::Fields(errors));
        }
        Ok(Self {
            name: name.flatten(),
            position: longitude.flatten().zip(latitude.flatten()),
        })
    }
}

/// Why `properties` cannot be stored, when a key or a string anywhere in it holds U+0000.
///
/// JSON can carry the character (`"\u0000"`) but PostgreSQL's `jsonb` cannot hold it, so a
/// creation with it would be an event the projector can never apply: refused here, at the
/// door, and by the event decoder for events already in a stream (they are dead-lettered).
#[must_use]
pub fn nul_in_properties(
    properties: &serde_json::Map<String, serde_json::Value>,
) -> Option<&'static str> {
    fn holds_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(holds_nul),
            serde_json::Value::Object(members) => members
                .iter()
                .any(|(key, value)| key.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    properties
        .iter()
        .any(|(key, value)| key.contains('\0') || holds_nul(value))
        .then_some("must not contain the character U+0000 in any key or string")
}

fn number_field(members: &BTreeMap<String, &RawValue>, field: &str) -> Result<f64, String> {
    let raw = members
        .get(field)
        .ok_or_else(|| "is required".to_owned())?
        .get();
    match raw.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => {}
        Some(b'"') => return Err("must be a JSON number, not a string".to_owned()),
        _ => return Err(format!("must be a JSON number, not {raw}")),
    }
    // The JSON grammar was already checked by the parser, so this only fails on overflow,
    // which Rust reports as an infinity rather than an error.
    let value: f64 = raw
        .parse()
        .map_err(|_| "is not a valid number".to_owned())?;
    if !value.is_finite() {
        return Err(InvalidValue::NotFinite.to_string());
    }
    // Underflow is the mirror of `1e999`: a literal such as `1e-400` rounds to exactly 0, a
    // different place from the one sent, where every other literal only loses digits past
    // a double's precision. Refused, so that nothing is stored that the client did not mean.
    if value == 0.0 && has_nonzero_digit(raw) {
        return Err("is too close to 0 for a double (below 5e-324 in size); send 0".to_owned());
    }
    Ok(value)
}

/// Whether a JSON number literal's digits before its exponent include one that is not 0.
fn has_nonzero_digit(literal: &str) -> bool {
    literal
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .bytes()
        .any(|b| matches!(b, b'1'..=b'9'))
}

fn string_field(members: &BTreeMap<String, &RawValue>, field: &str) -> Result<String, String> {
    let raw = members.get(field).ok_or_else(|| "is required".to_owned())?;
    serde_json::from_str::<String>(raw.get()).map_err(|_| "must be a JSON string".to_owned())
}

/// Whether `e` is [`Members`] refusing a member named twice.
#[must_use]
pub fn is_duplicate_member(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with(DUPLICATE_MEMBER)
}

fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof if e.line() == 1 && e.column() == 0 => "the body is empty".to_owned(),
        Category::Data if is_duplicate_member(e) => e.to_string(),
        Category::Data => "expected a JSON object".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<String> {
        match NewPoint::from_json(body.as_bytes()) {
            Err(NewPointError::Fields(f)) => f.into_iter().map(|f| f.field).collect(),
            other => panic!("expected field errors for {body}, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_point_keeps_its_exact_coordinates_and_a_trimmed_name() {
        let p = NewPoint::from_json(
            br#"{"longitude": 2.3522, "latitude": 48.8566, "name": "  Paris "}"#,
        )
        .unwrap();
        assert_eq!(p.longitude.degrees().to_bits(), 2.3522_f64.to_bits());
        assert_eq!(p.latitude.degrees().to_bits(), 48.8566_f64.to_bits());
        assert_eq!(p.name.as_str(), "Paris");
    }

    #[test]
    fn bounds_are_inclusive_and_the_next_double_is_refused() {
        for (lon, lat) in [(180.0, 90.0), (-180.0, -90.0)] {
            let body = format!(r#"{{"longitude": {lon}, "latitude": {lat}, "name": "edge"}}"#);
            assert!(NewPoint::from_json(body.as_bytes()).is_ok(), "{body}");
        }
        assert_eq!(
            fields(r#"{"longitude": 180.0000001, "latitude": 0, "name": "x"}"#),
            ["longitude"]
        );
        assert_eq!(
            fields(r#"{"longitude": 0, "latitude": -90.5, "name": "x"}"#),
            ["latitude"]
        );
    }

    #[test]
    fn overflowing_literals_and_strings_are_field_errors() {
        assert_eq!(
            fields(r#"{"longitude": 1e999, "latitude": 0, "name": "x"}"#),
            ["longitude"]
        );
        assert_eq!(
            fields(r#"{"longitude": "NaN", "latitude": "1.5", "name": "x"}"#),
            ["longitude", "latitude"]
        );
        assert_eq!(
            fields(r#"{"longitude": null, "latitude": true, "name": 5}"#).len(),
            3
        );
    }

    #[test]
    fn properties_holding_nul_anywhere_are_refused() {
        for properties in [
            r#"{"k": "a\u0000b"}"#,
            r#"{"a\u0000": 1}"#,
            r#"{"k": [{"deep": ["\u0000"]}]}"#,
        ] {
            let body = format!(
                r#"{{"longitude": 1, "latitude": 2, "name": "x", "properties": {properties}}}"#
            );
            assert_eq!(fields(&body), ["properties"], "{properties}");
        }
        let body = r#"{"longitude": 1, "latitude": 2, "name": "x", "properties": {"k": "\u0001"}}"#;
        assert!(NewPoint::from_json(body.as_bytes()).is_ok());
    }

    #[test]
    fn literals_that_underflow_to_zero_are_refused_but_zero_and_subnormals_are_kept() {
        for body in [
            r#"{"longitude": 1e-400, "latitude": 0, "name": "x"}"#,
            r#"{"longitude": -0.5e-330, "latitude": 0, "name": "x"}"#,
        ] {
            assert_eq!(fields(body), ["longitude"], "{body}");
        }
        for literal in ["0", "-0", "0.000e-400", "0e5", "5e-324", "-5e-324"] {
            let body = format!(r#"{{"longitude": {literal}, "latitude": 0, "name": "x"}}"#);
            let point = NewPoint::from_json(body.as_bytes()).expect(literal);
            let sent: f64 = literal.parse().unwrap();
            assert_eq!(
                point.longitude.degrees().to_bits(),
                sent.to_bits(),
                "{literal}"
            );
        }
    }

    #[test]
    fn names_are_counted_in_characters_not_bytes() {
        let ok = "é".repeat(100);
        assert!(PointName::parse(&ok).is_ok());
        assert_eq!(
            PointName::parse(&"é".repeat(101)),
            Err(InvalidValue::TooLong(101))
        );
        assert_eq!(PointName::parse(" \t "), Err(InvalidValue::Empty));
        assert_eq!(
            PointName::parse("a\u{0}b"),
            Err(InvalidValue::ControlCharacter)
        );
        assert_eq!(
            PointName::parse("Nuku‘alofa").unwrap().as_str(),
            "Nuku‘alofa"
        );
    }

    #[test]
    fn missing_and_unknown_members_are_named() {
        assert_eq!(
            fields(r#"{"lon": 1, "latitude": 0, "name": "x"}"#),
            ["longitude", "lon"]
        );
    }

    #[test]
    fn a_member_named_twice_is_refused_even_when_spelt_with_an_escape() {
        for body in [
            r#"{"longitude": 1, "latitude": 2, "name": "a", "name": "b"}"#,
            r#"{"longitude": 1, "latitude": 2, "name": "a", "na\u006de": "b"}"#,
        ] {
            let Err(NewPointError::NotAnObject(reason)) = NewPoint::from_json(body.as_bytes())
            else {
                panic!("{body} is refused as a whole");
            };
            assert!(
                reason.contains("named twice") && reason.contains("name"),
                "{reason}"
            );
        }
        assert_eq!(
            fields(
                r#"{"longitude": 1, "latitude": 2, "name": "x", "properties": {"a": 1, "a": 2}}"#
            ),
            ["properties"]
        );
        let patch = PointPatch::from_json(br#"{"name": "a", "name": "b"}"#);
        assert!(
            matches!(patch, Err(NewPointError::NotAnObject(_))),
            "{patch:?}"
        );
    }

    #[test]
    fn names_that_display_as_nothing_or_reorder_text_are_refused() {
        for invisible in [
            "\u{200b}",
            "\u{200b}\u{2060}\u{feff}",
            "\u{3164}",
            "\u{00ad} \u{200d}",
        ] {
            assert_eq!(
                PointName::parse(invisible),
                Err(InvalidValue::Invisible),
                "{invisible:?}"
            );
        }
        for spoof in ["Paris\u{202e}sirap", "\u{2067}Tel Aviv\u{2069}"] {
            assert_eq!(
                PointName::parse(spoof),
                Err(InvalidValue::BidiControl),
                "{spoof:?}"
            );
        }
        // Joiners and directional marks inside real text stay, as real names need them.
        for real in [
            "می\u{200c}خواهم",
            "Tel Aviv \u{200f}תל אביב",
            "👩\u{200d}🚒 station",
        ] {
            assert_eq!(PointName::parse(real).unwrap().as_str(), real);
        }
    }

    #[test]
    fn properties_are_optional_but_must_be_an_object() {
        let p = NewPoint::from_json(
            br#"{"longitude": 1, "latitude": 2, "name": "x", "properties": {"pop": 3}}"#,
        )
        .unwrap();
        assert_eq!(p.properties["pop"], 3);
        assert_eq!(
            fields(r#"{"longitude": 1, "latitude": 2, "name": "x", "properties": [1]}"#),
            ["properties"]
        );
    }

    #[test]
    fn a_patch_changes_something_and_moves_both_coordinates_at_once() {
        let rename = PointPatch::from_json(r#"{"name": "Kraków"}"#.as_bytes()).unwrap();
        assert_eq!(rename.name.unwrap().as_str(), "Kraków");
        assert!(rename.position.is_none());
        let moved = PointPatch::from_json(br#"{"longitude": 19.9, "latitude": 50.1}"#).unwrap();
        assert!(moved.name.is_none() && moved.position.is_some());
        for bad in [
            "{}",
            r#"{"longitude": 19.9}"#,
            r#"{"name": ""}"#,
            r#"{"nom": "x"}"#,
        ] {
            assert!(
                matches!(
                    PointPatch::from_json(bad.as_bytes()),
                    Err(NewPointError::Fields(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_objects_are_refused_before_fields_are_looked_at() {
        for body in ["", "[]", "[1,2]", "42", "{", "null"] {
            assert!(
                matches!(
                    NewPoint::from_json(body.as_bytes()),
                    Err(NewPointError::NotAnObject(_))
                ),
                "{body:?}"
            );
        }
    }
}
