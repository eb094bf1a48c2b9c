//! `/api`: the OpenAPI 3.0 description of the whole service, both halves, as HAProxy joins
//! them: query-api's routes (the OGC API, `/points`, `/status`) and command-api's `POST
//! /point`.
//!
//! Operations and response bodies come from `#[utoipa::path]` on the handlers and
//! `ToSchema` on the types they serialise. Query parameters are added here from the same
//! lists the handlers check requests against (`POINTS_PARAMS`, `ITEMS_PARAMS`, …), with the
//! limits this instance runs with, so the description cannot promise a parameter a route
//! refuses or hide one it takes. command-api's routes are written out by hand, since this
//! crate cannot see its handlers.
//!
//! utoipa 4 writes OpenAPI 3.0.3, which the `oas30` conformance class and GDAL expect.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{
    Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, ParameterStyle,
    PathItem, PathItemType,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::AdditionalProperties;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder};

use super::AppState;
use super::caching::metadata_cache_control;
use super::consistency::{self, MAX_WAIT};
use super::media::{self, JSON, OPENAPI_JSON};
use super::ogc::{self, ITEM_PARAMS, ITEMS_PARAMS, METADATA_PARAMS, OGC_LIMITS};
use super::points::{self, Limits, POINTS_PARAMS};
use super::status;
use crate::MAX_RADIUS_METRES;
use crate::error::ApiResult;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api", get(get_api))
}

/// The derived part of the description. Its own module, because the derive expands to code
/// the lint below objects to, and a lint attribute on the struct does not reach the impl.
#[expect(
    clippy::needless_for_each,
    reason = "utoipa's OpenApi derive expands to an iterator for_each"
)]
mod derived {
    use utoipa::OpenApi;

    use super::{media, ogc, points, status};

    #[derive(OpenApi)]
    #[openapi(
        info(
            title = "geoledger",
            description = "An event-sourced store of points. Writes (`POST /point`) go to \
                command-api, which stores each as an event in NATS JetStream; reads come from \
                query-api, which serves the PostGIS read model the projector keeps, as plain \
                JSON (`/points`) and as OGC API - Features (`/collections/points`). Behind \
                HAProxy both answer on one address; every error is an RFC 9457 problem document.",
            license(name = "Apache-2.0"),
        ),
        paths(
            ogc::get_landing_page,
            ogc::get_conformance,
            ogc::list_collections,
            ogc::get_collection,
            ogc::items::list_items,
            ogc::items::get_item,
            points::list_points,
            points::get_point,
            status::get_status,
        ),
        components(schemas(
            ogc::LandingPage,
            ogc::Conformance,
            ogc::Collections,
            ogc::Collection,
            ogc::Extent,
            ogc::SpatialExtent,
            ogc::TemporalExtent,
            media::Link,
            points::FeatureCollection<'static>,
            points::Feature<'static>,
            points::Geometry,
            points::Properties<'static>,
            points::ListedPoint,
            points::PointDetail,
            status::Status,
        )),
        tags(
            (name = "OGC API Features", description = "OGC API - Features - Part 1: Core, \
                GeoJSON and OpenAPI 3.0, for GIS clients"),
            (name = "points", description = "Points as plain JSON or GeoJSON, by box or radius"),
            (name = "writes", description = "command-api: writes become events"),
            (name = "health", description = "Whether an instance can serve"),
        )
    )]
    pub(super) struct ApiDoc;
}

/// Which query parameters each GET route takes: the lists its handler checks against.
pub(crate) const QUERY_PARAMETERS: [(&str, &[&str]); 9] = [
    ("/", METADATA_PARAMS),
    ("/conformance", METADATA_PARAMS),
    ("/collections", METADATA_PARAMS),
    ("/collections/points", METADATA_PARAMS),
    ("/collections/points/items", ITEMS_PARAMS),
    ("/collections/points/items/{featureId}", ITEM_PARAMS),
    ("/points", POINTS_PARAMS),
    ("/points/{id}", &[]),
    ("/status", &[]),
];

