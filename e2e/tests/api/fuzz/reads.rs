//! Generated reads against query-api: every route with every parameter, valid, borderline and
//! hostile values, repeated and unknown names, percent-encoding, real cursors and mangled ones.
//! No answer may be a 5xx, every error is a problem document, every success is JSON, and a
//! parameter that is unknown or repeated is always a 400.

use std::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{Answer, block_on, percent_encode, runner, url_text};
use crate::helpers::{TestApp, sample_places, spawn_app};

/// The routes that take a list's parameters, and the names each takes.
const POINTS_PARAMS: &[&str] = &["bbox", "near", "radius", "limit", "f", "cursor"];
const ITEMS_PARAMS: &[&str] = &["bbox", "datetime", "limit", "f", "cursor"];

/// Which route a read asks.
#[derive(Debug, Clone)]
enum Route {
    Points,
    Point(String),
    Items,
    Item(String),
    Fixed(&'static str),
    Collection(String),
}

impl Route {
    fn path(&self) -> String {
        match self {
            Self::Points => "/points".to_owned(),
            Self::Point(id) => format!("/points/{id}"),
            Self::Items => "/collections/points/items".to_owned(),
            Self::Item(id) => format!("/collections/points/items/{id}"),
            Self::Fixed(path) => (*path).to_owned(),
            Self::Collection(id) => format!("/collections/{id}"),
        }
    }

    /// The parameters the route takes (the consistency token aside, which every read takes);
    /// `None` for `/status`, which reads none and checks none.
    fn known(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::Points => Some(POINTS_PARAMS),
            Self::Items => Some(ITEMS_PARAMS),
            Self::Point(_) => Some(&[]),
            Self::Fixed("/status") => None,
            Self::Fixed(_) | Self::Item(_) | Self::Collection(_) => Some(&["f"]),
        }
    }

    /// Whether the path names something that may not exist, so that a 404 may come first.
    fn names_a_resource(&self) -> bool {
        matches!(self, Self::Point(_) | Self::Item(_) | Self::Collection(_))
    }
}

fn point_id(ids: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ids),
        1 => Just(uuid::Uuid::now_v7().to_string()),
        2 => url_text(),
        1 => Just("00000000-0000-0000-0000-000000000000".to_owned()),
        1 => Just("{00000000-0000-0000-0000-000000000000}".to_owned()),
    ]
}

fn route(ids: Vec<String>) -> impl Strategy<Value = Route> {
    prop_oneof![
        6 => Just(Route::Points),
        6 => Just(Route::Items),
        2 => point_id(ids.clone()).prop_map(Route::Point),
        2 => point_id(ids).prop_map(Route::Item),
        2 => prop::sample::select(vec![
            "/",
            "/conformance",
            "/collections",
            "/api",
            "/status",
            "/collections/points",
        ])
        .prop_map(Route::Fixed),
        1 => prop_oneof![url_text(), Just("POINTS".to_owned())].prop_map(Route::Collection),
    ]
}

/// A coordinate as text, for `bbox` and `near`.
fn coordinate() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (-180.0_f64..=180.0).prop_map(|v| format!("{v}")),
        1 => any::<f64>().prop_map(|v| format!("{v}")),
        2 => prop::sample::select(vec![
            "180", "-180", "90", "-90", "-0", "1e-400", "5e-324", "1e999", "nan", "NaN", "inf",
            "-inf", "infinity", "+1", " 1", "1 ", "", "0x1", "1,5", "180.00000000000003",
        ])
        .prop_map(str::to_owned),
    ]
}

fn coordinates(count: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(coordinate(), count).prop_map(|c| c.join(","))
}

