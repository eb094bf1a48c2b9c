//! The `--healthcheck` probe the container images rely on, against the real services.

use std::time::Duration;

use geoledger_common::health::{ProbeError, probe_status};
use sqlx::postgres::PgPoolOptions;

use crate::helpers::spawn_app;

#[tokio::test]
async fn each_running_service_passes_the_probe_and_a_stopped_one_fails_it() {
    let mut app = spawn_app().await;
    for (name, addr) in [
        ("command-api", app.command.addr),
        ("query-api", app.query.addr),
        ("projector", app.projector.addr),
    ] {
        let probed = tokio::task::spawn_blocking(move || probe_status(addr))
            .await
            .unwrap();
        assert!(probed.is_ok(), "{name} should pass its probe: {probed:?}");
    }

    let addr = app.query.addr;
    app.query.stop().await;
    let probed = tokio::task::spawn_blocking(move || probe_status(addr))
        .await
        .unwrap();
    assert!(
        matches!(probed, Err(ProbeError::Io { .. })),
        "a stopped query-api should fail the probe: {probed:?}"
    );
}

/// HAProxy checks `/status` every 2 s and takes an instance out after a few failures. When
/// every connection of query-api's pool is busy with requests, the instance is slow, not
/// broken: its health check must still pass, on a connection of its own, while the requests
/// wait their turn.
#[tokio::test]
async fn status_passes_while_every_request_connection_is_taken() {
    let app = spawn_app().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&app.database_url)
        .await
        .expect("the test database accepts connections");
    let limits = query_api::Limits::new(query_api::DEFAULT_LIMIT, query_api::MAX_LIMIT)
        .expect("the default limits are consistent");
    let router = query_api::router(
        pool.clone(),
        limits,
        Duration::from_secs(10),
        Duration::from_millis(query_api::DEFAULT_PAGE_CACHE_TTL_MS),
        geoledger_common::auth::Authenticator::open(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    // What a burst of slow reads would do: hold the whole pool. query-api keeps one of its
    // connections for following the checkpoint, so the free ones are taken until none is.
    let mut busy = Vec::new();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await
    {
        busy.push(connection);
    }
    assert!(!busy.is_empty(), "the test holds at least one connection");
    let get = |path: &'static str| app.http.get(format!("http://{addr}{path}")).send();
    let status = get("/status").await.expect("query-api answers /status");
    assert_eq!(status.status(), 200, "{:?}", status.text().await);
    let read = get("/points?limit=1")
        .await
        .expect("query-api answers a read");
    assert_eq!(
        read.status(),
        503,
        "a read finds no free connection in the pool"
    );

    drop(busy);
    let read = get("/points?limit=1")
        .await
        .expect("query-api answers a read");
    assert_eq!(read.status(), 200, "the pool is free again");
    server.abort();
}
