//! A write travels through HAProxy, command-api, JetStream, the projector and PostGIS, and
//! comes back through HAProxy and query-api unchanged.

use serde_json::json;

use crate::helpers::{
    Accepted, OwnHaproxy, PointDto, spawn_app, start_command_api, start_query_api,
};

#[tokio::test]
async fn paris_written_through_haproxy_reads_back_bit_for_bit() {
    let app = spawn_app().await;
    let second_command = start_command_api(&app.nats).await;
    let second_query = start_query_api(&app.reader_config(2)).await;
    let haproxy = OwnHaproxy::start(
        [app.command.addr, second_command.addr],
        [app.query.addr, second_query.addr],
    )
    .await;

    let response = app
        .post_point_to(
            &haproxy.url(),
            &json!({"longitude": 2.3522, "latitude": 48.8566, "name": "Paris"}),
        )
        .await;
    let status = response.status();
    assert!(
        status == 202,
        "{status}: {}",
        response.text().await.unwrap_or_default()
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Accepted = response.json().await.unwrap();
    assert_eq!(location, format!("/points/{}", accepted.id));
    assert_eq!(accepted.version, 1);
    assert_eq!(accepted.id.get_version_num(), 7, "point ids are UUIDv7");

    app.wait_projected(accepted.sequence).await;
    let response = app
        .http
        .get(format!("{}{location}", haproxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let point: PointDto = response.json().await.unwrap();
    assert_eq!(point.id, accepted.id);
    assert_eq!(point.name, "Paris");
    assert_eq!(point.longitude.to_bits(), 2.3522_f64.to_bits());
    assert_eq!(point.latitude.to_bits(), 48.8566_f64.to_bits());

    let list: Vec<PointDto> = app
        .http
        .get(format!("{}/points", haproxy.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, vec![point]);
    haproxy.stop().await;
}

#[tokio::test]
async fn points_on_the_antimeridian_and_the_poles_round_trip() {
    let app = spawn_app().await;
    let edges = [
        (-180.0, 0.0, "antimeridian west"),
        (180.0, 0.0, "antimeridian east"),
        (0.0, 90.0, "north pole"),
        (0.0, -90.0, "south pole"),
        (-180.0, -90.0, "corner"),
        (
            179.999_999_999_999_97,
            89.999_999_999_999_99,
            "nearly the corner",
        ),
    ];
    let mut ids = Vec::new();
    let mut last = 0;
    for (longitude, latitude, name) in edges {
        let response = app
            .post_point(&json!({"longitude": longitude, "latitude": latitude, "name": name}))
            .await;
        assert_eq!(response.status(), 202, "{name}");
        let accepted: Accepted = response.json().await.unwrap();
        last = last.max(accepted.sequence);
        ids.push((accepted.id, longitude, latitude, name));
    }
    app.wait_projected(last).await;
    for (id, longitude, latitude, name) in ids {
        let point: PointDto = app
            .get_point(&app.query.url(""), id)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(point.name, name);
        assert_eq!(point.longitude.to_bits(), f64::to_bits(longitude), "{name}");
        assert_eq!(point.latitude.to_bits(), f64::to_bits(latitude), "{name}");
    }
}

#[tokio::test]
async fn an_unknown_point_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app
        .get_point(&app.query.url(""), uuid::Uuid::now_v7())
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
