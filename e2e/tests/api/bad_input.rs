//! Bad writes are refused with a problem document and never reach the stream.

use serde_json::Value;

use crate::helpers::{Accepted, spawn_app};

struct Case {
    description: &'static str,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    problem: &'static str,
    field: Option<&'static str>,
}

fn case(
    description: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    problem: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        description,
        body: body.into(),
        content_type: Some("application/json"),
        status,
        problem,
        field,
    }
}

fn name_of(chars: usize) -> String {
    // "ø" is two bytes in UTF-8, so a byte-counting check would get these wrong.
    "ø".repeat(chars)
}

#[expect(clippy::too_many_lines, reason = "a table of cases, one row each")]
fn bad_inputs() -> Vec<Case> {
    let mut cases = vec![
        case(
            "NaN as a string",
            r#"{"longitude":"NaN","latitude":1,"name":"x"}"#,
            400,
            "validation",
            Some("longitude"),
        ),
        case(
            "an overflowing literal",
            r#"{"longitude":1e999,"latitude":1,"name":"x"}"#,
            400,
            "validation",
            Some("longitude"),
        ),
        case(
            "longitude just past 180",
            r#"{"longitude":180.0000001,"latitude":1,"name":"x"}"#,
            400,
            "validation",
            Some("longitude"),
        ),
        case(
            "latitude below -90",
            r#"{"longitude":1,"latitude":-90.5,"name":"x"}"#,
            400,
            "validation",
            Some("latitude"),
        ),
        case(
            "an empty name",
            r#"{"longitude":1,"latitude":1,"name":""}"#,
            400,
            "validation",
            Some("name"),
        ),
        case(
            "a blank name",
            r#"{"longitude":1,"latitude":1,"name":"   "}"#,
            400,
            "validation",
            Some("name"),
        ),
        case(
            "a 101-character multibyte name",
            format!(
                r#"{{"longitude":1,"latitude":1,"name":"{}"}}"#,
                name_of(101)
            ),
            400,
            "validation",
            Some("name"),
        ),
        case(
            "a name with a control character",
            r#"{"longitude":1,"latitude":1,"name":"a\u0007b"}"#,
            400,
            "validation",
            Some("name"),
        ),
        case(
            "numbers sent as strings",
            r#"{"longitude":"2.35","latitude":"48.85","name":"Paris"}"#,
            400,
            "validation",
            Some("latitude"),
        ),
        case(
            "a missing field",
            r#"{"longitude":2.35,"name":"Paris"}"#,
            400,
            "validation",
            Some("latitude"),
        ),
        case(
            "an unknown field",
            r#"{"longitude":2.35,"latitude":48.85,"name":"Paris","lat":1}"#,
            400,
            "validation",
            Some("lat"),
        ),
        case(
            "a null coordinate",
            r#"{"longitude":null,"latitude":48.85,"name":"Paris"}"#,
            400,
            "validation",
            Some("longitude"),
        ),
        case("a missing body", "", 400, "malformed-body", None),
        case(
            "malformed JSON",
            r#"{"longitude": 2.35,"#,
            400,
            "malformed-body",
            None,
        ),
        case(
            "a member named twice, once through an escape",
            r#"{"longitude":2.35,"latitude":48.85,"name":"Paris","na\u006de":"Lyon"}"#,
            400,
            "malformed-body",
            None,
        ),
        case(
            "a name of zero-width characters",
            "{\"longitude\":1,\"latitude\":1,\"name\":\"\u{200b}\u{2060}\"}",
            400,
            "validation",
            Some("name"),
        ),
        case(
            "a name with a right-to-left override",
            "{\"longitude\":1,\"latitude\":1,\"name\":\"Paris\u{202e}sirap\"}",
            400,
            "validation",
            Some("name"),
        ),
        case(
            "a JSON array instead of an object",
            r#"[{"longitude":2.35,"latitude":48.85,"name":"Paris"}]"#,
            400,
            "malformed-body",
            None,
        ),
        case(
            "a 2 MB body",
            format!(
                r#"{{"longitude":1,"latitude":1,"name":"{}"}}"#,
                "a".repeat(2 * 1024 * 1024)
            ),
            413,
            "payload-too-large",
            None,
        ),
    ];
    cases.push(Case {
        content_type: Some("text/plain"),
        ..case(
            "a wrong content type",
            r#"{"longitude":1,"latitude":1,"name":"x"}"#,
            415,
            "unsupported-media-type",
            None,
        )
    });
    cases.push(Case {
        content_type: None,
        ..case(
            "no content type",
            r#"{"longitude":1,"latitude":1,"name":"x"}"#,
            415,
            "unsupported-media-type",
            None,
        )
    });
    cases
}

#[tokio::test]
async fn each_bad_input_gets_its_documented_4xx_and_nothing_is_published() {
    let app = spawn_app().await;
    // Something must exist in the stream first, so "nothing published" is measured against
    // a real stream rather than a missing one.
    let first = app
        .post_point(
            &serde_json::json!({"longitude": 19.93658, "latitude": 50.06143, "name": "Kraków"}),
        )
        .await;
    assert_eq!(first.status(), 202);
    let before = app.stream_messages().await;
    assert_eq!(before, 1);

    for case in bad_inputs() {
        let response = app
            .post_raw(&app.command.url(""), case.body, case.content_type)
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, case.status, "{}", case.description);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{}",
            case.description
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("urn:geoledger:problem:{}", case.problem),
            "{}",
            case.description
        );
        assert_eq!(problem["status"], case.status, "{}", case.description);
        if let Some(field) = case.field {
            let named = problem["errors"].as_array().unwrap().iter().any(|e| {
                e["field"] == field && e["reason"].as_str().is_some_and(|r| !r.is_empty())
            });
            assert!(
                named,
                "{}: the problem names {field}: {problem}",
                case.description
            );
        }
    }
    assert_eq!(
        app.stream_messages().await,
        before,
        "a refused write published an event"
    );
}

#[tokio::test]
async fn a_100_character_multibyte_name_is_valid_and_stored_whole() {
    let app = spawn_app().await;
    let name = name_of(100);
    let response = app
        .post_point(
            &serde_json::json!({"longitude": -21.89541, "latitude": 64.13548, "name": name}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Accepted = response.json().await.unwrap();
    app.wait_projected(accepted.sequence).await;
    let stored: String = sqlx::query_scalar("SELECT name FROM points WHERE id = $1")
        .bind(accepted.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, name);
}

/// A point's path segment that does not decode to text names no point: a 404 problem from
/// every route that takes one, not the framework's plain-text 400.
#[tokio::test]
async fn an_id_that_is_not_even_text_is_a_404_problem() {
    let app = spawn_app().await;
    let url = app.command.url("/points/%80");
    for request in [
        app.http
            .patch(&url)
            .header("content-type", "application/json")
            .body(r#"{"name":"x"}"#),
        app.http.delete(&url),
        app.http.get(format!("{url}/history")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(app.stream_messages().await, 0);
}
