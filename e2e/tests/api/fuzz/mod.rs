//! What the property tests over hostile input share: the runner, bounded by `PROPTEST_CASES`,
//! the generators of values that are valid, borderline or hostile, and the checks every
//! answer must pass (never a 5xx; every 4xx a problem document).
//!
//! `cargo fuzz` would need a nightly toolchain, which this project does not use; these
//! generators mix known-awkward literals with random text and bytes instead, and shrink a
//! failing request to a small one.

pub(crate) mod events;
pub(crate) mod reads;
pub(crate) mod writes;

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Cases per property when `PROPTEST_CASES` is not set: enough to reach every kind of input
/// each run, few enough that `make test` spends seconds here, not minutes.
const DEFAULT_CASES: u32 = 64;

/// Every generated request sent by any of the properties, shrinking steps included.
pub(crate) static TRIED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    TestRunner::new(Config {
        cases,
        // The services carry state from case to case, so a stored seed would not replay the
        // failure; the failing input is printed instead.
        failure_persistence: None,
        max_shrink_iters: 200,
        // A stuck projection fails every later case too; shrinking then only burns time.
        max_shrink_time: 60_000,
        ..Config::default()
    })
}

/// Runs `future` from inside a proptest case, which is synchronous, on the test's runtime.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    TRIED.fetch_add(1, Ordering::Relaxed);
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// An answer as the checks need it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("the body arrives").to_vec();
        Self {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn json(&self) -> Result<Value, TestCaseError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            TestCaseError::fail(format!(
                "a {} answer is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        })
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// No server error, and an error answer is an RFC 9457 problem with its own status.
    pub(crate) fn check(&self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.status < 500,
            "server error {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        if self.status >= 400 {
            prop_assert_eq!(
                self.content_type(),
                "application/problem+json",
                "a {} answer is not a problem document: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
            let problem = self.json()?;
            prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(self.status)));
            prop_assert!(
                problem["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:geoledger:problem:")),
                "a problem without our type: {problem}"
            );
            prop_assert!(problem["title"].is_string(), "a problem without a title");
        }
        Ok(())
    }
}

/// JSON number literals, and things in their place, for a coordinate that should lie within
/// `±limit`: ordinary values, the exact edges, the next doubles past them, underflow, overflow,
/// subnormals, non-JSON spellings and other types.
pub(crate) fn number_text(limit: f64) -> impl Strategy<Value = String> {
    let awkward = prop::sample::select(vec![
        "0",
        "-0",
        "0.0",
        "-0.0e0",
        "1e-400",
        "-1e-400",
        "0e-400",
        "5e-324",
        "-5e-324",
        "2.2250738585072014e-308",
        "1e999",
        "-1e999",
        "1E2",
        "1e+2",
        "0.1e1",
        "180.00000000000003",
        "90.00000000000001",
        "-180.00000000000003",
        "180.0000001",
        "1.7976931348623157e308",
        "12345678901234567890123456789",
        "00",
        "01",
        "+1",
        "NaN",
        "Infinity",
        "-Infinity",
        ".5",
        "5.",
        "0x10",
        "1_0",
        "\"2.35\"",
        "null",
        "true",
        "[]",
        "{}",
        "[1]",
        "\"\"",
    ]);
    prop_oneof![
        6 => (-limit..=limit).prop_map(|v| format!("{v}")),
        1 => Just(format!("{limit}")),
        1 => Just(format!("-{limit}")),
        1 => any::<f64>().prop_map(|v| format!("{v:e}")),
        3 => awkward.prop_map(str::to_owned),
        1 => (1_usize..400).prop_map(|n| format!("1.{}", "0".repeat(n) + "1")),
    ]
}

