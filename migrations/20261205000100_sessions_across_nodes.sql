-- A live session can go on on another node (src/live/resume.rs): its recording goes on there
-- too, so a recording's segments may sit in several nodes' spools before their upload. Each
-- segment names the node whose spool holds it, so the segments a lost node never uploaded are
-- known (and marked lost) even in a recording that another node holds now.
ALTER TABLE recording_segments ADD COLUMN node_id uuid;

-- A session continued on another node after its recording was already being finished gets a
-- second recording under the same session id.
ALTER TABLE recordings DROP CONSTRAINT recordings_session_id_key;
CREATE INDEX recordings_session_idx ON recordings (session_id);
