//! Load generators and benchmarks for geoledger. The load generators drive a running
//! deployment through its public HTTP API only, exactly as a client would; the read benchmark
//! ([`bench`]) fills a database of its own and serves it with an embedded query-api. All of
//! them report what they measured and assert nothing about speed.

pub mod bench;
pub mod environment;
pub mod faults;
pub mod load;
pub mod places;
pub mod projection;
pub mod stats;
pub mod throughput;
pub mod write_latency;

use anyhow::Context as _;

/// The API token given on the command line or in the environment; an empty one, as the
/// scripts pass when the stack's writes are open, is no token.
#[must_use]
pub fn given_token(token: Option<String>) -> Option<String> {
    token.filter(|token| !token.is_empty())
}

/// `token` as an `Authorization: Bearer` value, marked sensitive so that it is never printed.
///
/// # Errors
///
/// When the token is not valid header text.
pub fn bearer(token: Option<&str>) -> anyhow::Result<Option<http::HeaderValue>> {
    token
        .map(|token| {
            let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
                .context("the API token is not valid header text")?;
            value.set_sensitive(true);
            Ok(value)
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_token_is_no_token() {
        assert_eq!(given_token(Some(String::new())), None);
        assert_eq!(given_token(None), None);
        assert_eq!(given_token(Some("t".to_owned())).as_deref(), Some("t"));
    }

    #[test]
    fn a_bearer_value_is_sensitive_and_a_bad_token_an_error() {
        let value = bearer(Some("abc")).unwrap().expect("a value for a token");
        assert_eq!(value, "Bearer abc");
        assert!(value.is_sensitive());
        assert!(bearer(None).unwrap().is_none());
        assert!(bearer(Some("a\nb")).is_err());
    }
}
