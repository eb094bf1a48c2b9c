//! What one client may send: bodies over the limit get 413, a client that stalls gets 408, a
//! flood from one address gets 429 with Retry-After, all as problem documents, whether
//! command-api or HAProxy answers. Error bodies never carry SQL or driver text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{
    OwnHaproxy, TestApp, loopback, spawn_app, start_command_api_with, wait_for_status,
};

/// A raw HTTP/1.1 exchange: sends `head` and `body`, keeps the connection open without
/// sending more, and returns whatever comes back before the server closes or `wait` passes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    stream.write_all(bytes).await.expect("the request is sent");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Status and parsed problem of a raw HTTP answer.
fn parse_answer(answer: &str, description: &str) -> (u16, Value) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{description}: no HTTP answer: {answer:?}"));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{description}: no body: {answer:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{description}: {head}"
    );
    let problem = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("{description}: not JSON ({e}): {body:?}"));
    (status, problem)
}

fn point_of_bytes(size: usize) -> String {
    format!(
        r#"{{"longitude":1,"latitude":1,"name":"{}"}}"#,
        "a".repeat(size)
    )
}

async fn with_haproxy(app: &TestApp, env: &[(&str, &str)]) -> OwnHaproxy {
    OwnHaproxy::start_with(
        [app.command.addr, app.command.addr],
        [app.query.addr, app.query.addr],
        env,
    )
    .await
}

#[tokio::test]
async fn a_body_over_64_kib_gets_a_413_problem_directly_and_through_haproxy() {
    let app = spawn_app().await;
    let haproxy = with_haproxy(&app, &[]).await;
    // Far over the limit: more than the sockets buffer, so a server that answers and closes
    // with the body unread resets the connection, and the answer could be lost on the way.
    let body = point_of_bytes(3 * 1024 * 1024);
    for (description, base) in [
        ("direct", app.command.url("")),
        ("through HAProxy", haproxy.url()),
    ] {
        for _ in 0..5 {
            let response = app
                .post_raw(&base, body.clone(), Some("application/json"))
                .await;
            assert_eq!(response.status(), 413, "{description}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{description}"
            );
            let problem: Value = response.json().await.expect("a JSON problem");
            assert_eq!(
                problem["type"], "urn:geoledger:problem:payload-too-large",
                "{description}"
            );
        }
    }
    assert_eq!(app.stream_messages().await, 0);
    haproxy.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_gets_a_408_problem_from_command_api_and_from_haproxy() {
    let app = spawn_app().await;
    let mut config = command_api::Config::new(app.nats.clone(), loopback());
    config.body_timeout_secs = 1;
    let command = start_command_api_with(config).await;
    wait_for_status(&app.http, &command.url("/status")).await;
    let haproxy = OwnHaproxy::start_with(
        [command.addr, command.addr],
        [app.query.addr, app.query.addr],
        &[("GEOLEDGER_HAPROXY_REQUEST_TIMEOUT", "1s")],
    )
    .await;
    let haproxy_addr: SocketAddr = format!("127.0.0.1:{}", haproxy.port).parse().unwrap();
    // Half a body, then nothing: the body timeout answers, long before the request timeout.
    let half_body = b"POST /point HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                      Content-Length: 100\r\n\r\n{\"longitude\":";
    for (description, addr) in [
        ("a stalled body, direct", command.addr),
        ("a stalled body, through HAProxy", haproxy_addr),
    ] {
        let answer = raw_exchange(addr, half_body, Duration::from_secs(8)).await;
        let (status, problem) = parse_answer(&answer, description);
        assert_eq!(status, 408, "{description}");
        assert_eq!(
            problem["type"], "urn:geoledger:problem:request-timeout",
            "{description}"
        );
    }
    // Headers that never end are HAProxy's to time out. HAProxy 2.6 answers this one in its
    // built-in HTML whatever the errorfile says (fixed in HAProxy 3.2), so only the status
    // is checked.
    let answer = raw_exchange(
        haproxy_addr,
        b"GET /points HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "unfinished headers: {answer:?}"
    );
    assert_eq!(app.stream_messages().await, 0);
    haproxy.stop().await;
}

/// A client sending from its own loopback address, so that its requests are counted apart
/// from the other tests' and the readiness probes'.
fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client bound to a loopback address")
}

#[tokio::test]
async fn a_flood_from_one_address_gets_429_with_retry_after_and_others_are_not_limited() {
    const LIMIT: usize = 20;
    let app = spawn_app().await;
    let haproxy = with_haproxy(&app, &[("GEOLEDGER_HAPROXY_RATE_LIMIT", "20")]).await;
    let url = format!("{}/points?limit=1", haproxy.url());

    let flooder = client_from(2);
    let mut statuses = Vec::new();
    for _ in 0..LIMIT + 5 {
        let response = flooder.get(&url).send().await.expect("HAProxy answers");
        let status = response.status().as_u16();
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "10");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let problem: Value = response.json().await.expect("a JSON problem");
            assert_eq!(problem["type"], "urn:geoledger:problem:rate-limited");
        }
        statuses.push(status);
    }
    assert!(
        statuses[..LIMIT].iter().all(|s| *s == 200),
        "the first {LIMIT} requests are within the limit: {statuses:?}"
    );
    assert!(
        statuses[LIMIT..].iter().all(|s| *s == 429),
        "every request past the limit is refused: {statuses:?}"
    );

    // Another client, below the limit, is untouched by the first one's flood.
    let neighbour = client_from(3);
    for _ in 0..LIMIT / 2 {
        let response = neighbour.get(&url).send().await.expect("HAProxy answers");
        assert_eq!(response.status(), 200, "a client below the limit");
    }
    haproxy.stop().await;
}

#[tokio::test]
async fn error_bodies_carry_no_sql_or_driver_text() {
    let app = spawn_app().await;
    let query = app.query.url("");
    // A column the read query needs is gone: a 500, whose cause only the log sees.
    sqlx::query("ALTER TABLE points RENAME COLUMN name TO name_renamed")
        .execute(&app.pool)
        .await
        .unwrap();
    let broken = app
        .http
        .get(format!("{query}/points"))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 500);
    let internal = broken.text().await.unwrap();
    // The table itself is gone: a 503 in fixed words.
    sqlx::query("DROP TABLE points CASCADE")
        .execute(&app.pool)
        .await
        .unwrap();
    let missing = app
        .http
        .get(format!("{query}/points"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 503);
    let unavailable = missing.text().await.unwrap();
    for body in [internal, unavailable] {
        let lower = body.to_ascii_lowercase();
        for leak in [
            "select",
            "from points",
            "name_renamed",
            "column",
            "relation",
            "sqlx",
            "postgres",
            "error returned",
            "sqlstate",
            "panicked",
            "src/",
        ] {
            assert!(!lower.contains(leak), "{leak:?} in an error body: {body}");
        }
    }
}
