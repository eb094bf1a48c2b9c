//! The opaque `cursor` of a list of points (`GET /points`, the OGC items): where the previous
//! page ended, and a fingerprint of the filters it was issued for.
//!
//! A cursor is lowercase hex over a small binary record, version 1:
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | format version, `1` |
//! | 1 | order: `0` newest first, `1` nearest first |
//! | 8 | [`Filters::fingerprint`] of the request that issued it, big-endian |
//! | 16 | id of the last point of the page |
//! | 8 | nearest first only: that point's distance in metres, IEEE 754 bits, big-endian |
//!
//! The distance travels as its exact bits because the next page resumes strictly after
//! `(distance, id)`: a rounded distance could skip or repeat a point. Hex rather than base64
//! keeps the workspace free of an encoding dependency for 40-odd bytes; clients never look
//! inside, so the format may change with the version byte.

use geoledger_common::hex;
use uuid::Uuid;

use super::params::{Filters, Order};

const VERSION: u8 = 1;
const NEWEST: u8 = 0;
const NEAREST: u8 = 1;
const HEADER_LEN: usize = 2 + 8 + 16;

/// Where a page ends, in the order the request asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Position {
    /// Newest first: the next page holds the ids below this one.
    Newest { last_id: Uuid },
    /// Nearest first: the next page holds what sorts after `(distance, id)`.
    Nearest { last_distance: f64, last_id: Uuid },
}

impl Position {
    fn order(self) -> Order {
        match self {
            Self::Newest { .. } => Order::Newest,
            Self::Nearest { .. } => Order::Nearest,
        }
    }
}

/// A position tied to the filters of the request that reached it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cursor {
    fingerprint: u64,
    position: Position,
}

impl Cursor {
    pub(crate) fn new(filters: &Filters, position: Position) -> Self {
        Self {
            fingerprint: filters.fingerprint(),
            position,
        }
    }

    /// The text that goes into the next link.
    pub(crate) fn encode(&self) -> String {
        let (order, last_id, last_distance) = match self.position {
            Position::Newest { last_id } => (NEWEST, last_id, None),
            Position::Nearest {
                last_distance,
                last_id,
            } => (NEAREST, last_id, Some(last_distance)),
        };
        let mut bytes = Vec::with_capacity(HEADER_LEN + 8);
        bytes.extend_from_slice(&[VERSION, order]);
        bytes.extend_from_slice(&self.fingerprint.to_be_bytes());
        bytes.extend_from_slice(last_id.as_bytes());
        if let Some(distance) = last_distance {
            bytes.extend_from_slice(&distance.to_bits().to_be_bytes());
        }
        hex::encode(&bytes)
    }

