-- Courses, their members, lessons and enrollments (issue #7).

CREATE TABLE courses (
    id                uuid PRIMARY KEY,
    owner_id          uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    title             text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary           text NOT NULL DEFAULT '' CHECK (length(summary) <= 500),
    -- Markdown as the teacher wrote it, and the sanitized HTML rendered from it.
    description       text NOT NULL DEFAULT '' CHECK (length(description) <= 50000),
    description_html  text NOT NULL DEFAULT '',
    -- Minor units (fen, cents); 0 = free.
    price_amount      bigint NOT NULL DEFAULT 0 CHECK (price_amount >= 0),
    currency          text NOT NULL DEFAULT 'CNY' CHECK (currency ~ '^[A-Z]{3}$'),
    visibility        text NOT NULL DEFAULT 'draft'
                      CHECK (visibility IN ('draft', 'published', 'archived')),
    tags              text[] NOT NULL DEFAULT ARRAY[]::text[] CHECK (cardinality(tags) <= 20),
    language          text NOT NULL DEFAULT 'en' CHECK (length(language) BETWEEN 2 AND 35),
    -- Full-text search document over title, summary and tags (kept by the trigger below).
    search            tsvector NOT NULL DEFAULT ''::tsvector,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX courses_owner_idx ON courses (owner_id, id);
CREATE INDEX courses_published_idx ON courses (id) WHERE visibility = 'published';
CREATE INDEX courses_search_idx ON courses USING gin (search);
CREATE INDEX courses_tags_idx ON courses USING gin (tags);

CREATE FUNCTION courses_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search :=
        setweight(to_tsvector('simple', NEW.title), 'A') ||
        setweight(to_tsvector('simple', array_to_string(NEW.tags, ' ')), 'B') ||
        setweight(to_tsvector('simple', NEW.summary), 'C');
    RETURN NEW;
END $$;

CREATE TRIGGER courses_search BEFORE INSERT OR UPDATE OF title, summary, tags ON courses
    FOR EACH ROW EXECUTE FUNCTION courses_search_update();

-- Co-teachers and teaching assistants (the owner is not a row here).
CREATE TABLE course_members (
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('co_teacher', 'assistant')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (course_id, user_id)
);

CREATE INDEX course_members_user_idx ON course_members (user_id);

CREATE TABLE lessons (
    id                uuid PRIMARY KEY,
    course_id         uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    title             text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    kind              text NOT NULL CHECK (kind IN ('broadcast', 'meeting')),
    -- UTC; `time_zone` (IANA name) is how the teacher scheduled it, for display.
    starts_at         timestamptz NOT NULL,
    duration_minutes  integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    time_zone         text NOT NULL DEFAULT 'UTC' CHECK (length(time_zone) BETWEEN 1 AND 64),
    -- Open to everyone (signed in or not) when the course is published.
    free_preview      boolean NOT NULL DEFAULT false,
    -- Its own live stream, owned by the course owner.
    live_stream_id    uuid NOT NULL UNIQUE REFERENCES live_streams (id) ON DELETE RESTRICT,
    -- Jitsi room name (unguessable: 128 random bits).
    room_name         text NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX lessons_course_idx ON lessons (course_id, starts_at, id);

CREATE TABLE enrollments (
    id          uuid PRIMARY KEY,
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- active: has access; left: the student left; refunded: the order was refunded.
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'left', 'refunded')),
    -- How it became active: free course, granted by a teacher/admin, or a paid order.
    source      text NOT NULL CHECK (source IN ('free', 'grant', 'order')),
    granted_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    order_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT enrollments_course_user_key UNIQUE (course_id, user_id)
);

CREATE INDEX enrollments_user_idx ON enrollments (user_id, id);