fn datetime() -> impl Strategy<Value = String> {
    let instant = prop_oneof![
        3 => (0_i64..=9999, 1_u32..=12, 1_u32..=28, 0_u32..=23, 0_u32..=59, 0_u32..=60,
              prop::option::of(0_u32..1_000_000_000), -1439_i32..=1439)
            .prop_map(|(y, mo, d, h, mi, s, nanos, offset)| {
                let fraction = nanos.map_or_else(String::new, |n| format!(".{n:09}"));
                let zone = if offset == 0 {
                    "Z".to_owned()
                } else {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let minutes = offset.unsigned_abs();
                    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
                };
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{zone}")
            }),
        1 => prop::sample::select(vec![
            "2026-12-04", "2026-12-04T12:00:00", "2026-13-45T99:99:99Z",
            "9999-12-31T23:59:59.999999999-23:59",
            "0000-01-01T00:00:00+23:59", "2016-12-31T23:59:60Z", "now", "", "..",
            "+275760-09-13T00:00:00Z", "2026-12-04T12:00:00.0000000000001Z", "2026-12-04t12:00:00z",
        ])
        .prop_map(str::to_owned),
    ];
    prop_oneof![
        2 => instant.clone(),
        2 => (instant.clone(), instant).prop_map(|(a, b)| format!("{a}/{b}")),
        1 => prop::sample::select(vec!["../..", "/", "../", "/..", "//"]).prop_map(str::to_owned),
    ]
}

/// A parameter value fit for `name`, or any other text.
fn value_for(name: &'static str, cursors: Vec<String>) -> BoxedStrategy<String> {
    let specific: BoxedStrategy<String> = match name {
        "limit" => prop_oneof![
            (1_u64..20_000).prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "0",
                "-1",
                "1.5",
                " 5",
                "+5",
                "0x10",
                "",
                "99999999999999999999999",
                "１",
            ])
            .prop_map(str::to_owned),
        ]
        .boxed(),
        "bbox" => prop_oneof![4 => coordinates(4..5), 1 => coordinates(0..8)].boxed(),
        "near" => prop_oneof![4 => coordinates(2..3), 1 => coordinates(0..5)].boxed(),
        "radius" => prop_oneof![
            (0.0_f64..2_000_000.0).prop_map(|v| format!("{v}")),
            prop::sample::select(vec![
                "0",
                "-1",
                "1000000",
                "1000000.0000000001",
                "nan",
                "inf",
                "1e-320",
                "",
                "1e6",
            ])
            .prop_map(str::to_owned),
        ]
        .boxed(),
        "f" => prop::sample::select(vec!["json", "geojson", "JSON", "html", "", "geojson "])
            .prop_map(str::to_owned)
            .boxed(),
        "datetime" => datetime().boxed(),
        "cursor" => cursor(cursors).boxed(),
        "consistency_token" => {
            prop::sample::select(vec!["0", "1", "abc", "-1", "", "18446744073709551616"])
                .prop_map(str::to_owned)
                .boxed()
        }
        _ => url_text().boxed(),
    };
    prop_oneof![6 => specific, 1 => url_text()].boxed()
}

/// Real cursors, mangled ones, and strings that only look like one.
fn cursor(cursors: Vec<String>) -> impl Strategy<Value = String> {
    let real = prop::sample::select(cursors);
    prop_oneof![
        3 => real.clone(),
        3 => (real, any::<prop::sample::Index>(), any::<u8>(), 0_u8..3).prop_map(
            |(cursor, at, byte, how)| {
                let mut bytes = cursor.into_bytes();
                let at = at.index(bytes.len().max(1)).min(bytes.len());
                match how {
                    0 => bytes.truncate(at),
                    1 if at < bytes.len() => bytes[at] ^= 1 << (byte % 8),
                    _ => bytes.insert(at, b'A' + byte % 26),
                }
                String::from_utf8_lossy(&bytes).into_owned()
            },
        ),
        1 => "[A-Za-z0-9_-]{0,80}",
    ]
}

#[derive(Debug, Clone)]
struct Read {
    route: Route,
    /// Name and raw value of each parameter, in order.
    params: Vec<(String, String)>,
    /// Whether to percent-encode every byte of the values that is not plainly safe.
    encode: bool,
    accept: Option<&'static str>,
}

impl Read {
    fn url(&self) -> String {
        let query: Vec<String> = self
            .params
            .iter()
            .map(|(name, value)| {
                let value = if self.encode {
                    percent_encode(value.as_bytes())
                } else {
                    value.clone()
                };
                format!("{}={value}", percent_encode(name.as_bytes()))
            })
            .collect();
        if query.is_empty() {
            self.route.path()
        } else {
            format!("{}?{}", self.route.path(), query.join("&"))
        }
    }

