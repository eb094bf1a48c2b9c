//! Load generators and benchmarks for geoledger. The load generators drive a running
//! deployment through its public HTTP API only, exactly as a client would; the read benchmark
//! ([`bench`]) fills a database of its own and serves it with an embedded query-api. All of
//! them report what they measured and assert nothing about speed.

pub mod bench;
pub mod environment;
pub mod faults;
pub mod load;
pub mod places;
pub mod projection;
pub mod stats;
pub mod throughput;
pub mod write_latency;
