//! Queries of the live tools: questions and votes, polls and answers, markers, reaction
//! buckets and attendance intervals. Every function takes `&mut PgConnection`.
//!
//! Counting once is the schema's job, not the caller's: a vote is a row keyed by
//! `(question, user)` and the question's `votes` moves in the same statement by the rows that
//! really changed; an answer is a row keyed by `(poll, user)`; what a frame creates is unique per
//! `(user, client_id)`. Two nodes taking the same student's frames cannot count them twice.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{MarkerKind, PollResults, PollSpec, PollView, QuestionState, QuestionView, Reaction};

#[derive(Debug, Clone)]
pub struct QuestionRow {
    pub id: Uuid,
    pub lesson_id: Uuid,
    pub author_id: Uuid,
    pub body: String,
    pub anonymous: bool,
    pub state: String,
    pub votes: i32,
    pub created_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
    pub pinned_at: Option<OffsetDateTime>,
}

impl QuestionRow {
    /// The view for a reader: `staff` see authors of anonymous questions.
    pub fn view(&self, staff: bool, reader: Option<Uuid>, voted: bool) -> QuestionView {
        QuestionView {
            id: self.id,
            lesson_id: self.lesson_id,
            body: self.body.clone(),
            anonymous: self.anonymous,
            author_id: (staff || !self.anonymous || reader == Some(self.author_id))
                .then_some(self.author_id),
            mine: reader == Some(self.author_id),
            votes: self.votes,
            voted,
            state: QuestionState::parse(&self.state).unwrap_or(QuestionState::Open),
            created_at: self.created_at,
            answered_at: self.answered_at,
            pinned_at: self.pinned_at,
        }
    }
}

/// Store a question, once per `(author, client_id)`; a retry returns the stored one.
pub async fn ask(
    conn: &mut PgConnection,
    lesson: Uuid,
    author: Uuid,
    client_id: &str,
    body: &str,
    anonymous: bool,
) -> Result<QuestionRow, sqlx::Error> {
    let inserted = sqlx::query_as!(
        QuestionRow,
        r#"INSERT INTO lesson_questions (id, lesson_id, author_id, client_id, body, anonymous)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (author_id, client_id) DO NOTHING
           RETURNING id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                     answered_at, pinned_at"#,
        Uuid::now_v7(),
        lesson,
        author,
        client_id,
        body,
        anonymous,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(q) => Ok(q),
        None => {
            sqlx::query_as!(
                QuestionRow,
                r#"SELECT id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                      answered_at, pinned_at
               FROM lesson_questions WHERE author_id = $1 AND client_id = $2"#,
                author,
                client_id
            )
            .fetch_one(conn)
            .await
        }
    }
}

