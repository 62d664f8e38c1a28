//! The live tools' frames on a connection (docs/interaction.md): who may send which, what is
//! stored, what is published, and the one `ack` or `error` per `client_id`.
//!
//! Every frame needs a subscription to a lesson room; the subscription's access decision (the
//! course policy, bans, refreshed like the chat's) says whether the caller is a student or a
//! moderator there.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Admission, Conn, Flow, Ws, error, send_json};
use crate::{
    chat::{
        ChannelName, ChatError, ChatText, ClientId,
        hub::{self, Audience, Wire},
    },
    courses::{LessonKind, store as courses},
    interaction::{
        Frame, MarkerKind, PollSpec, QUESTION_MAX_CHARS, QuestionState, RaisedHand, Reaction,
        choice_set,
        store::{self, AnswerRefused, QuestionRow},
        tally::{Count, poll_wire},
    },
};

/// Reactions per connection and second.
const REACTIONS_PER_S: u32 = 5;
/// How long a reaction's `client_id` is remembered (a retry within it is not counted again).
const REACTION_ID_TTL_S: u64 = 600;
/// The raised-hands queue sent to moderators holds at most this many.
const HANDS_SHOWN: isize = 200;

/// The frame's outcome before it is written: an ack with one field, or an error.
enum Reply {
    Ack(&'static str, Value),
    Refuse(ChatError, String),
}

fn refuse(e: ChatError, detail: impl Into<String>) -> anyhow::Result<Reply> {
    Ok(Reply::Refuse(e, detail.into()))
}

impl Conn {
    pub(super) async fn interact(&mut self, ws: &mut Ws, f: Frame) -> anyhow::Result<Flow> {
        let cid = match ClientId::parse(f.client_id()) {
            Ok(c) => c,
            Err(e) => return Ok(error(ws, None, ChatError::Invalid, e.to_string()).await),
        };
        let channel = f.channel().to_owned();
        if self.subscribed(&channel).is_none() {
            let detail = format!("subscribe to {channel} first");
            return Ok(error(ws, Some(cid.as_str()), ChatError::NotSubscribed, detail).await);
        }
        let Ok(name @ ChannelName::Lesson(lesson)) = ChannelName::parse(&channel) else {
            let detail = "the live tools work in lesson rooms";
            return Ok(error(ws, Some(cid.as_str()), ChatError::Invalid, detail).await);
        };
        let a = self.decide(name).await?;
        let reply = if !a.read {
            Reply::Refuse(ChatError::Forbidden, format!("no access to {channel}"))
        } else {
            let staff = a.moderate;
            match f {
                Frame::Ask {
                    body, anonymous, ..
                } => self.ask(name, lesson, &cid, &body, anonymous).await?,
                Frame::Vote {
                    question_id, on, ..
                } if !staff => self.vote(lesson, question_id, on).await?,
                Frame::QuestionState {
                    question_id, state, ..
                } if staff => self.question_state(lesson, question_id, &state).await?,
                Frame::PollOpen {
                    question,
                    options,
                    multiple,
                    correct,
                    duration_s,
                    ..
                } if staff => {
                    let spec = PollSpec::parse(
                        &question,
                        &options,
                        multiple,
                        correct.as_deref(),
                        duration_s,
                    );
                    match spec {
                        Ok(spec) => self.open_poll(lesson, &cid, &spec).await?,
                        Err(e) => Reply::Refuse(ChatError::Invalid, e.to_string()),
                    }
                }
                Frame::PollAnswer {
                    poll_id, choices, ..
                } if !staff => self.answer(lesson, poll_id, &choices).await?,
                Frame::PollClose { poll_id, .. } if staff => {
                    self.change_poll(lesson, poll_id, None).await?
                }
                Frame::PollShow { poll_id, show, .. } if staff => {
                    self.change_poll(lesson, poll_id, Some(show)).await?
                }
                Frame::Hand { up, .. } if !staff => self.hand(lesson, up).await?,
                Frame::CallOn { user_id, .. } if staff => self.call_on(lesson, user_id).await?,
                Frame::HandsDown { user_id, .. } if staff => {
                    self.hands_down(lesson, user_id).await?
                }
                Frame::LiveReaction { reaction, .. } => {
                    self.live_reaction(lesson, &cid, &reaction).await?
                }
                Frame::Mark { kind, .. } if !staff => self.mark(lesson, &cid, &kind).await?,
                _ if staff => Reply::Refuse(ChatError::Forbidden, "students only".into()),
                _ => Reply::Refuse(ChatError::Forbidden, "moderators only".into()),
            }
        };
        Ok(match reply {
            Reply::Ack(key, value) => {
                let mut ack = json!({"type": "ack", "client_id": cid.as_str(), "channel": channel});
                ack[key] = value;
                metrics::counter!("interaction_acks_total").increment(1);
                send_json(ws, ack).await
            }
            Reply::Refuse(code, detail) => error(ws, Some(cid.as_str()), code, detail).await,
        })
    }

