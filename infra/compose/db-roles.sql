-- The services' login roles, run by Compose's one-shot `db-roles` service after the
-- migrations (which create the group roles geoledger_projector and geoledger_reader) and
-- before the services start. Run again at every `up`: a role is created once, its password set
-- to the env file's each time, so changing the password there and running `up` changes it.
--
--   psql -v projector_password=… -v query_password=… -f db-roles.sql

\set ON_ERROR_STOP on

SELECT 'CREATE ROLE geoledger_projector_login LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'geoledger_projector_login') \gexec
SELECT 'CREATE ROLE geoledger_query_login LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'geoledger_query_login') \gexec

ALTER ROLE geoledger_projector_login PASSWORD :'projector_password';
ALTER ROLE geoledger_query_login PASSWORD :'query_password';

-- Granting a membership the role already has only draws a notice.
GRANT geoledger_projector TO geoledger_projector_login;
GRANT geoledger_reader TO geoledger_query_login;