pub async fn question(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<QuestionRow>, sqlx::Error> {
    sqlx::query_as!(
        QuestionRow,
        r#"SELECT id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                  answered_at, pinned_at
           FROM lesson_questions WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Set (`on`) or take back `user`'s vote; the count moves only by what changed.
pub async fn vote(
    conn: &mut PgConnection,
    question: Uuid,
    user: Uuid,
    on: bool,
) -> Result<Option<QuestionRow>, sqlx::Error> {
    if on {
        sqlx::query_as!(
            QuestionRow,
            r#"WITH ins AS (
                   INSERT INTO lesson_question_votes (question_id, user_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING 1)
               UPDATE lesson_questions SET votes = votes + (SELECT count(*) FROM ins)::int
               WHERE id = $1
               RETURNING id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                         answered_at, pinned_at"#,
            question,
            user
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            QuestionRow,
            r#"WITH del AS (
                   DELETE FROM lesson_question_votes WHERE question_id = $1 AND user_id = $2
                   RETURNING 1)
               UPDATE lesson_questions SET votes = votes - (SELECT count(*) FROM del)::int
               WHERE id = $1
               RETURNING id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                         answered_at, pinned_at"#,
            question,
            user
        )
        .fetch_optional(conn)
        .await
    }
}

pub async fn set_state(
    conn: &mut PgConnection,
    question: Uuid,
    state: QuestionState,
) -> Result<Option<QuestionRow>, sqlx::Error> {
    sqlx::query_as!(
        QuestionRow,
        r#"UPDATE lesson_questions
           SET state = $2,
               answered_at = CASE WHEN $2 = 'answered' THEN coalesce(answered_at, now()) ELSE answered_at END,
               pinned_at = CASE WHEN $2 = 'pinned' THEN coalesce(pinned_at, now()) ELSE pinned_at END
           WHERE id = $1
           RETURNING id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                     answered_at, pinned_at"#,
        question,
        state.as_str()
    )
    .fetch_optional(conn)
    .await
}

/// The questions of a lesson (at most 1,000, oldest first) and which of them `reader` voted for.
pub async fn questions(
    conn: &mut PgConnection,
    lesson: Uuid,
    reader: Uuid,
) -> Result<(Vec<QuestionRow>, Vec<Uuid>), sqlx::Error> {
    let rows = sqlx::query_as!(
        QuestionRow,
        r#"SELECT id, lesson_id, author_id, body, anonymous, state, votes, created_at,
                  answered_at, pinned_at
           FROM lesson_questions WHERE lesson_id = $1 ORDER BY created_at, id LIMIT 1000"#,
        lesson
    )
    .fetch_all(&mut *conn)
    .await?;
    let voted = sqlx::query_scalar!(
        r#"SELECT v.question_id FROM lesson_question_votes v
           JOIN lesson_questions q ON q.id = v.question_id
           WHERE q.lesson_id = $1 AND v.user_id = $2"#,
        lesson,
        reader
    )
    .fetch_all(conn)
    .await?;
    Ok((rows, voted))
}

#[derive(Debug, Clone)]
pub struct PollRow {
    pub id: Uuid,
    pub lesson_id: Uuid,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub correct: Option<Vec<i16>>,
    pub closes_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    pub results_shown: bool,
    pub created_at: OffsetDateTime,
}

impl PollRow {
    pub fn closed(&self) -> bool {
        self.closed_at.is_some()
            || self
                .closes_at
                .is_some_and(|c| c <= OffsetDateTime::now_utc())
    }

    /// The view for a reader (`staff` always see the right answer).
    pub fn view(&self, staff: bool) -> PollView {
        PollView {
            id: self.id,
            lesson_id: self.lesson_id,
            question: self.question.clone(),
            options: self.options.clone(),
            multiple: self.multiple,
            correct: if staff || self.results_shown {
                self.correct.clone()
            } else {
                None
            },
            quiz: self.correct.is_some(),
            closes_at: self.closes_at,
            closed: self.closed(),
            results_shown: self.results_shown,
            created_at: self.created_at,
        }
    }
}

/// Open a poll (closing the lesson's open one, returned second). A retry of the same
/// `(teacher, client_id)` returns the stored poll and closes nothing.
pub async fn open_poll(
    conn: &mut PgConnection,
    lesson: Uuid,
    by: Uuid,
    client_id: &str,
    spec: &PollSpec,
) -> Result<(PollRow, Option<PollRow>), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let existing = sqlx::query_as!(
        PollRow,
        r#"SELECT id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                  results_shown, created_at
           FROM lesson_polls WHERE created_by = $1 AND client_id = $2"#,
        by,
        client_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(p) = existing {
        return Ok((p, None));
    }
    let previous = sqlx::query_as!(
        PollRow,
        r#"UPDATE lesson_polls SET closed_at = now()
           WHERE lesson_id = $1 AND closed_at IS NULL
           RETURNING id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                     results_shown, created_at"#,
        lesson
    )
    .fetch_optional(&mut *tx)
    .await?;
    let poll = sqlx::query_as!(
        PollRow,
        r#"INSERT INTO lesson_polls (id, lesson_id, created_by, client_id, question, options,
                                     multiple, correct, closes_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9::bigint))
           RETURNING id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                     results_shown, created_at"#,
        Uuid::now_v7(),
        lesson,
        by,
        client_id,
        spec.question,
        &spec.options,
        spec.multiple,
        spec.correct.as_deref() as Option<&[i16]>,
        spec.duration_s,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((poll, previous))
}

pub async fn poll(conn: &mut PgConnection, id: Uuid) -> Result<Option<PollRow>, sqlx::Error> {
    sqlx::query_as!(
        PollRow,
        r#"SELECT id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                  results_shown, created_at
           FROM lesson_polls WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The polls of a lesson, oldest first (at most 200).
pub async fn polls(conn: &mut PgConnection, lesson: Uuid) -> Result<Vec<PollRow>, sqlx::Error> {
    sqlx::query_as!(
        PollRow,
        r#"SELECT id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                  results_shown, created_at
           FROM lesson_polls WHERE lesson_id = $1 ORDER BY created_at, id LIMIT 200"#,
        lesson
    )
    .fetch_all(conn)
    .await
}

/// `user`'s answers to the polls of a lesson.
pub async fn my_answers(
    conn: &mut PgConnection,
    lesson: Uuid,
    user: Uuid,
) -> Result<Vec<(Uuid, Vec<i16>)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT a.poll_id, a.choices FROM lesson_poll_answers a
           JOIN lesson_polls p ON p.id = a.poll_id
           WHERE p.lesson_id = $1 AND a.user_id = $2"#,
        lesson,
        user
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.poll_id, r.choices))
    .collect())
}

