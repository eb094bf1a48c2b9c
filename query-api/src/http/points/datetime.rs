//! The `datetime` filter of OGC API Features Part 1, matched against a point's `updated_at`:
//! an RFC 3339 date-time (an instant), or an interval `start/end` whose open end is `..` or
//! empty. Both ends of an interval are inside it.

use chrono::{DateTime, SecondsFormat, Timelike as _, Utc};

/// What `datetime` asks for, as a closed interval; an instant has equal ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpdatedWithin {
    /// Earliest `updated_at` to list; `None` when open.
    pub(crate) start: Option<DateTime<Utc>>,
    /// Latest `updated_at` to list; `None` when open.
    pub(crate) end: Option<DateTime<Utc>>,
}

const SHAPE: &str = "must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z, or an interval \
     start/end of two of them where either end may be .. (open)";

impl UpdatedWithin {
    /// Reads a `datetime` value. Offsets are kept as the instant they name, so
    /// `2026-01-01T01:00:00+01:00` and `2026-01-01T00:00:00Z` are the same filter.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let Some((start, end)) = raw.split_once('/') else {
            let instant = instant(raw)?;
            return Ok(Self {
                start: Some(instant),
                end: Some(instant),
            });
        };
        let bound = |text: &str| match text {
            "" | ".." => Ok(None),
            _ => instant(text).map(Some),
        };
        let interval = Self {
            start: bound(start)?,
            end: bound(end)?,
        };
        match (interval.start, interval.end) {
            (None, None) => Err(format!("{SHAPE}; an interval needs at least one end")),
            (Some(start), Some(end)) if start > end => {
                Err("is an interval whose start is after its end".to_owned())
            }
            _ => Ok(interval),
        }
    }

    /// The value of `datetime` that reads back as this filter, in UTC with as many fraction
    /// digits as the instant needs.
    pub(crate) fn to_param(self) -> String {
        let text = |end: Option<DateTime<Utc>>| {
            end.map_or_else(
                || "..".to_owned(),
                |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            )
        };
        match (self.start, self.end) {
            (Some(start), Some(end)) if start == end => text(Some(start)),
            (start, end) => format!("{}/{}", text(start), text(end)),
        }
    }

    /// The start as PostgreSQL compares it. `timestamptz` holds microseconds, and a driver
    /// would drop finer digits, lowering the bound; rounding up keeps exactly the rows at or
    /// after the instant asked for.
    pub(crate) fn start_micros(self) -> Option<DateTime<Utc>> {
        self.start.map(|t| {
            let spare = t.nanosecond() % 1_000;
            let whole = t.with_nanosecond(t.nanosecond() - spare).unwrap_or(t);
            if spare == 0 {
                whole
            } else {
                whole + chrono::TimeDelta::microseconds(1)
            }
        })
    }

    /// The end as PostgreSQL compares it: rounded down to whole microseconds, for the same
    /// reason as [`UpdatedWithin::start_micros`].
    pub(crate) fn end_micros(self) -> Option<DateTime<Utc>> {
        self.end.map(|t| {
            t.with_nanosecond(t.nanosecond() - t.nanosecond() % 1_000)
                .unwrap_or(t)
        })
    }

    /// The exact instants, for the cursor's fingerprint.
    pub(crate) fn fingerprint_bytes(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2 * 13);
        for end in [self.start, self.end] {
            match end {
                Some(t) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&t.timestamp().to_be_bytes());
                    bytes.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
                }
                None => bytes.push(0),
            }
        }
        bytes
    }
}

/// One RFC 3339 date-time. A date alone, or a time without an offset, is refused: neither
/// names an instant.
fn instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SHAPE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_instant_is_an_interval_with_equal_ends() {
        let parsed = UpdatedWithin::parse("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parsed.start, Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(parsed.end, parsed.start);
        assert_eq!(
            UpdatedWithin::parse("2026-01-01T01:00:00+01:00").unwrap(),
            parsed
        );
    }

    #[test]
    fn intervals_may_be_open_at_either_end() {
        let rows = [
            ("2026-01-01T00:00:00Z/2026-02-01T00:00:00Z", true, true),
            ("../2026-02-01T00:00:00Z", false, true),
            ("/2026-02-01T00:00:00Z", false, true),
            ("2026-01-01T00:00:00Z/..", true, false),
            ("2026-01-01T00:00:00Z/", true, false),
            ("2026-01-01T00:00:00Z/2026-01-01T00:00:00Z", true, true),
        ];
        for (raw, has_start, has_end) in rows {
            let parsed = UpdatedWithin::parse(raw).unwrap();
            assert_eq!(
                (parsed.start.is_some(), parsed.end.is_some()),
                (has_start, has_end),
                "{raw}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let rows = [
            ("", "empty"),
            ("yesterday", "not a date"),
            ("2026-01-01", "a date without a time"),
            ("2026-01-01T00:00:00", "no offset"),
            ("2026-13-01T00:00:00Z", "month 13"),
            ("2026-01-01T00:00:00Z/x", "a bad end"),
            ("../..", "both ends open"),
            ("/", "both ends empty"),
            (
                "2026-02-01T00:00:00Z/2026-01-01T00:00:00Z",
                "start after end",
            ),
            (
                "2026-01-01T00:00:00Z/2026-02-01T00:00:00Z/2026-03-01T00:00:00Z",
                "three instants",
            ),
            (
                "2026-01-01T00:00:00 01:00",
                "an offset whose + became a space",
            ),
        ];
        for (raw, description) in rows {
            assert!(UpdatedWithin::parse(raw).is_err(), "{description}: {raw:?}");
        }
    }

    #[test]
    fn the_parameter_reads_back_as_the_same_filter() {
        for raw in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123456789+02:00",
            "../2026-02-01T00:00:00.5Z",
            "2026-01-01T00:00:00Z/..",
            "2026-01-01T00:00:00Z/2026-02-01T00:00:00Z",
        ] {
            let parsed = UpdatedWithin::parse(raw).unwrap();
            let text = parsed.to_param();
            assert!(!text.contains('+'), "no + to be mangled in a URL: {text}");
            assert_eq!(
                UpdatedWithin::parse(&text).unwrap(),
                parsed,
                "{raw} -> {text}"
            );
        }
    }

    #[test]
    fn bounds_round_inwards_to_whole_microseconds() {
        let parsed =
            UpdatedWithin::parse("2026-01-01T00:00:00.0000005Z/2026-01-01T00:00:01.0000009Z")
                .unwrap();
        assert_eq!(
            parsed.start_micros(),
            Some(at("2026-01-01T00:00:00.000001Z"))
        );
        assert_eq!(parsed.end_micros(), Some(at("2026-01-01T00:00:01Z")));
        let whole = UpdatedWithin::parse("2026-01-01T00:00:00.000002Z").unwrap();
        assert_eq!(whole.start_micros(), whole.start);
        assert_eq!(whole.end_micros(), whole.end);
    }
}