    /// A name the route does not take, or a name the route takes given twice: either is a
    /// 400, whatever else the query holds.
    fn must_be_refused(&self) -> bool {
        let Some(known) = self.route.known() else {
            return false;
        };
        let taken = |name: &str| known.contains(&name) || name == "consistency_token";
        let unknown = self.params.iter().any(|(name, _)| !taken(name));
        let repeated = self.params.iter().enumerate().any(|(i, (name, _))| {
            known.contains(&name.as_str()) && self.params[..i].iter().any(|(n, _)| n == name)
        });
        unknown || repeated
    }
}

fn read(ids: Vec<String>, cursors: Vec<String>) -> impl Strategy<Value = Read> {
    let names = prop_oneof![
        10 => prop::sample::select(vec![
            "bbox", "near", "radius", "limit", "f", "cursor", "datetime",
        ]),
        1 => prop::sample::select(vec![
            "consistency_token", "LIMIT", "bbox[]", "", "filter", "crs", "bbox-crs", "offset",
        ]),
    ];
    let param =
        names.prop_flat_map(move |name| (Just(name.to_owned()), value_for(name, cursors.clone())));
    (
        route(ids),
        prop::collection::vec(param, 0..5),
        any::<bool>(),
        prop::sample::select(vec![
            None,
            None,
            Some("application/json"),
            Some("application/geo+json"),
            Some("text/html"),
            Some("*/*;q=0"),
            Some("garbage;;;"),
        ]),
    )
        .prop_map(|(route, params, encode, accept)| Read {
            route,
            params,
            encode,
            accept,
        })
}

async fn check(app: &TestApp, read: &Read) -> Result<(), TestCaseError> {
    let mut request = app.http.get(app.query.url(&read.url()));
    if let Some(accept) = read.accept {
        request = request.header("accept", accept);
    }
    let answer = Answer::read(request.send().await.expect("query-api answers")).await;
    answer.check()?;
    if read.must_be_refused() {
        prop_assert!(
            answer.status == 400 || (answer.status == 404 && read.route.names_a_resource()),
            "an unknown or repeated parameter is refused, not answered {}",
            answer.status
        );
    }
    if answer.status == 200 {
        answer.json()?;
    }
    Ok(())
}

/// A `next` cursor taken from a page's `Link` header.
async fn next_cursor(app: &TestApp, path: &str) -> String {
    let response = app
        .http
        .get(app.query.url(path))
        .send()
        .await
        .expect("query-api answers");
    let link = response
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{path} has a next page"))
        .to_owned();
    let start = link.find("cursor=").expect("a next link carries a cursor") + "cursor=".len();
    link[start..]
        .split(['&', '>'])
        .next()
        .expect("split yields at least one piece")
        .to_owned()
}

/// Generated reads of every route and parameter against a read model of real places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_read_fails_the_server() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut last = 0;
    for place in sample_places().iter().take(30) {
        let accepted = app.create_point(&place.to_json()).await;
        ids.push(accepted.id.to_string());
        last = accepted.sequence;
    }
    app.wait_projected(last).await;
    let cursors = vec![
        next_cursor(&app, "/points?limit=2").await,
        next_cursor(&app, "/points?limit=3&bbox=-180,-90,180,90").await,
        next_cursor(&app, "/points?limit=2&near=45,10&radius=1000000").await,
        next_cursor(&app, "/collections/points/items?limit=2").await,
        next_cursor(
            &app,
            "/collections/points/items?limit=2&datetime=2000-01-01T00:00:00Z/..",
        )
        .await,
    ];

    let tried_before = super::TRIED.load(Ordering::Relaxed);
    let result = runner().run(&read(ids, cursors), |read| block_on(check(&app, &read)));
    let tried = super::TRIED.load(Ordering::Relaxed) - tried_before;
    eprintln!("generated reads tried: {tried}");
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