/// The description, as served; `points_limits` are those `GET /points` runs with.
pub(crate) fn document(points_limits: Limits) -> utoipa::openapi::OpenApi {
    let mut doc = derived::ApiDoc::openapi();
    doc.paths.paths.insert(
        "/api".to_owned(),
        PathItem::new(PathItemType::Get, api_operation()),
    );
    for (path, names) in QUERY_PARAMETERS
        .iter()
        .chain([("/api", METADATA_PARAMS)].iter())
    {
        let Some(operation) = doc
            .paths
            .paths
            .get_mut(*path)
            .and_then(|item| item.operations.get_mut(&PathItemType::Get))
        else {
            continue;
        };
        let route = Route::of(path);
        let limits = if route == Route::Points {
            points_limits
        } else {
            OGC_LIMITS
        };
        let mut parameters = operation.parameters.take().unwrap_or_default();
        parameters.extend(
            names
                .iter()
                .map(|name| query_parameter(name, route, limits)),
        );
        parameters.extend(consistency_parameters());
        operation.parameters = Some(parameters);
        operation
            .responses
            .responses
            .entry("503".to_owned())
            .or_insert_with(|| {
                problem_response(&format!(
                    "The database cannot answer now, or the projection has not reached the \
                     consistency token within {} s (`Retry-After` says when to try again)",
                    MAX_WAIT.as_secs()
                ))
                .into()
            });
    }
    describe_command_api(&mut doc);
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".to_owned(), problem_schema().into());
    components
        .schemas
        .insert("Accepted".to_owned(), accepted_schema().into());
    components
        .schemas
        .insert("NewPoint".to_owned(), new_point_schema().into());
    doc
}

/// The OpenAPI description of the whole service.
#[utoipa::path(
    get,
    path = "/api",
    tag = "OGC API Features",
    operation_id = "getApiDescription",
    responses(
        (status = 200, description = "This description",
            content(
                ("application/vnd.oai.openapi+json;version=3.0" = Object),
                ("application/json" = Object),
            )),
        (status = 400, description = "An unknown parameter, or an `f` other than `json`",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::Query(pairs): super::Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    ogc::check_metadata_params(&pairs)?;
    let media_type = media::choose(&headers, &[OPENAPI_JSON, JSON]);
    let mut response = (
        StatusCode::OK,
        [metadata_cache_control()],
        state.api_description.as_ref().clone(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    Ok(response)
}

fn api_operation() -> Operation {
    // `get_api`'s own path item, built from its macro, minus the path.
    <__path_get_api as utoipa::Path>::path_item(None)
        .operations
        .into_values()
        .next()
        .expect("the /api handler declares its GET operation")
}

/// Which list a route is, for the parameters that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Points,
    Items,
    Item,
    Metadata,
}

impl Route {
    fn of(path: &str) -> Self {
        match path {
            "/points" | "/points/{id}" => Self::Points,
            "/collections/points/items" => Self::Items,
            "/collections/points/items/{featureId}" => Self::Item,
            _ => Self::Metadata,
        }
    }
}

/// The read-your-writes token every read takes (see `http::consistency`): a middleware strips
/// it before the route sees its parameters, so it is in no route's list.
fn consistency_parameters() -> [Parameter; 2] {
    let description = format!(
        "The `Consistency-Token` a write answered with (its stream sequence): the read waits \
         up to {} s until the projection has reached it, else 503. Header and parameter may \
         be given together; the larger token counts.",
        MAX_WAIT.as_secs()
    );
    let token = |name: &str, parameter_in: ParameterIn| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(parameter_in)
            .required(Required::False)
            .description(Some(description.as_str()))
            .schema(Some(integer().minimum(Some(0.0))))
            .build()
    };
    // The header as the write answers name it; `CONSISTENCY_TOKEN` is its lowercase form.
    [
        token(consistency::QUERY_PARAMETER, ParameterIn::Query),
        token("Consistency-Token", ParameterIn::Header),
    ]
}

fn form(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .style(Some(ParameterStyle::Form))
        .explode(Some(false))
        .build()
}

/// A 64-bit integer, as stream sequences and versions are.
fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

fn number() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::String)
}