    /// Reads a cursor back. Everything a client could have garbled or invented is refused
    /// here; whether it fits the request is [`Cursor::position_for`]'s question.
    pub(crate) fn decode(raw: &str) -> Result<Self, &'static str> {
        const GARBLED: &str = "is not a cursor this service issued";
        let bytes = hex::decode(raw).ok_or(GARBLED)?;
        let (header, rest) = bytes.split_at_checked(HEADER_LEN).ok_or(GARBLED)?;
        if header[0] != VERSION {
            return Err(GARBLED);
        }
        let fingerprint = u64::from_be_bytes(header[2..10].try_into().map_err(|_| GARBLED)?);
        let last_id = Uuid::from_slice(&header[10..]).map_err(|_| GARBLED)?;
        let position = match (header[1], rest.len()) {
            (NEWEST, 0) => Position::Newest { last_id },
            (NEAREST, 8) => {
                let bits = u64::from_be_bytes(rest.try_into().map_err(|_| GARBLED)?);
                let last_distance = f64::from_bits(bits);
                // `>= 0` is false for NaN too.
                if !(last_distance.is_finite() && last_distance >= 0.0) {
                    return Err(GARBLED);
                }
                Position::Nearest {
                    last_distance,
                    last_id,
                }
            }
            _ => return Err(GARBLED),
        };
        Ok(Self {
            fingerprint,
            position,
        })
    }

    /// The position, if the cursor was issued for exactly these filters. Resuming under other
    /// filters would neither skip nor repeat anything the client could rely on, so it is
    /// refused rather than guessed at.
    pub(crate) fn position_for(&self, filters: &Filters) -> Result<Position, &'static str> {
        if self.fingerprint == filters.fingerprint() && self.position.order() == filters.order() {
            Ok(self.position)
        } else {
            Err("was issued for another bbox, near, radius or datetime")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::tests::{bbox, near};
    use super::*;

    fn id() -> Uuid {
        Uuid::parse_str("0190a7a0-1234-7abc-8def-0123456789ab").unwrap()
    }

    #[test]
    fn a_cursor_reads_back_as_the_same_position_for_the_same_filters() {
        let cases = [
            (Filters::default(), Position::Newest { last_id: id() }),
            (
                Filters {
                    bbox: Some(bbox(-10.0, 35.0, 30.0, 60.0)),
                    near: None,
                    updated: None,
                },
                Position::Newest { last_id: id() },
            ),
            (
                Filters {
                    bbox: None,
                    near: Some(near(2.3522, 48.8566, 50_000.0)),
                    updated: None,
                },
                Position::Nearest {
                    last_distance: 404.488_304_24,
                    last_id: id(),
                },
            ),
        ];
        for (filters, position) in cases {
            let text = Cursor::new(&filters, position).encode();
            assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
            let decoded = Cursor::decode(&text).unwrap();
            assert_eq!(decoded.position_for(&filters), Ok(position));
        }
    }

    #[test]
    fn the_distance_survives_bit_for_bit() {
        let filters = Filters {
            bbox: None,
            near: Some(near(0.0, 0.0, 1.0)),
            updated: None,
        };
        let distance = 0.1 + 0.2;
        let text = Cursor::new(
            &filters,
            Position::Nearest {
                last_distance: distance,
                last_id: id(),
            },
        )
        .encode();
        let Ok(Position::Nearest { last_distance, .. }) =
            Cursor::decode(&text).unwrap().position_for(&filters)
        else {
            panic!("a nearest-first cursor reads back as one");
        };
        assert_eq!(last_distance.to_bits(), distance.to_bits());
    }

    #[test]
    fn a_cursor_for_other_filters_is_refused() {
        let issued = Filters {
            bbox: Some(bbox(-10.0, 35.0, 30.0, 60.0)),
            near: None,
            updated: None,
        };
        let cursor = Cursor::new(&issued, Position::Newest { last_id: id() });
        let others = [
            Filters::default(),
            Filters {
                bbox: Some(bbox(-10.0, 35.0, 30.0, 60.5)),
                near: None,
                updated: None,
            },
            Filters {
                bbox: Some(bbox(-10.0, 35.0, 30.0, 60.0)),
                near: Some(near(2.0, 48.0, 1000.0)),
                updated: None,
            },
        ];
        for filters in others {
            assert!(cursor.position_for(&filters).is_err(), "{filters:?}");
        }
    }

    #[test]
    fn garbled_cursors_are_refused() {
        let good = Cursor::new(&Filters::default(), Position::Newest { last_id: id() }).encode();
        let nearest = Cursor::new(
            &Filters::default(),
            Position::Nearest {
                last_distance: 1.0,
                last_id: id(),
            },
        )
        .encode();
        let nan = format!(
            "{}{:016x}",
            &nearest[..nearest.len() - 16],
            f64::NAN.to_bits()
        );
        let negative = format!(
            "{}{:016x}",
            &nearest[..nearest.len() - 16],
            (-1.0f64).to_bits()
        );
        let rows = [
            (String::new(), "empty"),
            ("zz".repeat(26), "not hex"),
            (good[1..].to_owned(), "odd length"),
            (good[..good.len() - 2].to_owned(), "truncated"),
            (format!("{good}00"), "trailing byte"),
            (format!("02{}", &good[2..]), "unknown version"),
            (format!("0107{}", &good[4..]), "unknown order"),
            (format!("+1{}", &good[2..]), "a sign where a digit belongs"),
            (nan, "NaN distance"),
            (negative, "negative distance"),
            ("é".repeat(26), "not ASCII"),
        ];
        for (raw, description) in rows {
            assert!(Cursor::decode(&raw).is_err(), "{description}: {raw:?}");
        }
    }
}
