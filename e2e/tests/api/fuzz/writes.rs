//! Generated writes against command-api, and what must hold after each: no 5xx, every error a
//! problem document, a refused write publishes nothing, and the projection is exactly what the
//! accepted writes say, checked against a model kept by the test.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use uuid::Uuid;

use geoledger_common::point::{NewPoint, PointPatch};

use super::{
    Answer, block_on, hostile_body, name_text, number_text, properties_text, runner, url_text,
};
use crate::helpers::{TestApp, spawn_app};

/// One point's members, each already JSON text (or not JSON at all), rendered as a body of
/// `POST /point`, an item of a batch or a GeoJSON feature.
#[derive(Debug, Clone)]
struct Members {
    longitude: Option<String>,
    latitude: Option<String>,
    name: Option<String>,
    properties: Option<String>,
    /// A member no point has.
    unknown: Option<String>,
    /// A member given a second time, spelt with an escape.
    repeated: Option<String>,
}

impl Members {
    fn object(&self) -> String {
        let mut members = Vec::new();
        let mut push = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                members.push(format!("\"{key}\":{value}"));
            }
        };
        push("longitude", &self.longitude);
        push("latitude", &self.latitude);
        push("name", &self.name);
        push("properties", &self.properties);
        push("lat", &self.unknown);
        push("na\\u006de", &self.repeated);
        format!("{{{}}}", members.join(","))
    }

    /// The same point as a GeoJSON feature; `None` for members a feature cannot hold, so
    /// that the test keeps a flat body that means the same.
    fn feature(&self) -> Option<String> {
        if self.unknown.is_some() || self.repeated.is_some() {
            return None;
        }
        let properties = match (&self.name, &self.properties) {
            (None, None) => "{}".to_owned(),
            (Some(name), None) => format!("{{\"name\":{name}}}"),
            (name, Some(properties)) => {
                let inner = properties.strip_prefix('{')?.strip_suffix('}')?;
                if inner.contains("\"name\"") {
                    return None;
                }
                match name {
                    None => properties.clone(),
                    Some(name) if inner.is_empty() => format!("{{\"name\":{name}}}"),
                    Some(name) => format!("{{\"name\":{name},{inner}}}"),
                }
            }
        };
        Some(format!(
            "{{\"type\":\"Feature\",\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{},{}]}},\
             \"properties\":{properties}}}",
            self.longitude.as_deref()?,
            self.latitude.as_deref()?
        ))
    }
}

fn members() -> impl Strategy<Value = Members> {
    (
        prop::option::weighted(0.95, number_text(180.0)),
        prop::option::weighted(0.95, number_text(90.0)),
        prop::option::weighted(0.95, name_text()),
        properties_text(),
        prop::option::weighted(0.03, Just("1".to_owned())),
        prop::option::weighted(0.03, name_text()),
    )
        .prop_map(
            |(longitude, latitude, name, properties, unknown, repeated)| Members {
                longitude,
                latitude,
                name,
                properties,
                unknown,
                repeated,
            },
        )
}

/// What a `PATCH` body holds.
fn patch_members() -> impl Strategy<Value = Members> {
    (
        prop::option::of(number_text(180.0)),
        prop::option::of(number_text(90.0)),
        prop::option::of(name_text()),
        prop::option::weighted(0.05, properties_text().prop_map(Option::unwrap_or_default)),
        prop::option::weighted(0.03, Just("1".to_owned())),
    )
        .prop_map(|(longitude, latitude, name, properties, unknown)| Members {
            longitude,
            latitude,
            name,
            properties: properties.filter(|p| !p.is_empty()),
            unknown,
            repeated: None,
        })
}

/// A body: mostly a JSON object of members, sometimes anything at all.
#[derive(Debug, Clone)]
enum Body {
    Members(Members),
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Members(m) => m.object().into_bytes(),
            Self::Raw(bytes) => bytes.clone(),
        }
    }
}

