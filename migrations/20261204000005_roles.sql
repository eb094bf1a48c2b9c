-- Least privilege: two group roles (NOLOGIN) that the services' login roles are made members
-- of, so that neither the live projector nor query-api can change the schema, and query-api
-- cannot write at all. The role that runs these migrations owns the tables and is the only
-- one that runs DDL (migrations, `projector rebuild`, `projector replay`).
--
-- A table added by a later migration is granted to these roles by that migration, explicitly:
-- there are no default privileges, so a new table is reachable by no service until a
-- migration says which one needs it. `projector rebuild` copies each live table's grants onto
-- the shadow table it swaps in (projector/src/rebuild.rs).

-- Roles belong to the whole cluster while migrations run once per database, and the tests
-- migrate many databases of one cluster at once: a concurrent creator of the same role makes
-- CREATE ROLE fail with duplicate_object, or with unique_violation on pg_authid when both
-- inserted before either committed. Either way the role exists, which is all that matters.
DO $$
BEGIN
    CREATE ROLE geoledger_projector NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    CREATE ROLE geoledger_reader NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- PostgreSQL before 15 lets every role create tables in the public schema; 15 and later
-- already refuse it. Without this, the reader could still run CREATE TABLE on an older server.
DO $$
BEGIN
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO geoledger_projector, geoledger_reader',
                   current_schema());
END
$$;

-- The live projector applies events and advances its checkpoint; it deletes rows (deleted
-- points, re-driven parked points) but never truncates, and references no other table.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON points, point_tombstones, parked_points, projection_checkpoint
    TO geoledger_projector;
-- So that a projector started after the migration step can tell that nothing is pending
-- without trying to migrate (which its role may not).
GRANT SELECT ON _sqlx_migrations TO geoledger_projector;

-- query-api reads the points and the checkpoint (for ETags, read-your-writes and /status).
GRANT SELECT ON points, projection_checkpoint TO geoledger_reader;