    async fn publish(&self, wire: &Wire) {
        if let Err(e) = hub::publish(&self.state.redis, &self.keys(), wire).await {
            tracing::warn!(error = %e, "interaction: cannot publish");
        }
    }

    /// `question` to the room: students without the author of anonymous questions.
    async fn publish_question(&self, q: &QuestionRow) {
        let channel = format!("lesson:{}", q.lesson_id);
        self.publish(&Wire::Live {
            frame: json!({"type": "question", "channel": channel, "question": q.view(false, None, false)}),
            staff_frame: Some(
                json!({"type": "question", "channel": channel, "question": q.view(true, None, false)}),
            ),
            channel,
            audience: Audience::All,
        })
        .await;
    }

    async fn ask(
        &mut self,
        name: ChannelName,
        lesson: Uuid,
        cid: &ClientId,
        body: &str,
        anonymous: bool,
    ) -> anyhow::Result<Reply> {
        let text = match ChatText::parse(body, QUESTION_MAX_CHARS) {
            Ok(t) => t,
            Err(e) => return refuse(ChatError::Invalid, e.to_string()),
        };
        let mut db = self.state.db.acquire().await?;
        // A retry is acknowledged again without the admission rules (it was admitted once).
        let known = sqlx::query_scalar!(
            "SELECT id FROM lesson_questions WHERE author_id = $1 AND client_id = $2",
            self.caller.id,
            cid.as_str()
        )
        .fetch_optional(&mut *db)
        .await?;
        drop(db);
        if known.is_none()
            && let Admission::Refuse(why) = self.admit(name).await?
        {
            let (code, detail) = why.frame(&format!("lesson:{lesson}"));
            return refuse(code, detail);
        }
        let mut db = self.state.db.acquire().await?;
        let q = store::ask(
            &mut db,
            lesson,
            self.caller.id,
            cid.as_str(),
            text.as_str(),
            anonymous,
        )
        .await?;
        drop(db);
        if q.lesson_id != lesson {
            return refuse(ChatError::Invalid, "client_id was used in another lesson");
        }
        self.publish_question(&q).await;
        Ok(Reply::Ack(
            "question",
            json!(q.view(false, Some(self.caller.id), false)),
        ))
    }

    /// The question if it belongs to this lesson.
    async fn lesson_question(&self, lesson: Uuid, id: Uuid) -> anyhow::Result<Option<QuestionRow>> {
        let mut db = self.state.db.acquire().await?;
        Ok(store::question(&mut db, id)
            .await?
            .filter(|q| q.lesson_id == lesson))
    }

    async fn vote(&mut self, lesson: Uuid, question: Uuid, on: bool) -> anyhow::Result<Reply> {
        let Some(q) = self.lesson_question(lesson, question).await? else {
            return refuse(ChatError::NotFound, "no such question in this lesson");
        };
        if q.author_id == self.caller.id {
            return refuse(
                ChatError::Forbidden,
                "you cannot vote for your own question",
            );
        }
        let mut db = self.state.db.acquire().await?;
        let Some(q) = store::vote(&mut db, question, self.caller.id, on).await? else {
            return refuse(ChatError::NotFound, "no such question in this lesson");
        };
        drop(db);
        self.publish_question(&q).await;
        let mut view = q.view(false, Some(self.caller.id), on);
        view.voted = on;
        Ok(Reply::Ack("question", json!(view)))
    }

