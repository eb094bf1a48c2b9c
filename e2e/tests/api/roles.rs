//! Least privilege in PostgreSQL: what the services' own roles may and may not do, and that a
//! `projector rebuild` leaves them the same grants on the tables it swaps in.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{
    Accepted, PROJECTOR_LOGIN, PointDto, TestApp, as_login, fresh_database, loopback, spawn_app,
    start_projector_with,
};

/// SQLSTATE 42501 `insufficient_privilege`: what PostgreSQL answers to a statement the role
/// may not run, including DDL on a table it does not own.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

async fn connect(config: &geoledger_common::config::DatabaseConfig) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(config.url.expose())
        .await
        .expect("the service's login role may connect")
}

/// Runs each statement and asserts PostgreSQL refused it for want of privilege.
async fn assert_refused(pool: &PgPool, role: &str, statements: &[&str]) {
    for statement in statements {
        let error = sqlx::query(statement)
            .execute(pool)
            .await
            .expect_err(&format!("{role} ran `{statement}`"));
        let code = error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .map(std::borrow::Cow::into_owned);
        assert_eq!(
            code.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{role} running `{statement}`: {error}"
        );
    }
}

async fn create_point(app: &TestApp, name: &str) -> Accepted {
    app.create_point(&json!({"longitude": 24.94, "latitude": 60.17, "name": name}))
        .await
}

async fn list_points(app: &TestApp) -> Vec<PointDto> {
    let response = app
        .http
        .get(app.query.url("/points"))
        .send()
        .await
        .expect("query-api answers");
    assert_eq!(response.status(), 200, "GET /points as the reader role");
    response.json().await.expect("a list of points")
}

#[tokio::test]
async fn query_apis_role_reads_the_read_model_but_can_neither_write_nor_change_it() {
    let app = spawn_app().await;
    let accepted = create_point(&app, "Helsinki").await;
    app.wait_projected(accepted.sequence).await;
    let reader = connect(&app.reader_config(1)).await;

    let points: i64 = sqlx::query_scalar("SELECT count(*) FROM points")
        .fetch_one(&reader)
        .await
        .expect("the reader role reads points");
    assert_eq!(points, 1);
    sqlx::query("SELECT last_seq FROM projection_checkpoint")
        .fetch_all(&reader)
        .await
        .expect("the reader role reads the checkpoint");

    assert_refused(
        &reader,
        "the reader role",
        &[
            "INSERT INTO points (id, name, geom, version, last_seq, created_at, updated_at)
             VALUES (gen_random_uuid(), 'x', ST_MakePoint(0, 0)::geometry(Point, 4326), 1, 1,
                     now(), now())",
            "UPDATE points SET name = 'x'",
            "DELETE FROM points",
            "TRUNCATE points",
            "UPDATE projection_checkpoint SET last_seq = 0",
            "SELECT * FROM point_tombstones",
            "SELECT * FROM parked_points",
            "CREATE TABLE intruder (id int)",
            "DROP TABLE points",
            "ALTER TABLE points ADD COLUMN intruder int",
        ],
    )
    .await;
}

#[tokio::test]
async fn the_projectors_role_applies_events_but_cannot_change_the_schema() {
    // spawn_app runs the projector as its own role: the projection below is its work.
    let app = spawn_app().await;
    let accepted = create_point(&app, "Tampere").await;
    app.wait_projected(accepted.sequence).await;
    assert_eq!(list_points(&app).await.len(), 1);

    let projector = connect(&app.projector_config(1)).await;
    assert_refused(
        &projector,
        "the projector's role",
        &[
            "CREATE TABLE intruder (id int)",
            "DROP TABLE points",
            "ALTER TABLE points ADD COLUMN intruder int",
            "CREATE INDEX intruder ON points (name)",
            "TRUNCATE points",
            "DELETE FROM _sqlx_migrations",
        ],
    )
    .await;
}

#[tokio::test]
async fn after_a_rebuild_swaps_its_tables_in_the_services_roles_keep_their_grants() {
    let app = spawn_app().await;
    let first = create_point(&app, "Turku").await;
    app.wait_projected(first.sequence).await;

    let config = app.owner_projector_config(2);
    let args = projector::RebuildArgs {
        batch_size: 100,
        restart: false,
    };
    let report = projector::rebuild(&config, &args, std::future::pending())
        .await
        .expect("the rebuild runs to its swap");
    assert!(report.swapped);

    // Without the grants copied at the swap, the new `points` would answer "permission
    // denied" to query-api and to the projector alike.
    let names: Vec<String> = list_points(&app)
        .await
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["Turku"]);
    let second = create_point(&app, "Oulu").await;
    app.wait_projected(second.sequence).await;
    assert_eq!(
        list_points(&app).await.len(),
        2,
        "the projector wrote the new table"
    );
    let reader = connect(&app.reader_config(1)).await;
    assert_refused(
        &reader,
        "the reader role after the swap",
        &["DELETE FROM points"],
    )
    .await;
}

async fn table_exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("the catalogue is readable")
}

#[tokio::test]
async fn a_projector_whose_role_may_not_migrate_migrates_only_through_the_owners_url() {
    // spawn_app has made the cluster's roles; the second database is the one under test.
    let app = spawn_app().await;
    let (owner_url, owner) = fresh_database().await;
    let mut config = projector::Config::new(
        app.nats.clone(),
        as_login(&owner_url, PROJECTOR_LOGIN, 2),
        loopback(),
    );
    config.consumer = "roles-test".to_owned();

    let mut alone = start_projector_with(config.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !table_exists(&owner, "points").await,
        "the projector's own role created the schema"
    );
    alone.stop().await;

    config.migrate_database_url = Some(owner_url.parse().expect("any text is a URL to keep"));
    let mut with_owner = start_projector_with(config).await;
    let start = std::time::Instant::now();
    while !table_exists(&owner, "points").await {
        assert!(
            start.elapsed() < crate::helpers::PROJECTION_WAIT,
            "the projector never migrated through the owner's URL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let owner_name: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'points'")
            .fetch_one(&owner)
            .await
            .expect("the table's owner");
    assert_ne!(
        owner_name, PROJECTOR_LOGIN,
        "the tables belong to the owner"
    );
    with_owner.stop().await;
}