fn body(members: impl Strategy<Value = Members>) -> impl Strategy<Value = Body> {
    prop_oneof![
        6 => members.prop_map(Body::Members),
        1 => hostile_body().prop_map(Body::Raw),
    ]
}

/// A batch: items as a JSON array or as features, or a body that is neither.
#[derive(Debug, Clone)]
enum Batch {
    Array(Vec<Body>),
    Features(Vec<Members>),
    Raw(Vec<u8>),
}

impl Batch {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Array(items) => {
                // A raw item goes in as a string, so that it stays one item (refused) and the
                // answer lines up with the items; junk that breaks the array is `Batch::Raw`.
                let items: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        Body::Members(m) => m.object(),
                        Body::Raw(bytes) => super::json_string(&String::from_utf8_lossy(bytes)),
                    })
                    .collect();
                format!("[{}]", items.join(",")).into_bytes()
            }
            Self::Features(items) => {
                let features: Vec<String> = items
                    .iter()
                    .map(|m| {
                        m.feature()
                            .unwrap_or_else(|| "{\"type\":\"Feature\"}".to_owned())
                    })
                    .collect();
                format!(
                    "{{\"type\":\"FeatureCollection\",\"features\":[{}]}}",
                    features.join(",")
                )
                .into_bytes()
            }
            Self::Raw(bytes) => bytes.clone(),
        }
    }

    /// Each item as the `POST /point` body that means the same, when there is one.
    fn flat_items(&self) -> Vec<Option<Vec<u8>>> {
        match self {
            Self::Array(items) => items
                .iter()
                .map(|item| match item {
                    Body::Members(m) => Some(m.object().into_bytes()),
                    Body::Raw(_) => None,
                })
                .collect(),
            Self::Features(items) => items
                .iter()
                .map(|m| m.feature().map(|_| m.object().into_bytes()))
                .collect(),
            Self::Raw(_) => Vec::new(),
        }
    }
}

fn batch() -> impl Strategy<Value = Batch> {
    prop_oneof![
        4 => prop::collection::vec(body(members()), 0..5).prop_map(Batch::Array),
        3 => prop::collection::vec(members(), 0..5).prop_map(Batch::Features),
        1 => prop_oneof![
            hostile_body(),
            Just(format!("[{}]", vec!["{}"; 1001].join(",")).into_bytes()),
            Just(b"{\"type\":\"FeatureCollection\"}".to_vec()),
            Just(b"{\"type\":\"Feature\",\"features\":[]}".to_vec()),
            Just(b"{\"type\":\"FeatureCollection\",\"features\":[1,null,[]]}".to_vec()),
        ]
        .prop_map(Batch::Raw),
    ]
}

/// Which point a change names.
#[derive(Debug, Clone)]
enum Target {
    /// The n-th point the test created (modulo how many there are).
    Known(usize),
    /// A UUID nobody used.
    Unknown,
    /// Any path segment at all.
    Raw(String),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<usize>().prop_map(Target::Known),
        1 => Just(Target::Unknown),
        2 => url_text().prop_map(Target::Raw),
    ]
}

/// The `If-Match` a change sends.
#[derive(Debug, Clone)]
enum IfMatch {
    None,
    /// The tag of the point's current version, as the model knows it.
    Current,
    Fixed(String),
}

fn if_match() -> impl Strategy<Value = IfMatch> {
    prop_oneof![
        6 => Just(IfMatch::None),
        2 => Just(IfMatch::Current),
        2 => prop::sample::select(vec![
            "*", "\"1\"", "\"0\"", "W/\"1\"", "1", "\"-1\"", "\"99999999999999999999\"", "",
        ])
        .prop_map(|s| IfMatch::Fixed(s.to_owned())),
    ]
}