    async fn question_state(
        &mut self,
        lesson: Uuid,
        question: Uuid,
        state: &str,
    ) -> anyhow::Result<Reply> {
        let state = match QuestionState::parse(state) {
            Ok(s) => s,
            Err(e) => return refuse(ChatError::Invalid, e.to_string()),
        };
        if self.lesson_question(lesson, question).await?.is_none() {
            return refuse(ChatError::NotFound, "no such question in this lesson");
        }
        let mut db = self.state.db.acquire().await?;
        let Some(q) = store::set_state(&mut db, question, state).await? else {
            return refuse(ChatError::NotFound, "no such question in this lesson");
        };
        drop(db);
        self.publish_question(&q).await;
        Ok(Reply::Ack(
            "question",
            json!(q.view(true, Some(self.caller.id), false)),
        ))
    }

    async fn open_poll(
        &mut self,
        lesson: Uuid,
        cid: &ClientId,
        spec: &PollSpec,
    ) -> anyhow::Result<Reply> {
        let mut db = self.state.db.acquire().await?;
        let (poll, previous) =
            store::open_poll(&mut db, lesson, self.caller.id, cid.as_str(), spec).await?;
        drop(db);
        if poll.lesson_id != lesson {
            return refuse(ChatError::Invalid, "client_id was used in another lesson");
        }
        if let Some(p) = previous {
            self.publish(&poll_wire(&p)).await;
            self.state.tally.poll_changed(p.id).await;
        }
        self.publish(&poll_wire(&poll)).await;
        self.state.tally.poll_changed(poll.id).await;
        Ok(Reply::Ack("poll", json!(poll.view(true))))
    }

    async fn answer(&mut self, lesson: Uuid, poll: Uuid, choices: &[i64]) -> anyhow::Result<Reply> {
        let mut db = self.state.db.acquire().await?;
        let Some(p) = store::poll(&mut db, poll)
            .await?
            .filter(|p| p.lesson_id == lesson)
        else {
            return refuse(ChatError::NotFound, "no such poll in this lesson");
        };
        let choices = match choice_set(choices, p.options.len(), p.multiple, "choices") {
            Ok(c) => c,
            Err(e) => return refuse(ChatError::Invalid, e.to_string()),
        };
        match store::answer(&mut db, poll, self.caller.id, &choices).await? {
            Ok(()) => {}
            Err(AnswerRefused::Closed) => return refuse(ChatError::Closed, "the poll is closed"),
        }
        drop(db);
        self.state.tally.poll_changed(poll).await;
        Ok(Reply::Ack(
            "answer",
            json!({"poll_id": poll, "choices": choices}),
        ))
    }

    /// Close the poll (`show: None`) or show/hide its results.
    async fn change_poll(
        &mut self,
        lesson: Uuid,
        poll: Uuid,
        show: Option<bool>,
    ) -> anyhow::Result<Reply> {
        let mut db = self.state.db.acquire().await?;
        if store::poll(&mut db, poll)
            .await?
            .filter(|p| p.lesson_id == lesson)
            .is_none()
        {
            return refuse(ChatError::NotFound, "no such poll in this lesson");
        }
        let p = match show {
            None => store::close_poll(&mut db, poll).await?,
            Some(s) => store::show_results(&mut db, poll, s).await?,
        };
        drop(db);
        let Some(p) = p else {
            return refuse(ChatError::NotFound, "no such poll in this lesson");
        };
        self.publish(&poll_wire(&p)).await;
        self.state.tally.poll_changed(p.id).await;
        Ok(Reply::Ack("poll", json!(p.view(true))))
    }