/// The description of query parameter `name` on `route`. `limit` and `bbox` are declared
/// as OGC API Features Part 1 declares them (an integer from 1 with a maximum and a default;
/// an array of 4 to 6 numbers, form style, not exploded), on `/points` too.
fn query_parameter(name: &str, route: Route, limits: Limits) -> Parameter {
    match name {
        "limit" => form(
            "limit",
            "Most items on one page. A value above the maximum is lowered to it; 0, a \
             negative or a non-integer is a 400.",
            ObjectBuilder::new()
                .schema_type(SchemaType::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(1.0))
                .maximum(Some(f64::from(limits.max_limit())))
                .default(Some(limits.default_limit().into())),
        ),
        "bbox" => {
            let description = if route == Route::Points {
                "minLon,minLat,maxLon,maxLat in CRS84; points on an edge are inside; \
                 minLon > maxLon crosses the antimeridian."
            } else {
                "minLon,minLat,maxLon,maxLat in CRS84; points on an edge are inside; \
                 minLon > maxLon crosses the antimeridian. Six numbers (a box with \
                 heights) are a 400: CRS84 has no height."
            };
            // Part 1 declares 4 to 6 numbers; `/points` never took heights.
            let most = if route == Route::Points { 4 } else { 6 };
            form(
                "bbox",
                description,
                ArrayBuilder::new()
                    .items(number())
                    .min_items(Some(4))
                    .max_items(Some(most)),
            )
        }
        "datetime" => form(
            "datetime",
            "An RFC 3339 date-time, or an interval start/end where an open end is `..` or \
             empty; matched against `updated_at`, both ends inside. Encode `+` as %2B.",
            string(),
        ),
        "near" => form(
            "near",
            "lon,lat of the centre of a radius search; needs `radius`.",
            ArrayBuilder::new()
                .items(number())
                .min_items(Some(2))
                .max_items(Some(2)),
        ),
        // Above 0, not from 0; OpenAPI 3.0 writes that as a boolean `exclusiveMinimum`,
        // which utoipa 4's builder cannot (it writes 3.1's number), so the text says it.
        "radius" => form(
            "radius",
            "Metres from `near` along a great circle of a sphere of radius 6,371,008.8 m \
             (within about 0.5 % of the WGS 84 spheroid), above 0; needs `near`.",
            number().minimum(Some(0.0)).maximum(Some(MAX_RADIUS_METRES)),
        ),
        "cursor" => form(
            "cursor",
            "Opaque; copied from a `next` link, which repeats every other parameter.",
            string(),
        ),
        "f" => {
            let (values, description): (&[&str], _) = match route {
                Route::Points => (
                    &["json", "geojson"],
                    "`json`, the array, or `geojson`, a FeatureCollection; without it, \
                     `Accept` decides.",
                ),
                Route::Items | Route::Item => (
                    &["geojson", "json"],
                    "The same GeoJSON, labelled application/geo+json or application/json; \
                     without it, `Accept` decides.",
                ),
                Route::Metadata => (&["json"], "`json`, the only format of this document."),
            };
            form(
                "f",
                description,
                string().enum_values(Some(values.iter().copied())),
            )
        }
        other => unreachable!("{other} is in a parameter list but has no description"),
    }
}

fn problem_ref() -> RefOr<Schema> {
    Ref::from_schema_name("Problem").into()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(problem_ref()).build(),
        )
        .build()
}

/// RFC 9457, with the per-field list validation problems add.
fn problem_schema() -> Schema {
    let field_error = ObjectBuilder::new()
        .property("field", string())
        .required("field")
        .property("reason", string())
        .required("reason");
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem document. `type` is stable (`urn:geoledger:problem:…`); a \
             503 comes with Retry-After.",
        ))
        .property("type", string())
        .required("type")
        .property("title", string())
        .required("title")
        .property(
            "status",
            ObjectBuilder::new().schema_type(SchemaType::Integer),
        )
        .required("status")
        .property("detail", string())
        .property("errors", ArrayBuilder::new().items(field_error))
        .into()
}