/// An `Idempotency-Key`: none, one of a few reused across requests and routes (so that
/// replays and reuse with another body happen), or an invalid one.
fn idempotency_key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => Just(None),
        3 => prop::sample::select(vec!["fuzz-a", "fuzz-b", "fuzz-c"])
            .prop_map(|k| Some(k.as_bytes().to_vec())),
        1 => prop_oneof![
            Just(Vec::new()),
            Just(b"has space".to_vec()),
            Just(vec![b'k'; 256]),
            Just("clé".as_bytes().to_vec()),
            Just(b"tab\there".to_vec()),
        ]
        .prop_map(Some),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        12 => Just(Some("application/json")),
        1 => Just(Some("application/geo+json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/json; charset=utf-16")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(None),
    ]
}

#[derive(Debug, Clone)]
enum Write {
    Create {
        body: Body,
        content_type: Option<&'static str>,
        key: Option<Vec<u8>>,
    },
    Batch {
        batch: Batch,
        content_type: Option<&'static str>,
        key: Option<Vec<u8>>,
    },
    Patch {
        target: Target,
        body: Body,
        content_type: Option<&'static str>,
        key: Option<Vec<u8>>,
        if_match: IfMatch,
    },
    Delete {
        target: Target,
        key: Option<Vec<u8>>,
        if_match: IfMatch,
    },
    History {
        target: Target,
    },
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        8 => (body(members()), content_type(), idempotency_key())
            .prop_map(|(body, content_type, key)| Write::Create { body, content_type, key }),
        3 => (batch(), content_type(), idempotency_key())
            .prop_map(|(batch, content_type, key)| Write::Batch { batch, content_type, key }),
        5 => (target(), body(patch_members()), content_type(), idempotency_key(), if_match())
            .prop_map(|(target, body, content_type, key, if_match)| Write::Patch {
                target, body, content_type, key, if_match,
            }),
        2 => (target(), idempotency_key(), if_match())
            .prop_map(|(target, key, if_match)| Write::Delete { target, key, if_match }),
        1 => target().prop_map(|target| Write::History { target }),
    ]
}

/// A live point as the model expects it in the projection.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    name: String,
    longitude: u64,
    latitude: u64,
}

impl Expected {
    fn of(point: &NewPoint) -> Self {
        Self {
            name: point.name.as_str().to_owned(),
            longitude: point.longitude.degrees().to_bits(),
            latitude: point.latitude.degrees().to_bits(),
        }
    }
}

/// What the test knows the services hold.
#[derive(Debug, Default)]
struct Model {
    /// Every point created, in order, with what its creation said.
    created: Vec<(Uuid, Expected)>,
    /// Each point's current state and tag; `None` once deleted.
    current: BTreeMap<Uuid, Option<(Expected, u64)>>,
}

impl Model {
    fn created_as(&self, id: Uuid) -> Option<&Expected> {
        self.created.iter().find(|(i, _)| *i == id).map(|(_, e)| e)
    }

    fn add(&mut self, id: Uuid, expected: Expected, sequence: u64) {
        self.created.push((id, expected.clone()));
        self.current.insert(id, Some((expected, sequence)));
    }
}

struct Context<'a> {
    app: &'a TestApp,
    model: std::cell::RefCell<Model>,
}

