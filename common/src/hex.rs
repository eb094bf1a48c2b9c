//! Hex as the services write it (token digests, list cursors, idempotency bucket keys):
//! lowercase, two digits a byte; read back from hex digits of either case and nothing else.

/// `bytes` as lowercase hex, two digits a byte.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

/// The bytes `text` spells, two hex digits (either case) a byte; `None` for an odd length or
/// any character that is not a hex digit. `u8::from_str_radix` alone would also take a sign,
/// as in `+f`.
#[must_use]
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

/// The value of one hex digit; a byte of a multi-byte character is none.
fn digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_lowercase_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode(&bytes);
        assert_eq!(text.len(), 512);
        assert!(
            text.starts_with("000102") && text.ends_with("fdfeff"),
            "{text}"
        );
        assert_eq!(decode(&text), Some(bytes));
        assert_eq!(decode("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(decode(""), Some(Vec::new()));
    }

    #[test]
    fn anything_but_pairs_of_hex_digits_is_refused() {
        for text in ["+f", "-1", "0", "abc", "zz", " f", "f ", "0x", "é", "éé"] {
            assert_eq!(decode(text), None, "{text:?}");
        }
    }
}
