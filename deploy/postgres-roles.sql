-- Run once by the postgres image on a new volume (/docker-entrypoint-initdb.d), as its
-- superuser, in the database "txstats": the three roles of docs/operations.md.
--   txstats            owns the database and its schema; only `python -m projector migrate`
--                      (compose's "migrate" service) connects as it
--   txstats_projector  the projector: rows of every table (granted by migrate)
--   txstats_query      the query API: reads them (granted by migrate)
-- The passwords come from the service's environment (\getenv: psql 15+).
\getenv owner_password PG_OWNER_PASSWORD
\getenv projector_password PG_PROJECTOR_PASSWORD
\getenv query_password PG_QUERY_PASSWORD

CREATE ROLE txstats LOGIN PASSWORD :'owner_password';
CREATE ROLE txstats_projector LOGIN PASSWORD :'projector_password';
CREATE ROLE txstats_query LOGIN PASSWORD :'query_password';
-- Since PostgreSQL 15 the database's owner also owns its schema "public", where nobody else
-- may create anything.
ALTER DATABASE txstats OWNER TO txstats;