/// Why an answer was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerRefused {
    Closed,
}

/// Store (or change) `user`'s answer while the poll is open.
pub async fn answer(
    conn: &mut PgConnection,
    poll: Uuid,
    user: Uuid,
    choices: &[i16],
) -> Result<Result<(), AnswerRefused>, sqlx::Error> {
    let done = sqlx::query!(
        r#"INSERT INTO lesson_poll_answers (poll_id, user_id, choices)
           SELECT id, $2, $3 FROM lesson_polls
           WHERE id = $1 AND closed_at IS NULL AND (closes_at IS NULL OR closes_at > now())
           ON CONFLICT (poll_id, user_id) DO UPDATE
               SET choices = EXCLUDED.choices, answered_at = now(),
                   rev = nextval('lesson_poll_answer_rev')
               WHERE lesson_poll_answers.choices IS DISTINCT FROM EXCLUDED.choices"#,
        poll,
        user,
        choices
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        return Ok(Ok(()));
    }
    // Nothing written: the same answer again (fine), or the poll is closed.
    let open = sqlx::query_scalar!(
        r#"SELECT (closed_at IS NULL AND (closes_at IS NULL OR closes_at > now())) AS "open!"
           FROM lesson_polls WHERE id = $1"#,
        poll
    )
    .fetch_one(conn)
    .await?;
    Ok(if open {
        Ok(())
    } else {
        Err(AnswerRefused::Closed)
    })
}

pub async fn close_poll(
    conn: &mut PgConnection,
    poll: Uuid,
) -> Result<Option<PollRow>, sqlx::Error> {
    sqlx::query_as!(
        PollRow,
        r#"UPDATE lesson_polls
           SET closed_at = coalesce(closed_at, least(now(), coalesce(closes_at, now())))
           WHERE id = $1
           RETURNING id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                     results_shown, created_at"#,
        poll
    )
    .fetch_optional(conn)
    .await
}

pub async fn show_results(
    conn: &mut PgConnection,
    poll: Uuid,
    show: bool,
) -> Result<Option<PollRow>, sqlx::Error> {
    sqlx::query_as!(
        PollRow,
        r#"UPDATE lesson_polls SET results_shown = $2 WHERE id = $1
           RETURNING id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                     results_shown, created_at"#,
        poll,
        show
    )
    .fetch_optional(conn)
    .await
}

