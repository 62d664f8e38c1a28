-- Where the other nodes reach a node's HTTP (live.internal_url): a node that gets a request for
-- a live stream another node holds forwards it there (src/live/peers.rs).
ALTER TABLE cluster_nodes ADD COLUMN internal_url text
    CHECK (internal_url IS NULL OR length(internal_url) BETWEEN 1 AND 2000);
