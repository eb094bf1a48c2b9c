//! Load generators for geoledger. They drive a running deployment through its public HTTP
//! API only, exactly as a client would, and report what they measured; they assert nothing
//! about speed.

pub mod load;
pub mod places;
pub mod projection;
pub mod stats;