impl Context<'_> {
    /// The path segment a target stands for, and the point it names when it names one.
    fn resolve(&self, target: &Target) -> (String, Option<Uuid>) {
        let model = self.model.borrow();
        match target {
            Target::Known(n) if !model.created.is_empty() => {
                let id = model.created[n % model.created.len()].0;
                (id.to_string(), Some(id))
            }
            Target::Known(_) | Target::Unknown => (Uuid::now_v7().to_string(), None),
            Target::Raw(raw) => (raw.clone(), Uuid::parse_str(raw).ok()),
        }
    }

    fn if_match_value(&self, if_match: &IfMatch, id: Option<Uuid>) -> Option<Vec<u8>> {
        match if_match {
            IfMatch::None => None,
            IfMatch::Fixed(text) => Some(text.as_bytes().to_vec()),
            IfMatch::Current => {
                let model = self.model.borrow();
                let tag = id
                    .and_then(|id| model.current.get(&id).cloned().flatten())
                    .map_or(1, |(_, tag)| tag);
                Some(format!("\"{tag}\"").into_bytes())
            }
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, Option<Vec<u8>>)],
    ) -> Answer {
        let mut request = self.app.http.request(method, self.app.command.url(path));
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            if let Some(value) = value {
                let value = reqwest::header::HeaderValue::from_bytes(value)
                    .expect("generated header values are valid header bytes");
                request = request.header(*name, value);
            }
        }
        Answer::read(request.send().await.expect("command-api answers")).await
    }

    /// Sends one generated write and checks everything that must hold after it.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per kind of write, each a request"
    )]
    async fn apply(&self, write: &Write) -> Result<(), TestCaseError> {
        let (messages_before, _) = self.app.stream_state().await;
        let new_events = match write {
            Write::Create {
                body,
                content_type,
                key,
            } => {
                let bytes = body.bytes();
                let answer = self
                    .send(
                        reqwest::Method::POST,
                        "/point",
                        Some(bytes.clone()),
                        *content_type,
                        &[("idempotency-key", key.clone())],
                    )
                    .await;
                answer.check()?;
                self.created(&answer, &bytes)?
            }
            Write::Batch {
                batch,
                content_type,
                key,
            } => {
                let answer = self
                    .send(
                        reqwest::Method::POST,
                        "/points",
                        Some(batch.bytes()),
                        *content_type,
                        &[("idempotency-key", key.clone())],
                    )
                    .await;
                answer.check()?;
                self.batch_stored(&answer, batch, key.is_some())?
            }
            Write::Patch {
                target,
                body,
                content_type,
                key,
                if_match,
            } => {
                let (segment, id) = self.resolve(target);
                let bytes = body.bytes();
                let answer = self
                    .send(
                        reqwest::Method::PATCH,
                        &format!("/points/{segment}"),
                        Some(bytes.clone()),
                        *content_type,
                        &[
                            ("idempotency-key", key.clone()),
                            ("if-match", self.if_match_value(if_match, id)),
                        ],
                    )
                    .await;
                answer.check()?;
                self.changed(&answer, id, Some(&bytes))?
            }
            Write::Delete {
                target,
                key,
                if_match,
            } => {
                let (segment, id) = self.resolve(target);
                let answer = self
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/points/{segment}"),
                        None,
                        None,
                        &[
                            ("idempotency-key", key.clone()),
                            ("if-match", self.if_match_value(if_match, id)),
                        ],
                    )
                    .await;
                answer.check()?;
                self.changed(&answer, id, None)?
            }
            Write::History { target } => {
                let (segment, id) = self.resolve(target);
                let answer = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/points/{segment}/history"),
                        None,
                        None,
                        &[],
                    )
                    .await;
                answer.check()?;
                let known = id.is_some_and(|id| self.model.borrow().current.contains_key(&id));
                prop_assert_eq!(answer.status, if known { 200 } else { 404 });
                0
            }
        };
        let (messages_after, last) = self.app.stream_state().await;
        prop_assert_eq!(
            messages_after,
            messages_before + new_events,
            "the stream holds exactly the events of accepted, not replayed, writes"
        );
        // As a failure of the case rather than a panic: a projector stuck on one event would
        // otherwise make every shrinking step wait in turn.
        self.app
            .try_wait_projected(last, std::time::Duration::from_secs(10))
            .await
            .map_err(TestCaseError::fail)?;
        self.check_projection().await
    }

    /// The model after a `POST /point`; returns how many events it stored.
    fn created(&self, answer: &Answer, body: &[u8]) -> Result<u64, TestCaseError> {
        if answer.status != 202 {
            return Ok(0);
        }
        let point = NewPoint::from_json(body).map_err(|e| {
            TestCaseError::fail(format!("accepted a body the validator refuses: {e:?}"))
        })?;
        let accepted = answer.json()?;
        let id = uuid(&accepted["id"])?;
        let sequence = accepted["sequence"].as_u64().unwrap_or_default();
        let expected = Expected::of(&point);
        let mut model = self.model.borrow_mut();
        if answer.headers.contains_key("idempotent-replayed") {
            prop_assert_eq!(
                model.created_as(id),
                Some(&expected),
                "a replay answers for the same write only"
            );
            return Ok(0);
        }
        prop_assert!(model.created_as(id).is_none(), "a new write got an old id");
        model.add(id, expected, sequence);
        Ok(1)
    }

    /// The model after a `POST /points`; returns how many events it stored.
    fn batch_stored(
        &self,
        answer: &Answer,
        batch: &Batch,
        keyed: bool,
    ) -> Result<u64, TestCaseError> {
        if ![202, 400, 422].contains(&answer.status) {
            return Ok(0);
        }
        let flat = batch.flat_items();
        let document = answer.json()?;
        let Some(items) = document["items"].as_array() else {
            prop_assert_eq!(answer.status, 400, "a 202 lists its items");
            return Ok(0);
        };
        if let Batch::Raw(_) = batch {
            // None of the raw bodies holds a valid point.
            prop_assert!(
                items.iter().all(|item| item.get("errors").is_some()),
                "stored an item of {document}"
            );
            return Ok(0);
        }
        prop_assert_eq!(items.len(), flat.len(), "one result per item");
        let mut stored = 0;
        let mut model = self.model.borrow_mut();
        for (item, body) in items.iter().zip(&flat) {
            let oracle = body.as_deref().map(NewPoint::from_json);
            if item.get("errors").is_some() {
                // A valid item is refused only when its batch's key already stands for another
                // item at its place.
                let reused_key = keyed && item["errors"][0]["field"] == "Idempotency-Key";
                prop_assert!(
                    reused_key || !matches!(oracle, Some(Ok(_))),
                    "refused an item the validator takes: {item}"
                );
                continue;
            }
            prop_assert!(
                item.get("sequence").is_some(),
                "an item neither stored nor refused: {item}"
            );
            let Some(Ok(point)) = oracle else {
                return Err(TestCaseError::fail(format!(
                    "stored an item the validator refuses: {item}"
                )));
            };
            let id = uuid(&item["id"])?;
            let expected = Expected::of(&point);
            if let Some(first) = model.created_as(id) {
                prop_assert_eq!(
                    first,
                    &expected,
                    "a replayed item answers for the same item only"
                );
                continue;
            }
            model.add(id, expected, item["sequence"].as_u64().unwrap_or_default());
            stored += 1;
        }
        Ok(stored)
    }

    /// The model after a `PATCH` (with its body) or a `DELETE`; returns how many events it
    /// stored.
    fn changed(
        &self,
        answer: &Answer,
        id: Option<Uuid>,
        patch: Option<&[u8]>,
    ) -> Result<u64, TestCaseError> {
        let mut model = self.model.borrow_mut();
        let state = id.and_then(|id| model.current.get(&id).cloned());
        if answer.status == 202 && answer.headers.contains_key("idempotent-replayed") {
            // The key's first answer, given again whatever happened to the point since.
            prop_assert!(state.is_some(), "a replay for a point never created");
            return Ok(0);
        }
        match (&state, answer.status) {
            (None, 202) => return Err(TestCaseError::fail("changed a point that does not exist")),
            (Some(None), 202) => return Err(TestCaseError::fail("changed a deleted point")),
            (Some(None), status) => prop_assert!(
                [400, 410, 412, 413, 415, 422].contains(&status),
                "a deleted point answers {status}"
            ),
            (None, status) => prop_assert!(
                [400, 404, 413, 415, 422].contains(&status),
                "an unknown point answers {status}"
            ),
            _ => {}
        }
        if answer.status != 202 {
            return Ok(0);
        }
        let (Some(id), Some(Some((before, _)))) = (id, state) else {
            unreachable!("checked above")
        };
        let accepted = answer.json()?;
        let sequence = accepted["sequence"].as_u64().unwrap_or_default();
        let replayed = answer.headers.contains_key("idempotent-replayed");
        let Some(patch) = patch else {
            model.current.insert(id, None);
            return Ok(u64::from(!replayed));
        };
        let change = PointPatch::from_json(patch).map_err(|e| {
            TestCaseError::fail(format!("accepted a patch the validator refuses: {e:?}"))
        })?;
        if replayed {
            return Ok(0);
        }
        let mut after = before;
        let mut events = 0;
        if let Some(name) = change.name {
            name.as_str().clone_into(&mut after.name);
            events += 1;
        }
        if let Some((longitude, latitude)) = change.position {
            after.longitude = longitude.degrees().to_bits();
            after.latitude = latitude.degrees().to_bits();
            events += 1;
        }
        model.current.insert(id, Some((after, sequence)));
        Ok(events)
    }

    /// The read model holds exactly the model's live points, with their exact values, a
    /// tombstone for each deleted one and nothing parked; every name and coordinate it holds
    /// keeps the rules, whatever the validator said.
    async fn check_projection(&self) -> Result<(), TestCaseError> {
        let rows: Vec<(Uuid, String, f64, f64)> =
            sqlx::query_as("SELECT id, name, ST_X(geom), ST_Y(geom) FROM points ORDER BY id")
                .fetch_all(&self.app.pool)
                .await
                .expect("the read model is readable");
        let tombstones: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM point_tombstones ORDER BY id")
                .fetch_all(&self.app.pool)
                .await
                .expect("the tombstones are readable");
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_points")
            .fetch_one(&self.app.pool)
            .await
            .expect("the parked points are countable");
        prop_assert_eq!(parked, 0, "an accepted write was dead-lettered");
        for (_, name, longitude, latitude) in &rows {
            let chars = name.chars().count();
            prop_assert!((1..=100).contains(&chars), "a name of {chars} characters");
            prop_assert!(name.trim() == name, "an untrimmed name {name:?}");
            prop_assert!(
                !name.chars().any(char::is_control),
                "a control character in {name:?}"
            );
            prop_assert!(
                (-180.0..=180.0).contains(longitude),
                "longitude {longitude}"
            );
            prop_assert!((-90.0..=90.0).contains(latitude), "latitude {latitude}");
        }
        let model = self.model.borrow();
        let projected: BTreeMap<Uuid, Expected> = rows
            .into_iter()
            .map(|(id, name, longitude, latitude)| {
                (
                    id,
                    Expected {
                        name,
                        longitude: longitude.to_bits(),
                        latitude: latitude.to_bits(),
                    },
                )
            })
            .collect();
        let live: BTreeMap<Uuid, Expected> = model
            .current
            .iter()
            .filter_map(|(id, state)| state.as_ref().map(|(e, _)| (*id, e.clone())))
            .collect();
        let deleted: Vec<Uuid> = model
            .current
            .iter()
            .filter(|(_, state)| state.is_none())
            .map(|(id, _)| *id)
            .collect();
        prop_assert_eq!(
            projected,
            live,
            "the projection is what the accepted writes say"
        );
        prop_assert_eq!(tombstones, deleted, "every deleted point has its tombstone");
        Ok(())
    }
}

fn uuid(value: &serde_json::Value) -> Result<Uuid, TestCaseError> {
    value
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| TestCaseError::fail(format!("not an id: {value}")))
}

/// Generated writes of every kind, valid, borderline and hostile, to every write route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_write_fails_the_server_or_the_projection() {
    let app = spawn_app().await;
    let context = Context {
        app: &app,
        model: std::cell::RefCell::new(Model::default()),
    };
    let tried_before = super::TRIED.load(Ordering::Relaxed);
    let result = runner().run(&write(), |write| block_on(context.apply(&write)));
    let tried = super::TRIED.load(Ordering::Relaxed) - tried_before;
    let model = context.model.borrow();
    eprintln!(
        "generated writes tried: {tried}; points created: {}, deleted: {}",
        model.created.len(),
        model.current.values().filter(|s| s.is_none()).count()
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
