//! End-to-end tests: each one starts command-api, the projector and query-api in-process
//! against the real PostgreSQL/PostGIS and nats-server that `make test` starts, plus its own
//! nats-server or HAProxy where a test needs to stop or route through one.

mod capture;
mod helpers;

mod auth;
mod bad_input;
mod dead_letters;
mod fuzz;
mod health;
mod idempotency;
mod lifecycle;
mod limits;
mod nats_auth;
mod nats_outage;
mod nats_tls;
mod observability;
mod ogc;
mod page_cache;
mod projection;
mod read_your_writes;
mod reads;
mod replay;
mod roles;
mod round_trip;
mod schemathesis;
