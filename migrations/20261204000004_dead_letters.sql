-- Points whose events are parked: an event of the point could not be projected and went to
-- the dead-letter stream, so every later event of the point goes there too, in order, until
-- an operator re-drives them. Parking one point keeps its history in order without stalling
-- any other point.
CREATE TABLE parked_points (
    id          uuid PRIMARY KEY,
    -- Stream sequence of the event that could not be projected.
    first_seq   bigint NOT NULL,
    reason      text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