    async fn hand(&mut self, lesson: Uuid, up: bool) -> anyhow::Result<Reply> {
        let key = self.keys().hands(lesson);
        let mut c = self.state.redis.conn();
        let user = self.caller.id.to_string();
        if up {
            let now = super::now_ms();
            redis::pipe()
                .cmd("ZADD")
                .arg(&key)
                .arg("NX")
                .arg(now)
                .arg(&user)
                .ignore()
                .expire(&key, 24 * 3600)
                .ignore()
                .query_async::<()>(&mut c)
                .await?;
        } else {
            redis::cmd("ZREM")
                .arg(&key)
                .arg(&user)
                .query_async::<()>(&mut c)
                .await?;
        }
        self.publish_hands(lesson).await?;
        Ok(Reply::Ack("hand", json!({"up": up})))
    }

    /// The queue to the room's moderators.
    async fn publish_hands(&self, lesson: Uuid) -> anyhow::Result<()> {
        let queue = hands(&self.state.redis, &self.keys(), lesson).await?;
        let channel = format!("lesson:{lesson}");
        self.publish(&Wire::Live {
            frame: json!({"type": "hands", "channel": channel, "queue": queue}),
            staff_frame: None,
            channel,
            audience: Audience::Staff,
        })
        .await;
        Ok(())
    }

    async fn call_on(&mut self, lesson: Uuid, user: Uuid) -> anyhow::Result<Reply> {
        let mut c = self.state.redis.conn();
        redis::cmd("ZREM")
            .arg(self.keys().hands(lesson))
            .arg(user.to_string())
            .query_async::<()>(&mut c)
            .await?;
        let meeting_url = self.meeting_url_for(lesson, user).await?;
        let channel = format!("lesson:{lesson}");
        self.publish(&Wire::Live {
            frame: json!({"type": "called_on", "channel": channel, "by": self.caller.id,
                          "meeting_url": meeting_url}),
            staff_frame: None,
            channel: channel.clone(),
            audience: Audience::User(user),
        })
        .await;
        self.publish(&Wire::Live {
            frame: json!({"type": "hand", "channel": channel, "up": false}),
            staff_frame: None,
            channel,
            audience: Audience::User(user),
        })
        .await;
        self.publish_hands(lesson).await?;
        Ok(Reply::Ack("called_on", json!({"user_id": user})))
    }

    /// A Jitsi link with `user`'s own (member) token, for lessons that are meetings.
    async fn meeting_url_for(&self, lesson: Uuid, user: Uuid) -> anyhow::Result<Option<String>> {
        let mut db = self.state.db.acquire().await?;
        let Some(l) = courses::get_lesson(&mut db, lesson).await? else {
            return Ok(None);
        };
        if l.kind != LessonKind::Meeting {
            return Ok(None);
        }
        let Some(profile) = crate::users::find_by_id(&mut db, user).await? else {
            return Ok(None);
        };
        let issued = self.state.jitsi.token(
            &l.room_name,
            crate::meetings::MeetingUser {
                id: profile.id.to_string(),
                name: profile.display_name,
                email: profile.email,
                avatar: profile.avatar_url.unwrap_or_default(),
                affiliation: "member".into(),
            },
            OffsetDateTime::now_utc(),
        )?;
        Ok(Some(issued.meeting_url))
    }

    async fn hands_down(&mut self, lesson: Uuid, user: Option<Uuid>) -> anyhow::Result<Reply> {
        let key = self.keys().hands(lesson);
        let mut c = self.state.redis.conn();
        let channel = format!("lesson:{lesson}");
        match user {
            Some(u) => {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(u.to_string())
                    .query_async::<()>(&mut c)
                    .await?;
                self.publish(&Wire::Live {
                    frame: json!({"type": "hand", "channel": channel, "up": false}),
                    staff_frame: None,
                    channel,
                    audience: Audience::User(u),
                })
                .await;
            }
            None => {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut c)
                    .await?;
                self.publish(&Wire::Live {
                    frame: json!({"type": "hand", "channel": channel, "up": false, "all": true}),
                    staff_frame: None,
                    channel,
                    audience: Audience::All,
                })
                .await;
            }
        }
        self.publish_hands(lesson).await?;
        Ok(Reply::Ack("hands_down", json!({"user_id": user})))
    }

