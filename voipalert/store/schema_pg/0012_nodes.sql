-- voipalert schema 12 on PostgreSQL: several active nodes on one database
-- (docs/multi-node.md). SQLite keeps one engine per file (store.engine_lock) and its
-- schema/0012_nodes.sql is empty.
--
-- Lease and heartbeat times are TIMESTAMPTZ compared with the database server's now(),
-- unlike the store's other times (ISO text written by the node): several nodes' clocks
-- may disagree, the server's is the one they share.
--
-- A node says it is alive: one row per running serve, its heartbeat renewed every
-- lease_seconds / 3. A node whose heartbeat is older than lease_seconds is dead.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),  -- random per start, never reused
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopping BOOLEAN NOT NULL DEFAULT FALSE  -- set at SIGTERM: it takes no new work
);

-- The lease on an alert's escalation: only the node holding an unexpired lease plans and
-- dials for the alert (store.cluster.leased_snapshot).
ALTER TABLE alerts ADD COLUMN lease_node TEXT REFERENCES nodes(id) ON DELETE SET NULL;
ALTER TABLE alerts ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX alerts_lease_node ON alerts (lease_node) WHERE lease_node IS NOT NULL;

-- Which node dials an attempt, set by start_attempt under the alert's lease.
ALTER TABLE attempts ADD COLUMN node TEXT REFERENCES nodes(id) ON DELETE SET NULL;
CREATE INDEX attempts_in_flight_by_node ON attempts (node) WHERE state = 'in_flight';

-- An alert acknowledged, resolved or closed wakes every node's engine: NOTIFY is sent at
-- the commit of the very transaction that changed it (PostgreSQL delivers notifications
-- only on commit, and never those of a rolled-back transaction), whichever code path made
-- the change (API, e-mail, key press, silencer). The node holding a call for the alert
-- re-plans and hangs up (docs/multi-node.md, "Acks reach the node holding the call").
-- A new alert notifies nobody: the node that stored it wakes its own engine, which takes
-- it; waking every node for each new alert made them all compete for the write lock
-- (create-to-dial median 288 ms with it, 108 ms without: benchmarks/nodes.py).
CREATE FUNCTION alerts_notify_nodes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voipalert_alert', CAST(NEW.id AS TEXT));
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_notify_status AFTER UPDATE OF status ON alerts
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION alerts_notify_nodes();
