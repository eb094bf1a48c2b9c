//! The read benchmark behind `bench-reads`: how `GET /points` latency grows from a thousand
//! points to a million.
//!
//! Unlike the load generators it does not go through the write path: it fills the read model
//! directly with COPY ([`database`], [`synthetic`]), starts query-api inside the process
//! ([`http`]), times the reads of [`queries`] over loopback HTTP, and shows the plans
//! PostgreSQL chose for them ([`plans`], [`report`]).

pub mod database;
pub mod http;
pub mod plans;
pub mod queries;
pub mod report;
pub mod synthetic;
