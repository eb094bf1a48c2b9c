//! Names the projector and the readers of its projection agree on.

/// The checkpoint row of the points projection in `projection_checkpoint`.
pub const POINTS: &str = "points";

/// `LISTEN` channel on which the projector announces each committed checkpoint, as decimal
/// text, from inside the committing transaction (so it arrives when the rows are visible).
pub const CHECKPOINT_CHANNEL: &str = "geoledger_checkpoint";

/// Header and query parameter with which a reader asks to see at least a given stream
/// sequence (the `sequence` of its write).
pub const CONSISTENCY_TOKEN: &str = "consistency-token";
