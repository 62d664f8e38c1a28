-- Live interaction and learning records (issue #20; docs/interaction.md): questions and their
-- votes, polls and answers, markers, reaction counts per 10 s, attendance intervals, replay
-- coverage, chapters and viewing-quality reports. Raised hands live in Redis (a queue, not a
-- record).

-- Q&A. One question per (author, client_id): a retried `ask` finds the stored one.
CREATE TABLE lesson_questions (
    id           uuid PRIMARY KEY,
    lesson_id    uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    author_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 500),
    anonymous    boolean NOT NULL DEFAULT false,
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'answered', 'pinned', 'dismissed')),
    -- Kept equal to the rows of lesson_question_votes (updated in the vote's transaction).
    votes        integer NOT NULL DEFAULT 0 CHECK (votes >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    answered_at  timestamptz,
    pinned_at    timestamptz,
    UNIQUE (author_id, client_id)
);
CREATE INDEX lesson_questions_lesson_idx ON lesson_questions (lesson_id, created_at);

-- One vote per student and question: a reconnect or another node cannot count it twice.
CREATE TABLE lesson_question_votes (
    question_id uuid NOT NULL REFERENCES lesson_questions (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (question_id, user_id)
);

-- Polls and quizzes. `correct` set: a quiz. At most one open poll per lesson (opening one
-- closes the previous, in one transaction).
CREATE TABLE lesson_polls (
    id             uuid PRIMARY KEY,
    lesson_id      uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    created_by     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id      text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
    question       text NOT NULL CHECK (length(question) BETWEEN 1 AND 500),
    options        text[] NOT NULL CHECK (cardinality(options) BETWEEN 2 AND 10),
    multiple       boolean NOT NULL DEFAULT false,
    correct        smallint[],
    closes_at      timestamptz,
    closed_at      timestamptz,
    results_shown  boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (created_by, client_id)
);
CREATE INDEX lesson_polls_lesson_idx ON lesson_polls (lesson_id, created_at);
CREATE UNIQUE INDEX lesson_polls_one_open ON lesson_polls (lesson_id) WHERE closed_at IS NULL;
CREATE INDEX lesson_polls_timer_idx ON lesson_polls (closes_at) WHERE closed_at IS NULL AND closes_at IS NOT NULL;

-- Every answer or change of answer takes a new number: results carry the highest, so a client
-- hearing tallies from several nodes keeps the newest.
CREATE SEQUENCE lesson_poll_answer_rev;

-- The student's answer (the last one counts while the poll is open).
CREATE TABLE lesson_poll_answers (
    poll_id     uuid NOT NULL REFERENCES lesson_polls (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    choices     smallint[] NOT NULL CHECK (cardinality(choices) BETWEEN 1 AND 10),
    rev         bigint NOT NULL DEFAULT nextval('lesson_poll_answer_rev'),
    answered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, user_id)
);

-- "Confused" and "bookmark" marks at a moment of the live lesson.
CREATE TABLE lesson_markers (
    id         uuid PRIMARY KEY,
    lesson_id  uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
    kind       text NOT NULL CHECK (kind IN ('confused', 'bookmark')),
    at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, client_id)
);
CREATE INDEX lesson_markers_lesson_idx ON lesson_markers (lesson_id, at);

-- Reactions added up per lesson, kind and 10-second bucket (each node adds its own counts).
CREATE TABLE lesson_reaction_buckets (
    lesson_id  uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    bucket     timestamptz NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('thumbs_up', 'heart', 'laugh', 'wow', 'clap', 'lost')),
    count      integer NOT NULL CHECK (count >= 0),
    PRIMARY KEY (lesson_id, bucket, kind)
);

-- Attendance: one interval per subscription of a socket to the lesson's room. Refreshed at
-- every heartbeat; an interval a dead node left open ends at its last heartbeat.
CREATE TABLE lesson_attendance (
    id            uuid PRIMARY KEY,
    lesson_id     uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    CHECK (last_seen_at >= started_at)
);
CREATE INDEX lesson_attendance_lesson_idx ON lesson_attendance (lesson_id, user_id);

-- The seconds of a recording a user has played (merged: overlapping plays count once).
CREATE TABLE recording_progress (
    recording_id uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    watched      int4multirange NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recording_id, user_id)
);

-- Chapters set by hand (pinned questions are chapters too, derived).
CREATE TABLE recording_chapters (
    recording_id uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    t_ms         bigint NOT NULL CHECK (t_ms >= 0),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    PRIMARY KEY (recording_id, t_ms)
);

-- Viewing quality: one row per playback session (a report replaces its running totals).
CREATE TABLE playback_reports (
    session_id     uuid PRIMARY KEY,
    user_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    lesson_id      uuid REFERENCES lessons (id) ON DELETE CASCADE,
    recording_id   uuid REFERENCES recordings (id) ON DELETE CASCADE,
    live           boolean NOT NULL,
    mode           text NOT NULL CHECK (mode IN ('webrtc', 'll-hls', 'hls', 'native')),
    rendition      text CHECK (rendition IS NULL OR length(rendition) <= 16),
    startup_ms     integer CHECK (startup_ms IS NULL OR startup_ms >= 0),
    rebuffer_count integer NOT NULL CHECK (rebuffer_count >= 0),
    rebuffer_ms    bigint NOT NULL CHECK (rebuffer_ms >= 0),
    played_ms      bigint NOT NULL CHECK (played_ms >= 0),
    errors         integer NOT NULL CHECK (errors >= 0),
    latency_ms     integer CHECK (latency_ms IS NULL OR latency_ms >= 0),
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (lesson_id IS NOT NULL OR recording_id IS NOT NULL)
);
CREATE INDEX playback_reports_lesson_idx ON playback_reports (lesson_id, updated_at) WHERE lesson_id IS NOT NULL;
