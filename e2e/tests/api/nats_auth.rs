//! NATS with authorization, as the local stack runs it (infra/local/nats-auth.sh): each
//! service connects as its own user, and each user may do only what its service needs.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Accepted, NatsUsers, Options, OwnNats, PointDto, spawn_app_with};

/// Long enough for a JetStream request the server does deliver on a busy machine; a refused
/// one never gets an answer, so every refusal below costs this much.
const REFUSED_AFTER: Duration = Duration::from_secs(2);

async fn client_as(url: &str, auth: &geoledger_common::config::NatsAuth) -> async_nats::Client {
    auth.connect_options()
        .await
        .expect("the credentials are usable")
        .connect(url)
        .await
        .expect("the user may connect")
}

fn jetstream_of(client: async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(REFUSED_AFTER);
    js
}

async fn start() -> (OwnNats, NatsUsers, crate::helpers::TestApp) {
    let tag = Uuid::now_v7().simple().to_string();
    let (nats, users) = OwnNats::start_with_auth(&tag).await;
    let app = spawn_app_with(Options {
        nats_url: Some(nats.url()),
        tag: Some(tag),
        nats_users: Some(users.clone()),
        ..Options::default()
    })
    .await;
    (nats, users, app)
}

#[tokio::test]
async fn with_each_service_as_its_own_nats_user_a_point_is_written_changed_and_read() {
    let (nats, _users, app) = Box::pin(start()).await;

    let created = app
        .http
        .post(app.command.url("/point"))
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({"longitude": 18.0686, "latitude": 59.3293, "name": "Stockholm"}))
        .send()
        .await
        .expect("command-api answers");
    assert_eq!(created.status(), 202, "POST /point as the command-api user");
    let created: Accepted = created.json().await.expect("an accepted body");
    let renamed = app
        .http
        .patch(app.command.url(&format!("/points/{}", created.id)))
        .json(&json!({"name": "Stockholm, Sverige"}))
        .send()
        .await
        .expect("command-api answers");
    assert_eq!(
        renamed.status(),
        202,
        "PATCH reads the point's last event first"
    );
    let renamed: Accepted = renamed.json().await.expect("an accepted body");

    app.wait_projected(renamed.sequence).await;
    let point: PointDto = app
        .get_point(&app.query.url(""), created.id)
        .await
        .json()
        .await
        .expect("the point as query-api has it");
    assert_eq!(point.name, "Stockholm, Sverige");
    let history: Value = app
        .http
        .get(app.command.url(&format!("/points/{}/history", created.id)))
        .send()
        .await
        .expect("command-api answers")
        .json()
        .await
        .expect("a history");
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );

    // Anything refused along the way would have been retried into success or hidden in a
    // warning; the server's log says whether any permission was missing.
    let log = nats.log();
    assert!(
        !log.contains("Violation") && !log.contains("authentication error"),
        "a client needed a permission its user lacks:\n{log}"
    );
}

#[tokio::test]
async fn the_command_api_user_can_neither_consume_the_stream_nor_subscribe_to_it() {
    let (nats, users, app) = Box::pin(start()).await;
    let accepted: Accepted = app
        .post_point(&json!({"longitude": 10.7522, "latitude": 59.9139, "name": "Oslo"}))
        .await
        .json()
        .await
        .expect("an accepted body");
    assert!(accepted.sequence >= 1);

    let client = client_as(&nats.url(), &users.command).await;
    let js = jetstream_of(client.clone());
    let stream = js
        .get_stream_no_info(&app.nats.stream)
        .await
        .expect("a handle needs no request");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            name: Some("intruder".to_owned()),
            ..Default::default()
        })
        .await;
    assert!(consumer.is_err(), "the command-api user created a consumer");

    let mut events = client
        .subscribe(format!("{}.>", app.nats.subject_prefix))
        .await
        .expect("the client sends the subscription");
    client
        .flush()
        .await
        .expect("the subscription reached the server");
    app.post_point(&json!({"longitude": 24.7536, "latitude": 59.437, "name": "Tallinn"}))
        .await;
    let received = tokio::time::timeout(REFUSED_AFTER, futures_next(&mut events)).await;
    assert!(
        !matches!(received, Ok(Some(_))),
        "the command-api user received an event by subscribing"
    );
    let log = nats.log();
    assert!(
        log.contains("Subscription Violation"),
        "the server refused the subscription:\n{log}"
    );
}

#[tokio::test]
async fn the_projector_user_cannot_publish_events() {
    let (nats, users, app) = Box::pin(start()).await;
    let js = jetstream_of(client_as(&nats.url(), &users.projector).await);
    let event = json!({"forged": true}).to_string();
    let published = match js
        .publish(app.spec().subject_for(Uuid::now_v7()), event.into())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(published.is_err(), "the projector user stored an event");
    assert_eq!(app.stream_messages().await, 0, "nothing reached the stream");
    let log = nats.log();
    assert!(
        log.contains("Publish Violation"),
        "the server refused the publish:\n{log}"
    );
}

#[tokio::test]
async fn without_credentials_or_with_a_wrong_password_the_server_refuses_the_connection() {
    let (nats, users, _app) = Box::pin(start()).await;
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(REFUSED_AFTER)
        .connect(nats.url())
        .await;
    assert!(anonymous.is_err(), "a client without credentials connected");

    let mut wrong = users.command.clone();
    wrong.password = Some("not-the-password".parse().expect("infallible"));
    let refused = wrong
        .connect_options()
        .await
        .expect("the options build")
        .connection_timeout(REFUSED_AFTER)
        .connect(nats.url())
        .await;
    assert!(refused.is_err(), "a wrong password was accepted");
}

async fn futures_next(subscriber: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures::StreamExt as _;
    subscriber.next().await
}
