//! Writes need a bearer token once one is configured: an opaque token whose hash is listed,
//! or a JWT signed with the configured key and holding the write scope. Reads stay public,
//! and no token reaches a log line or an error body.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::RequestBuilder;
use serde_json::{Value, json};

use geoledger_common::auth::token_hash;
use geoledger_common::config::Secret;

use crate::capture;
use crate::helpers::{
    Accepted, OwnHaproxy, Running, TestApp, loopback, spawn_app, start_command_api_with,
    start_query_api_with, wait_for_status,
};

/// The opaque token the tests' command-api accepts; distinctive, so a leak is easy to find.
const TOKEN: &str = "e2e-opaque-token-7c1f0b9a2d4e";
const SECRET: &str = "e2e-hs256-secret-that-is-long-enough-0123";

fn paris() -> Value {
    json!({"longitude": 2.3522, "latitude": 48.8566, "name": "Paris"})
}

/// A command-api on the test's stream that wants a token: [`TOKEN`] or an HS256 JWT.
async fn guarded_command_api(app: &TestApp, tokens: &tempfile::TempDir) -> Running {
    let path = tokens.path().join("tokens.sha256");
    std::fs::write(&path, format!("# e2e\n{} e2e-client\n", token_hash(TOKEN)))
        .expect("the tokens file is written");
    let mut config = command_api::Config::new(app.nats.clone(), loopback());
    config.auth.auth_tokens_file = Some(path);
    config.auth.auth_jwt_secret = Some(SECRET.parse::<Secret>().expect("infallible"));
    let command = start_command_api_with(config).await;
    wait_for_status(&app.http, &command.url("/status")).await;
    command
}

fn jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("a non-empty secret is a key"),
    )
    .expect("the claims encode")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

fn post(app: &TestApp, base: &str) -> RequestBuilder {
    app.http.post(format!("{base}/point")).json(&paris())
}

/// Asserts a 401 or 403 problem document with a Bearer challenge, and returns its body.
async fn assert_refused(response: reqwest::Response, status: u16, description: &str) -> String {
    assert_eq!(response.status(), status, "{description}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{description}"
    );
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer "),
        "{description}: {challenge:?}"
    );
    let body = response.text().await.expect("a body");
    let problem: Value = serde_json::from_str(&body).expect("a JSON problem");
    assert_eq!(problem["status"], status, "{description}");
    body
}

#[tokio::test]
async fn writes_without_a_valid_token_are_refused_and_publish_nothing() {
    let app = spawn_app().await;
    let tokens = tempfile::tempdir().expect("a temporary directory");
    let command = guarded_command_api(&app, &tokens).await;
    let base = command.url("");
    let expired = jwt(
        &json!({"exp": 1_000_000_000, "scope": "points:write"}),
        SECRET,
    );
    let forged = jwt(
        &json!({"exp": in_an_hour(), "scope": "points:write"}),
        "a-different-secret-of-enough-length-456",
    );
    let read_only = jwt(
        &json!({"exp": in_an_hour(), "scope": "points:read"}),
        SECRET,
    );

    let cases: Vec<(&str, RequestBuilder, u16)> = vec![
        ("no token", post(&app, &base), 401),
        (
            "an unknown token",
            post(&app, &base).bearer_auth("not-the-token"),
            401,
        ),
        (
            "basic credentials",
            post(&app, &base).basic_auth("user", Some(TOKEN)),
            401,
        ),
        (
            "an expired JWT",
            post(&app, &base).bearer_auth(&expired),
            401,
        ),
        (
            "a JWT signed with another key",
            post(&app, &base).bearer_auth(&forged),
            401,
        ),
        (
            "a JWT without the write scope",
            post(&app, &base).bearer_auth(&read_only),
            403,
        ),
        (
            "a batch without a token",
            app.http
                .post(format!("{base}/points"))
                .json(&json!([paris()])),
            401,
        ),
        (
            "a rename without a token",
            app.http
                .patch(format!("{base}/points/{}", uuid::Uuid::now_v7()))
                .json(&json!({"name": "x"})),
            401,
        ),
        (
            "a delete without a token",
            app.http
                .delete(format!("{base}/points/{}", uuid::Uuid::now_v7())),
            401,
        ),
    ];
    for (description, request, status) in cases {
        let response = request.send().await.expect("command-api answers");
        let body = assert_refused(response, status, description).await;
        for secret in [TOKEN, SECRET, &expired, &forged, &read_only] {
            assert!(
                !body.contains(secret),
                "{description}: the body echoes a credential"
            );
        }
    }
    assert_eq!(
        app.stream_messages().await,
        0,
        "a refused write was published"
    );
}

