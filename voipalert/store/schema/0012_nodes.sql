-- voipalert schema 12: nothing on SQLite. Schema 12 adds, on PostgreSQL only, what several
-- active nodes on one database need (schema_pg/0012_nodes.sql, docs/multi-node.md); a
-- SQLite file keeps exactly one engine (store.engine_lock). The number is used here too so
-- that both backends stay at the same schema version.
SELECT 1;