fn accepted_schema() -> Schema {
    ObjectBuilder::new()
        .property(
            "id",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .required("id")
        .property("sequence", integer())
        .required("sequence")
        .property("version", integer())
        .required("version")
        .into()
}

fn new_point_schema() -> Schema {
    ObjectBuilder::new()
        .property(
            "longitude",
            number().minimum(Some(-180.0)).maximum(Some(180.0)),
        )
        .required("longitude")
        .property(
            "latitude",
            number().minimum(Some(-90.0)).maximum(Some(90.0)),
        )
        .required("latitude")
        .property(
            "name",
            string()
                .min_length(Some(1))
                .max_length(Some(100))
                .description(Some(
                    "1 to 100 characters once leading and trailing white space is removed; \
                     no control characters",
                )),
        )
        .required("name")
        .property(
            "properties",
            ObjectBuilder::new().description(Some("Free-form attributes, a JSON object")),
        )
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .description(Some("Unknown members are refused."))
        .into()
}

/// command-api's `POST /point`, and its `/status` as an alternative body of `/status`: each
/// service answers `/status` on its own address, and through HAProxy `GET /status` reaches
/// a query-api instance.
fn describe_command_api(doc: &mut utoipa::openapi::OpenApi) {
    doc.paths.paths.insert(
        "/point".to_owned(),
        PathItem::new(PathItemType::Post, create_point()),
    );
    let mut add = |path: &str, method: PathItemType, operation: Operation| {
        doc.paths
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| PathItem::new(method.clone(), operation.clone()))
            .operations
            .insert(method, operation);
    };
    add("/points", PathItemType::Post, create_points());
    add("/points/{id}", PathItemType::Patch, change_point(true));
    add("/points/{id}", PathItemType::Delete, change_point(false));
    add("/points/{id}/history", PathItemType::Get, point_history());
    let Some(status) = doc
        .paths
        .paths
        .get_mut("/status")
        .and_then(|item| item.operations.get_mut(&PathItemType::Get))
    else {
        return;
    };
    let command_status = ObjectBuilder::new()
        .description(Some("command-api: connected to NATS and its stream exists"))
        .property("status", string())
        .required("status")
        .property("stream", string())
        .required("stream");
    let either = OneOfBuilder::new()
        .item(Ref::from_schema_name("Status"))
        .item(command_status);
    if let Some(RefOr::T(ok)) = status.responses.responses.get_mut("200")
        && let Some(content) = ok.content.get_mut("application/json")
    {
        content.schema = either.into();
    }
}

fn id_parameter() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
}

fn key_parameter() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "1 to 255 visible ASCII characters; a retry gets the first answer",
        ))
        .schema(Some(string().min_length(Some(1)).max_length(Some(255))))
}

/// The answer's stream sequence, for a read that must see this write.
fn consistency_token_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(integer())
        .description(Some(
            "The write's stream sequence; send it back with a read (header or \
             `consistency_token`) to read this write or a later state",
        ))
        .build()
}

fn accepted_response() -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description("Stored in JetStream; `ETag` and `Consistency-Token` name the write")
        .header("Consistency-Token", consistency_token_header())
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Ref::from_schema_name("Accepted"))
                .build(),
        )
        .build()
}

/// command-api's `PATCH` (rename and/or move) or `DELETE` of one point.
fn change_point(patch: bool) -> Operation {
    let mut operation = OperationBuilder::new()
        .tag("writes")
        .operation_id(Some(if patch { "changePoint" } else { "deletePoint" }))
        .summary(Some(if patch {
            "Renames and/or moves a point (command-api)"
        } else {
            "Deletes a point (command-api)"
        }))
        .parameter(id_parameter())
        .parameter(key_parameter())
        .parameter(
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "An ETag of the point; the write applies only to that version",
                ))
                .schema(Some(string())),
        )
        .response("202", accepted_response())
        .response(
            "400",
            problem_response(if patch {
                "Invalid fields, malformed JSON, or a malformed If-Match or Idempotency-Key"
            } else {
                "A malformed If-Match or Idempotency-Key"
            }),
        )
        .response("404", problem_response("No such point"))
        .response(
            "409",
            problem_response(
                "The same Idempotency-Key is in flight in another request, or the point \
                 changes too often to apply this change; retry",
            ),
        )
        .response("410", problem_response("The point was deleted"))
        .response("412", problem_response("The point changed since If-Match"))
        .response(
            "422",
            problem_response("The Idempotency-Key was used with a different request"),
        )
        .response(
            "503",
            problem_response("Not known to be stored; retry with the same key"),
        );
    if patch {
        let body = ObjectBuilder::new()
            .property("name", string().min_length(Some(1)).max_length(Some(100)))
            .property(
                "longitude",
                number().minimum(Some(-180.0)).maximum(Some(180.0)),
            )
            .property(
                "latitude",
                number().minimum(Some(-90.0)).maximum(Some(90.0)),
            )
            .description(Some("A new name, new coordinates (both), or both"));
        operation = operation
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(body).build(),
                    )
                    .build(),
            ))
            .response("413", problem_response("The body is over the limit"))
            .response("415", problem_response("The body is not JSON"));
    }
    operation.build()
}

