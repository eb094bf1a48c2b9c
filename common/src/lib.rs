//! Shared by geoledger's three services: the event schema that is the contract between the
//! write and the read side, the validated point types, the RFC 9457 problem document, bearer
//! authentication, and the start-up plumbing (configuration, telemetry and metrics, JetStream
//! stream, shutdown).
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod event;
pub mod health;
pub mod hex;
pub mod metrics;
pub mod point;
pub mod problem;
pub mod projection;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
