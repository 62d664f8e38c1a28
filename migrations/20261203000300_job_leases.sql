-- Periodic jobs (retention, payments reconciliation, lesson notifications, upload clean-up) run
-- on every node; a lease per job makes one node run each of them per interval: the node that
-- claims it holds it until `until` (its interval), so the others skip their ticks meanwhile.
-- A node that dies mid-run loses nothing: its lease simply runs out.
CREATE TABLE job_leases (
    name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    holder     text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    started_at timestamptz NOT NULL,
    until      timestamptz NOT NULL
);
