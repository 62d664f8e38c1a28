-- Which node holds what, so that nodes sharing one database leave each other's work alone
-- (src/node.rs). A node's id is kept in its spool folder: a restarted process is the same node
-- and recovers its own sessions and recordings (their segments are in that spool), and only
-- those. A node's heartbeat tells the others it is alive; the streams of a node silent for
-- live.node_lost_after_s are ended by another node.
CREATE TABLE cluster_nodes (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The node whose live session made the stream active (null: before this migration).
ALTER TABLE live_streams ADD COLUMN node_id uuid;
-- The node whose spool holds the recording's segments until they are uploaded.
ALTER TABLE recordings ADD COLUMN node_id uuid;