/// command-api's `POST /points`: a batch.
fn create_points() -> Operation {
    let body = OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(Ref::from_schema_name("NewPoint"))
                .max_items(Some(1000)),
        )
        .item(
            ObjectBuilder::new()
                .description(Some("A GeoJSON FeatureCollection of Point features"))
                .property("type", string())
                .property("features", ArrayBuilder::new().items(ObjectBuilder::new()))
                .required("features"),
        );
    OperationBuilder::new()
        .tag("writes")
        .operation_id(Some("createPoints"))
        .summary(Some(
            "Creates up to 1,000 points; each item answered on its own (command-api)",
        ))
        .parameter(key_parameter())
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(body).build(),
                )
                .build(),
        ))
        .response(
            "202",
            ResponseBuilder::new()
                .description(
                    "`accepted`, `refused` and per item its `id` and `sequence` or `errors`",
                )
                .content(
                    "application/json",
                    ContentBuilder::new().schema(ObjectBuilder::new()).build(),
                )
                .build(),
        )
        .response(
            "400",
            problem_response("No item is valid, or the body is not a batch"),
        )
        .response("413", problem_response("The body is over the limit"))
        .response("415", problem_response("The body is not JSON"))
        .response(
            "422",
            problem_response(
                "The Idempotency-Key was used with other items at the places of every item",
            ),
        )
        .response(
            "503",
            problem_response("No item was stored; retry with the same key"),
        )
        .build()
}

/// command-api's `GET /points/{id}/history`, read from the event stream.
fn point_history() -> Operation {
    OperationBuilder::new()
        .tag("writes")
        .operation_id(Some("getPointHistory"))
        .summary(Some("A point's events, oldest first (command-api)"))
        .parameter(id_parameter())
        .response(
            "200",
            ResponseBuilder::new()
                .description(
                    "`id` and `events`: sequence, event_type, schema_version, version, \
                     occurred_at, data",
                )
                .content(
                    "application/json",
                    ContentBuilder::new().schema(ObjectBuilder::new()).build(),
                )
                .build(),
        )
        .response("404", problem_response("No such point"))
        .build()
}

