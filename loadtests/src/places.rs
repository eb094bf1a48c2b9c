//! The places CSV (`name,longitude,latitude,country`), read exactly as written.

use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

/// One row of a places file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Place {
    /// The name, byte for byte as the file spells it.
    pub name: String,
    /// Decimal degrees, parsed from the file's text with `str::parse`. The file writes each
    /// coordinate in its shortest round-trip form, so serialising this `f64` gives that same
    /// text back and the API receives the number the file holds.
    pub longitude: f64,
    /// Decimal degrees, parsed like `longitude`.
    pub latitude: f64,
    /// ISO 3166-1 alpha-2 code. The API does not take it; it identifies a row in failure
    /// reports. Always text: `NA` is Namibia, never a missing value.
    pub country: String,
}

/// Reads at most `limit` places from a CSV file with a header line.
pub fn read_places_file(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Place>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_places(io::BufReader::new(file), limit)
        .with_context(|| format!("reading {}", path.display()))
}

/// Reads at most `limit` places from CSV text with a header line. A row that does not fit
/// (wrong field count, a coordinate that is not a number) fails the whole read, naming its
/// line, rather than being skipped and making the counts lie.
pub fn read_places(reader: impl io::Read, limit: Option<usize>) -> anyhow::Result<Vec<Place>> {
    let mut reader = csv::Reader::from_reader(reader);
    let mut places = Vec::new();
    for row in reader.deserialize() {
        if limit.is_some_and(|limit| places.len() >= limit) {
            break;
        }
        places.push(row?);
    }
    Ok(places)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name,longitude,latitude,country\n\
        Windhoek,17.08323,-22.55941,NA\n\
        \"Poselok \"\"Klyazminskoe\"\", a place\",37.5,56.1,RU\n\
        Kakaʻako,-157.85778,21.30028,US\n";

    #[test]
    fn namibia_stays_a_country_code_and_quoted_names_come_back_whole() {
        let places = read_places(SAMPLE.as_bytes(), None).unwrap();
        assert_eq!(places.len(), 3);
        assert_eq!(places[0].country, "NA");
        assert_eq!(places[1].name, "Poselok \"Klyazminskoe\", a place");
        assert_eq!(places[2].name, "Kakaʻako");
    }

    #[test]
    fn coordinates_serialise_back_to_the_text_of_the_file() {
        let places = read_places(SAMPLE.as_bytes(), None).unwrap();
        let json = serde_json::to_string(&[places[0].longitude, places[0].latitude]).unwrap();
        assert_eq!(json, "[17.08323,-22.55941]");
    }

    #[test]
    fn the_limit_caps_the_rows_read() {
        assert_eq!(read_places(SAMPLE.as_bytes(), Some(2)).unwrap().len(), 2);
    }

    #[test]
    fn a_row_with_a_non_numeric_coordinate_fails_the_read() {
        let bad = "name,longitude,latitude,country\nX,east,1.0,FR\n";
        assert!(read_places(bad.as_bytes(), None).is_err());
    }
}