/// A JSON value standing where a name goes: ordinary and exotic text (any script, combining
/// marks, zero-width and bidi characters, controls, the length edges), escapes that are no
/// text (a lone surrogate, NUL) and other types.
pub(crate) fn name_text() -> impl Strategy<Value = String> {
    let awkward = prop::sample::select(vec![
        "\"\"".to_owned(),
        "\"   \"".to_owned(),
        "\"\\u200b\\u200b\"".to_owned(),
        "\"\\u202eabc\"".to_owned(),
        "\"a\\u0000b\"".to_owned(),
        "\"\\ud800\"".to_owned(),
        "\"\\udfff\\ud800\"".to_owned(),
        "\"\\t Zürich \\n\"".to_owned(),
        "\"e\\u0301\\u0301\\u0301\"".to_owned(),
        "\"👩‍👩‍👧‍👦\"".to_owned(),
        "\"\u{feff}x\"".to_owned(),
        serde_json::to_string(&"x".repeat(100)).expect("text serialises"),
        serde_json::to_string(&"x".repeat(101)).expect("text serialises"),
        serde_json::to_string(&"ø".repeat(100)).expect("text serialises"),
        serde_json::to_string(&"ø".repeat(101)).expect("text serialises"),
        serde_json::to_string(&"a".repeat(70_000)).expect("text serialises"),
        "1".to_owned(),
        "null".to_owned(),
        "[\"x\"]".to_owned(),
        "{\"name\":\"x\"}".to_owned(),
    ]);
    prop_oneof![
        5 => "[a-zA-Z][a-zA-Z ,.'-]{0,30}".prop_map(|s| json_string(&s)),
        3 => "\\PC{1,40}".prop_map(|s| json_string(&s)),
        2 => any::<String>().prop_map(|s| json_string(&s)),
        3 => awkward,
    ]
}

/// A JSON value for `properties`: none, an object of ordinary or awkward members, or no
/// object at all.
pub(crate) fn properties_text() -> impl Strategy<Value = Option<String>> {
    let member_value = prop_oneof![
        3 => any::<i64>().prop_map(|v| v.to_string()),
        2 => "\\PC{0,20}".prop_map(|s| json_string(&s)),
        1 => any::<String>().prop_map(|s| json_string(&s)),
        1 => prop::sample::select(vec![
            "\"\\u0000\"",
            "\"a\\u0000b\"",
            "\"\\ud800\"",
            "1e999",
            "1e-400",
            "123456789012345678901234567890",
            "-0",
            "null",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
            "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}",
            "{\"k\":1,\"k\":2}",
        ])
        .prop_map(str::to_owned),
    ];
    let key = prop_oneof![
        4 => "[a-z]{1,8}".prop_map(|s| json_string(&s)),
        1 => any::<String>().prop_map(|s| json_string(&s)),
        1 => prop::sample::select(vec!["\"\\u0000\"", "\"\"", "\"\\ud800\""])
            .prop_map(str::to_owned),
    ];
    prop_oneof![
        4 => Just(None),
        4 => prop::collection::vec((key, member_value), 0..4).prop_map(|members| {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            Some(format!("{{{}}}", body.join(",")))
        }),
        1 => prop::sample::select(vec!["[]", "null", "\"x\"", "{\"k\":1,\"k\":1}"])
            .prop_map(|s| Some(s.to_owned())),
    ]
}

/// Bodies that are not a JSON object of members at all: random bytes, deep nesting,
/// truncated or padded documents, other JSON types.
pub(crate) fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(vec![
        String::new(),
        " \n\t ".to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
        "\"point\"".to_owned(),
        "{".to_owned(),
        "{\"longitude\":1,".to_owned(),
        "{} {}".to_owned(),
        "{}garbage".to_owned(),
        "\u{feff}{\"longitude\":1,\"latitude\":1,\"name\":\"x\"}".to_owned(),
        "[".repeat(100_000),
        "{\"a\":".repeat(10_000),
        format!("{}{}", "[".repeat(200), "]".repeat(200)),
        format!("{{\"properties\":{}1{}}}", "[".repeat(129), "]".repeat(129)),
    ]);
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        2 => fixed.prop_map(String::into_bytes),
    ]
}

/// `text` as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Each byte of `raw` percent-encoded unless it is plainly safe in a URL, so that any text
/// (controls, invalid UTF-8 once decoded, `/`, `?`, `#`) can stand in a path or query.
pub(crate) fn percent_encode(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len() * 3);
    for &byte in raw {
        if byte.is_ascii_alphanumeric() || b"-._~,:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            write!(out, "%{byte:02X}").expect("a String takes any text");
        }
    }
    out
}

/// Raw bytes for a path segment or parameter value: random text, random bytes, and escapes
/// that do not decode (`%zz`, a lone `%`, an overlong UTF-8 sequence).
pub(crate) fn url_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>().prop_map(|s| percent_encode(s.as_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| percent_encode(&b)),
        1 => prop::sample::select(vec![
            "%zz", "%", "%C0%80", "%FF%FE", "%00", "..", "%2F", "+", "%2B",
        ])
        .prop_map(str::to_owned),
    ]
}