#[tokio::test]
async fn a_valid_token_or_jwt_writes_and_reads_need_none() {
    let app = spawn_app().await;
    let tokens = tempfile::tempdir().expect("a temporary directory");
    let command = guarded_command_api(&app, &tokens).await;
    let base = command.url("");
    let writer = jwt(
        &json!({"sub": "e2e", "exp": in_an_hour(), "scope": "points:read points:write"}),
        SECRET,
    );

    let by_token = post(&app, &base).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(
        by_token.status(),
        202,
        "an opaque token whose hash is listed"
    );
    let by_jwt = post(&app, &base).bearer_auth(&writer).send().await.unwrap();
    assert_eq!(by_jwt.status(), 202, "a JWT with the write scope");
    let accepted: Accepted = by_jwt.json().await.unwrap();

    // Reads, on both services, and the health check need no token.
    let history = app
        .http
        .get(format!("{base}/points/{}/history", accepted.id))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200, "a history read without a token");
    assert_eq!(
        app.http
            .get(command.url("/status"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.wait_projected(accepted.sequence).await;
    let read = app.get_point(&app.query.url(""), accepted.id).await;
    assert_eq!(read.status(), 200, "a point read without a token");
}

#[tokio::test]
async fn no_token_reaches_a_log_line() {
    let app = spawn_app().await;
    let tokens = tempfile::tempdir().expect("a temporary directory");
    let command = guarded_command_api(&app, &tokens).await;
    let base = command.url("");
    let writer = jwt(
        &json!({"exp": in_an_hour(), "scope": "points:write"}),
        SECRET,
    );
    let wrong = "e2e-wrong-token-5d8a61c3";
    for token in [TOKEN, writer.as_str(), wrong] {
        post(&app, &base).bearer_auth(token).send().await.unwrap();
    }
    let lines = capture::lines();
    assert!(
        lines.iter().any(|l| l.contains("/point")),
        "the requests were logged at all"
    );
    for line in &lines {
        let lower = line.to_ascii_lowercase();
        for secret in [TOKEN, writer.as_str(), wrong, SECRET] {
            assert!(!line.contains(secret), "a credential was logged: {line}");
        }
        // The header as a logged field, or its value: every token here starts with e2e or,
        // being a JWT, with the base64 of `{"`.
        for header in [
            "\"authorization\"",
            "authorization:",
            "bearer e2e",
            "bearer eyj",
        ] {
            assert!(
                !lower.contains(header),
                "an Authorization header was logged: {line}"
            );
        }
    }
}

#[tokio::test]
async fn haproxy_passes_the_challenge_and_the_token_through() {
    let app = spawn_app().await;
    let tokens = tempfile::tempdir().expect("a temporary directory");
    let command = guarded_command_api(&app, &tokens).await;
    let haproxy = OwnHaproxy::start(
        [command.addr, command.addr],
        [app.query.addr, app.query.addr],
    )
    .await;
    let refused = post(&app, &haproxy.url()).send().await.unwrap();
    assert_refused(refused, 401, "no token, through HAProxy").await;
    let accepted = post(&app, &haproxy.url())
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "a valid token, through HAProxy");
    let read = app
        .http
        .get(format!("{}/points?limit=1", haproxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.status(),
        200,
        "a read without a token, through HAProxy"
    );
    haproxy.stop().await;
}

#[tokio::test]
async fn reads_need_a_token_when_configured_but_health_checks_never_do() {
    let app = spawn_app().await;
    let tokens = tempfile::tempdir().expect("a temporary directory");
    let path = tokens.path().join("tokens.sha256");
    std::fs::write(&path, token_hash(TOKEN)).expect("the tokens file is written");
    let mut config = query_api::Config::for_tests(&app.database_url, loopback());
    config.auth.auth_tokens_file = Some(path.clone());
    config.auth.auth_reads = true;
    let query = start_query_api_with(config).await;
    let mut config = command_api::Config::new(app.nats.clone(), loopback());
    config.auth.auth_tokens_file = Some(path);
    config.auth.auth_reads = true;
    let command = start_command_api_with(config).await;
    for service in [&query, &command] {
        wait_for_status(&app.http, &service.url("/status")).await;
    }

    let points = app.http.get(query.url("/points")).send().await.unwrap();
    assert_refused(points, 401, "a list without a token").await;
    let history = app
        .http
        .get(command.url(&format!("/points/{}/history", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    assert_refused(history, 401, "a history without a token").await;
    let points = app
        .http
        .get(query.url("/points"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(points.status(), 200, "a list with a token");
    let metrics = app.http.get(query.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200, "metrics without a token");
}