fn create_point() -> Operation {
    let created = ResponseBuilder::new()
        .description(
            "Stored in JetStream; readable at `Location` once the projection reaches \
             `sequence`",
        )
        .header(
            "Location",
            HeaderBuilder::new()
                .schema(string())
                .description(Some("/points/{id}"))
                .build(),
        )
        .header(
            "ETag",
            HeaderBuilder::new()
                .schema(string())
                .description(Some("The point's version as of this write"))
                .build(),
        )
        .header("Consistency-Token", consistency_token_header())
        .header(
            "Idempotent-Replayed",
            HeaderBuilder::new()
                .schema(string())
                .description(Some(
                    "`true` when a retry was answered from the first attempt",
                ))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Ref::from_schema_name("Accepted"))
                .build(),
        )
        .build();
    OperationBuilder::new()
        .tag("writes")
        .operation_id(Some("createPoint"))
        .summary(Some("Creates a point (command-api)"))
        .parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1 to 255 visible ASCII characters; a retry with the same key and body \
                     within the duplicate window stores nothing new",
                ))
                .schema(Some(string().min_length(Some(1)).max_length(Some(255)))),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Ref::from_schema_name("NewPoint"))
                        .build(),
                )
                .build(),
        ))
        .response("202", created)
        .response(
            "400",
            problem_response("Invalid fields, malformed JSON, or an empty body"),
        )
        .response(
            "409",
            problem_response("The same Idempotency-Key is in flight; retry"),
        )
        .response("413", problem_response("The body is over the limit"))
        .response("415", problem_response("The body is not JSON"))
        .response(
            "422",
            problem_response("The Idempotency-Key was used with a different body"),
        )
        .response(
            "503",
            problem_response("NATS did not confirm the write: it may or may not be stored"),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(document(Limits::new(100, 1000).unwrap())).unwrap()
    }

    fn query_names(doc: &Value, path: &str) -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_description_is_openapi_3_0() {
        let doc = doc();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.0."),
            "{}",
            doc["openapi"]
        );
    }

    #[test]
    fn every_get_route_declares_exactly_the_parameters_it_takes() {
        let doc = doc();
        for (path, names) in QUERY_PARAMETERS
            .iter()
            .chain([("/api", METADATA_PARAMS)].iter())
        {
            assert!(doc["paths"][path]["get"].is_object(), "{path} is described");
            let mut expected: Vec<&str> = names.to_vec();
            expected.push("consistency_token");
            assert_eq!(query_names(&doc, path), expected, "{path}");
            let get = &doc["paths"][path]["get"];
            assert!(
                get["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["in"] == "header" && p["name"] == "Consistency-Token"),
                "{path} declares the Consistency-Token header"
            );
            assert!(get["responses"]["503"].is_object(), "{path} may answer 503");
        }
    }

    #[test]
    fn limit_and_bbox_of_the_items_are_declared_as_part_1_declares_them() {
        let doc = doc();
        let params = doc["paths"]["/collections/points/items"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap();
        let limit = param("limit");
        assert_eq!(limit["style"], "form");
        assert_eq!(limit["explode"], false);
        assert_eq!(limit["required"], false);
        assert_eq!(limit["schema"]["type"], "integer");
        assert_eq!(limit["schema"]["minimum"], 1.0);
        assert_eq!(
            limit["schema"]["maximum"],
            f64::from(ogc::items::OGC_MAX_LIMIT)
        );
        assert_eq!(limit["schema"]["default"], ogc::items::OGC_DEFAULT_LIMIT);
        let bbox = param("bbox");
        assert_eq!(bbox["style"], "form");
        assert_eq!(bbox["explode"], false);
        assert_eq!(bbox["schema"]["type"], "array");
        assert_eq!(bbox["schema"]["minItems"], 4);
        assert_eq!(bbox["schema"]["maxItems"], 6);
        assert_eq!(bbox["schema"]["items"]["type"], "number");
    }

    #[test]
    fn the_limit_of_points_follows_the_configuration() {
        let doc = serde_json::to_value(document(Limits::new(7, 70).unwrap())).unwrap();
        let limit = &doc["paths"]["/points"]["get"]["parameters"][3]["schema"];
        assert_eq!(limit["maximum"], 70.0);
        assert_eq!(limit["default"], 7);
    }

    #[test]
    fn every_command_api_route_is_described_with_its_parameters() {
        let doc = doc();
        for (path, method) in [
            ("/points", "post"),
            ("/points/{id}", "patch"),
            ("/points/{id}", "delete"),
            ("/points/{id}/history", "get"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is described"
            );
        }
        assert!(
            doc["paths"]["/points"]["get"].is_object(),
            "the read beside it is kept"
        );
        let names: Vec<&str> = doc["paths"]["/points/{id}"]["patch"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "Idempotency-Key", "If-Match"]);
    }

    #[test]
    fn writes_name_the_consistency_token_they_answer_with() {
        let doc = doc();
        let post = &doc["paths"]["/point"]["post"]["responses"]["202"]["headers"];
        assert!(post["Consistency-Token"].is_object(), "{post}");
        let delete = &doc["paths"]["/points/{id}"]["delete"]["responses"];
        let accepted = delete
            .as_object()
            .unwrap()
            .values()
            .find(|r| r["headers"]["Consistency-Token"].is_object());
        assert!(accepted.is_some(), "{delete}");
    }

    #[test]
    fn command_api_writes_are_described_too() {
        let doc = doc();
        let post = &doc["paths"]["/point"]["post"];
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/NewPoint"
        );
        for status in ["202", "400", "413", "415", "422", "503"] {
            assert!(post["responses"][status].is_object(), "{status}");
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(
            doc["paths"]["/status"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["oneOf"]
                .is_array()
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "#/components/schemas/{name} is defined"
            );
        }
    }
}