/// Polls whose timer ran out, closed now (each returned by exactly one caller, whichever node).
pub async fn expire_polls(conn: &mut PgConnection) -> Result<Vec<PollRow>, sqlx::Error> {
    sqlx::query_as!(
        PollRow,
        r#"UPDATE lesson_polls SET closed_at = closes_at
           WHERE closed_at IS NULL AND closes_at <= now()
           RETURNING id, lesson_id, question, options, multiple, correct, closes_at, closed_at,
                     results_shown, created_at"#,
    )
    .fetch_all(conn)
    .await
}

/// The exact count per option from the stored answers.
pub async fn tally(
    conn: &mut PgConnection,
    poll: Uuid,
    options: usize,
) -> Result<PollResults, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "answered!", coalesce(max(rev), 0) AS "rev!",
                  coalesce((SELECT array_agg(n ORDER BY i)
                            FROM generate_series(0, $2::int - 1) i,
                                 LATERAL (SELECT count(*) AS n FROM lesson_poll_answers b
                                          WHERE b.poll_id = $1 AND i = ANY(b.choices)) c),
                           '{}') AS "counts!: Vec<i64>"
           FROM lesson_poll_answers WHERE poll_id = $1"#,
        poll,
        options as i32
    )
    .fetch_one(conn)
    .await?;
    Ok(PollResults {
        counts: r.counts,
        answered: r.answered,
        rev: r.rev,
    })
}

#[derive(Debug, Clone)]
pub struct MarkerRow {
    pub id: Uuid,
    pub kind: String,
    pub at: OffsetDateTime,
}

/// Store a marker once per `(user, client_id)`; `true` when it is new.
pub async fn mark(
    conn: &mut PgConnection,
    lesson: Uuid,
    user: Uuid,
    client_id: &str,
    kind: MarkerKind,
) -> Result<(MarkerRow, bool), sqlx::Error> {
    let inserted = sqlx::query_as!(
        MarkerRow,
        r#"INSERT INTO lesson_markers (id, lesson_id, user_id, client_id, kind)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id, client_id) DO NOTHING
           RETURNING id, kind, at"#,
        Uuid::now_v7(),
        lesson,
        user,
        client_id,
        kind.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(m) = inserted {
        return Ok((m, true));
    }
    let m = sqlx::query_as!(
        MarkerRow,
        "SELECT id, kind, at FROM lesson_markers WHERE user_id = $1 AND client_id = $2",
        user,
        client_id
    )
    .fetch_one(conn)
    .await?;
    Ok((m, false))
}

/// Add one node's reaction counts of a moment to the lesson's 10 s bucket.
pub async fn add_reactions(
    conn: &mut PgConnection,
    lesson: Uuid,
    at: OffsetDateTime,
    counts: &[(Reaction, i32)],
) -> Result<(), sqlx::Error> {
    let kinds: Vec<&str> = counts.iter().map(|(r, _)| r.as_str()).collect();
    let ns: Vec<i32> = counts.iter().map(|(_, n)| *n).collect();
    sqlx::query!(
        r#"INSERT INTO lesson_reaction_buckets (lesson_id, bucket, kind, count)
           SELECT $1, to_timestamp(floor(extract(epoch FROM $2::timestamptz) / 10) * 10), k, n
           FROM unnest($3::text[], $4::int[]) AS t(k, n)
           ON CONFLICT (lesson_id, bucket, kind)
           DO UPDATE SET count = lesson_reaction_buckets.count + EXCLUDED.count"#,
        lesson,
        at,
        &kinds as &[&str],
        &ns
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Open an attendance interval (a socket subscribed to the lesson's room).
pub async fn attend(
    conn: &mut PgConnection,
    lesson: Uuid,
    user: Uuid,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO lesson_attendance (id, lesson_id, user_id) VALUES ($1, $2, $3)",
        id,
        lesson,
        user
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// The sockets holding these intervals are alive (every heartbeat).
pub async fn attendance_heartbeat(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE lesson_attendance SET last_seen_at = now() WHERE id = ANY($1) AND ended_at IS NULL",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Close intervals (unsubscribe, disconnect).
pub async fn leave(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE lesson_attendance SET last_seen_at = now(), ended_at = now()
         WHERE id = ANY($1) AND ended_at IS NULL",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