    async fn live_reaction(
        &mut self,
        lesson: Uuid,
        cid: &ClientId,
        reaction: &str,
    ) -> anyhow::Result<Reply> {
        let r = match Reaction::parse(reaction) {
            Ok(r) => r,
            Err(e) => return refuse(ChatError::Invalid, e.to_string()),
        };
        let now = Instant::now();
        if now.duration_since(self.reactions.0) >= Duration::from_secs(1) {
            self.reactions = (now, 0);
        }
        self.reactions.1 += 1;
        if self.reactions.1 > REACTIONS_PER_S {
            return refuse(ChatError::RateLimited, "too many reactions; slow down");
        }
        // Counted once per (user, client_id), whichever node the retry reaches.
        let mut c = self.state.redis.conn();
        let new: bool = redis::cmd("SET")
            .arg(self.keys().reaction_id(self.caller.id, cid.as_str()))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(REACTION_ID_TTL_S)
            .query_async::<Option<String>>(&mut c)
            .await?
            .is_some();
        if new {
            self.state.tally.count(lesson, Count::Reaction(r)).await;
        }
        Ok(Reply::Ack(
            "reaction",
            json!({"reaction": r.as_str(), "counted": new}),
        ))
    }

    async fn mark(&mut self, lesson: Uuid, cid: &ClientId, kind: &str) -> anyhow::Result<Reply> {
        let kind = match MarkerKind::parse(kind) {
            Ok(k) => k,
            Err(e) => return refuse(ChatError::Invalid, e.to_string()),
        };
        let mut db = self.state.db.acquire().await?;
        let (m, new) = store::mark(&mut db, lesson, self.caller.id, cid.as_str(), kind).await?;
        drop(db);
        if new && kind == MarkerKind::Confused {
            self.state.tally.count(lesson, Count::Confused).await;
        }
        Ok(Reply::Ack(
            "marker",
            json!({"id": m.id, "kind": m.kind, "at": m.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
        ))
    }

    /// Open an attendance interval for a lesson room just subscribed.
    pub(super) async fn attend(&mut self, lesson: Uuid) {
        let r = async {
            let mut db = self.state.db.acquire().await?;
            store::attend(&mut db, lesson, self.caller.id).await
        }
        .await;
        match r {
            Ok(id) => {
                if let Some(old) = self.attendance.insert(lesson, id) {
                    self.close_attendance(&[old]).await;
                }
                self.report_attendance().await;
            }
            Err(e) => tracing::warn!(error = %e, "interaction: cannot record attendance"),
        }
    }

    /// Close the interval of one lesson room (unsubscribed, revoked) or, with `None`, all.
    pub(super) async fn leave_lesson(&mut self, lesson: Option<Uuid>) {
        let ids: Vec<Uuid> = match lesson {
            Some(l) => self.attendance.remove(&l).into_iter().collect(),
            None => self.attendance.drain().map(|(_, id)| id).collect(),
        };
        if !ids.is_empty() {
            self.report_attendance().await;
        }
        self.close_attendance(&ids).await;
    }

    /// The hub keeps the open intervals alive (`last_seen_at`, every ping interval).
    async fn report_attendance(&self) {
        let ids = self.attendance.values().copied().collect();
        self.hub.attending(self.id, ids).await;
    }

    async fn close_attendance(&self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        let r = async {
            let mut db = self.state.db.acquire().await?;
            store::leave(&mut db, ids).await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "interaction: cannot close attendance");
        }
    }
}

/// The raised hands of a lesson, first raised first.
pub async fn hands(
    redis: &crate::cache::Redis,
    keys: &crate::chat::Keys,
    lesson: Uuid,
) -> anyhow::Result<Vec<RaisedHand>> {
    let mut c = redis.conn();
    let raw: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(keys.hands(lesson))
        .arg(0)
        .arg(HANDS_SHOWN - 1)
        .arg("WITHSCORES")
        .query_async(&mut c)
        .await?;
    Ok(raw
        .into_iter()
        .filter_map(|(u, ms)| {
            Some(RaisedHand {
                user_id: Uuid::parse_str(&u).ok()?,
                raised_at: OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                    .ok()?,
            })
        })
        .collect())
}
