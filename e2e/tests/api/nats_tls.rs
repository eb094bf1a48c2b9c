//! NATS over TLS with client certificates: the services' TLS settings reach the client.

use std::time::Duration;

use geoledger_common::config::NatsAuth;
use serde_json::json;

use crate::helpers::{Accepted, Options, OwnNats, PointDto, spawn_app_with};

#[tokio::test]
async fn over_tls_with_a_client_certificate_a_point_is_written_and_projected() {
    let (nats, users) = OwnNats::start_with_tls().await;
    let app = spawn_app_with(Options {
        nats_url: Some(nats.url()),
        nats_users: Some(users),
        ..Options::default()
    })
    .await;
    let accepted: Accepted = app
        .post_point(&json!({"longitude": 12.5683, "latitude": 55.6761, "name": "København"}))
        .await
        .json()
        .await
        .expect("an accepted body");
    app.wait_projected(accepted.sequence).await;
    let point: PointDto = app
        .get_point(&app.query.url(""), accepted.id)
        .await
        .json()
        .await
        .expect("the point");
    assert_eq!(point.name, "København");
}

#[tokio::test]
async fn the_tls_server_refuses_a_client_without_its_certificate_or_without_the_ca() {
    let (nats, _users) = OwnNats::start_with_tls().await;
    let dir = nats.dir();
    let refused = [
        (
            "no client certificate",
            NatsAuth {
                tls_ca_file: Some(dir.join("ca.pem")),
                ..NatsAuth::default()
            },
        ),
        (
            "the server's CA not trusted",
            NatsAuth {
                tls_cert_file: Some(dir.join("client.pem")),
                tls_key_file: Some(dir.join("client.key")),
                tls_required: true,
                ..NatsAuth::default()
            },
        ),
    ];
    for (case, auth) in refused {
        let connected = auth
            .connect_options()
            .await
            .expect("the options build")
            .connection_timeout(Duration::from_secs(2))
            .connect(nats.url())
            .await;
        assert!(connected.is_err(), "{case}: connected");
    }
}
