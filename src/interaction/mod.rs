//! Live interaction and learning records (issue #20; the protocol in docs/interaction.md).
//!
//! Layout:
//! - this module: the frames of the lesson room (parsed at the edge into the types below) and
//!   the views clients get;
//! - [`store`]: PostgreSQL (questions and votes, polls and answers, markers, reaction buckets,
//!   attendance intervals);
//! - [`tally`]: per node, the task that adds up reactions per second, sends poll results at
//!   most every 200 ms per poll, and closes polls whose timer ran out;
//! - [`records`]: what outlives the lesson — attendance, replay coverage, quiz scores, the
//!   replay's timeline, viewing quality.
//!
//! The socket side (who may send which frame, acks) is `chat::interact`; everything crosses
//! nodes as `chat::hub::Wire::Live` events on the chat's pub/sub channel, so a frame is
//! handled by whichever node holds the socket and heard by every node's listeners.

pub mod records;
pub mod store;
pub mod tally;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::InvalidInput;

/// Frames of the lesson room this module adds to the chat protocol (`type` tags them).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Ask {
        channel: String,
        client_id: String,
        body: String,
        #[serde(default)]
        anonymous: bool,
    },
    Vote {
        channel: String,
        client_id: String,
        question_id: Uuid,
        on: bool,
    },
    QuestionState {
        channel: String,
        client_id: String,
        question_id: Uuid,
        state: String,
    },
    PollOpen {
        channel: String,
        client_id: String,
        question: String,
        options: Vec<String>,
        #[serde(default)]
        multiple: bool,
        #[serde(default)]
        correct: Option<Vec<i64>>,
        #[serde(default)]
        duration_s: Option<i64>,
    },
    PollAnswer {
        channel: String,
        client_id: String,
        poll_id: Uuid,
        choices: Vec<i64>,
    },
    PollClose {
        channel: String,
        client_id: String,
        poll_id: Uuid,
    },
    PollShow {
        channel: String,
        client_id: String,
        poll_id: Uuid,
        show: bool,
    },
    Hand {
        channel: String,
        client_id: String,
        up: bool,
    },
    CallOn {
        channel: String,
        client_id: String,
        user_id: Uuid,
    },
    HandsDown {
        channel: String,
        client_id: String,
        #[serde(default)]
        user_id: Option<Uuid>,
    },
    LiveReaction {
        channel: String,
        client_id: String,
        reaction: String,
    },
    Mark {
        channel: String,
        client_id: String,
        kind: String,
    },
}

/// The `type`s of [`Frame`]: the connection hands these to `chat::interact`.
pub const FRAME_TYPES: [&str; 12] = [
    "ask",
    "vote",
    "question_state",
    "poll_open",
    "poll_answer",
    "poll_close",
    "poll_show",
    "hand",
    "call_on",
    "hands_down",
    "live_reaction",
    "mark",
];

impl Frame {
    pub fn channel(&self) -> &str {
        match self {
            Frame::Ask { channel, .. }
            | Frame::Vote { channel, .. }
            | Frame::QuestionState { channel, .. }
            | Frame::PollOpen { channel, .. }
            | Frame::PollAnswer { channel, .. }
            | Frame::PollClose { channel, .. }
            | Frame::PollShow { channel, .. }
            | Frame::Hand { channel, .. }
            | Frame::CallOn { channel, .. }
            | Frame::HandsDown { channel, .. }
            | Frame::LiveReaction { channel, .. }
            | Frame::Mark { channel, .. } => channel,
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Frame::Ask { client_id, .. }
            | Frame::Vote { client_id, .. }
            | Frame::QuestionState { client_id, .. }
            | Frame::PollOpen { client_id, .. }
            | Frame::PollAnswer { client_id, .. }
            | Frame::PollClose { client_id, .. }
            | Frame::PollShow { client_id, .. }
            | Frame::Hand { client_id, .. }
            | Frame::CallOn { client_id, .. }
            | Frame::HandsDown { client_id, .. }
            | Frame::LiveReaction { client_id, .. }
            | Frame::Mark { client_id, .. } => client_id,
        }
    }
}

/// Longest question (characters).
pub const QUESTION_MAX_CHARS: usize = 500;

/// A question's state in the teacher's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionState {
    Open,
    Answered,
    Pinned,
    Dismissed,
}

impl QuestionState {
    pub fn parse(s: &str) -> Result<QuestionState, InvalidInput> {
        match s {
            "open" => Ok(QuestionState::Open),
            "answered" => Ok(QuestionState::Answered),
            "pinned" => Ok(QuestionState::Pinned),
            "dismissed" => Ok(QuestionState::Dismissed),
            _ => Err(InvalidInput {
                field: "state",
                reason: "must be open, answered, pinned or dismissed",
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QuestionState::Open => "open",
            QuestionState::Answered => "answered",
            QuestionState::Pinned => "pinned",
            QuestionState::Dismissed => "dismissed",
        }
    }
}

/// Reactions of the live lesson (stored per 10 s bucket; `confused` markers join them in the
/// live counts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reaction {
    ThumbsUp,
    Heart,
    Laugh,
    Wow,
    Clap,
    Lost,
}

impl Reaction {
    pub const ALL: [Reaction; 6] = [
        Reaction::ThumbsUp,
        Reaction::Heart,
        Reaction::Laugh,
        Reaction::Wow,
        Reaction::Clap,
        Reaction::Lost,
    ];

    pub fn parse(s: &str) -> Result<Reaction, InvalidInput> {
        Reaction::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(InvalidInput {
                field: "reaction",
                reason: "must be thumbs_up, heart, laugh, wow, clap or lost",
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::ThumbsUp => "thumbs_up",
            Reaction::Heart => "heart",
            Reaction::Laugh => "laugh",
            Reaction::Wow => "wow",
            Reaction::Clap => "clap",
            Reaction::Lost => "lost",
        }
    }
}

/// A student's mark on a moment of the live lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Confused,
    Bookmark,
}

impl MarkerKind {
    pub fn parse(s: &str) -> Result<MarkerKind, InvalidInput> {
        match s {
            "confused" => Ok(MarkerKind::Confused),
            "bookmark" => Ok(MarkerKind::Bookmark),
            _ => Err(InvalidInput {
                field: "kind",
                reason: "must be confused or bookmark",
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MarkerKind::Confused => "confused",
            MarkerKind::Bookmark => "bookmark",
        }
    }
}

/// A poll as the teacher asked it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSpec {
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    /// Indexes of the right options: a quiz.
    pub correct: Option<Vec<i16>>,
    pub duration_s: Option<i64>,
}

impl PollSpec {
    pub fn parse(
        question: &str,
        options: &[String],
        multiple: bool,
        correct: Option<&[i64]>,
        duration_s: Option<i64>,
    ) -> Result<PollSpec, InvalidInput> {
        let question = text(question, 500, "question")?;
        if !(2..=10).contains(&options.len()) {
            return Err(InvalidInput {
                field: "options",
                reason: "must hold 2 to 10 options",
            });
        }
        let options = options
            .iter()
            .map(|o| text(o, 200, "options"))
            .collect::<Result<Vec<_>, _>>()?;
        let correct = match correct {
            None => None,
            Some(c) => {
                let c = choice_set(c, options.len(), multiple, "correct")?;
                Some(c)
            }
        };
        if let Some(d) = duration_s
            && !(5..=3600).contains(&d)
        {
            return Err(InvalidInput {
                field: "duration_s",
                reason: "must be 5 to 3600 seconds",
            });
        }
        Ok(PollSpec {
            question,
            options,
            multiple,
            correct,
            duration_s,
        })
    }
}

/// A set of option indexes: sorted, distinct, within `n` options; exactly one unless
/// `multiple`.
pub fn choice_set(
    c: &[i64],
    n: usize,
    multiple: bool,
    field: &'static str,
) -> Result<Vec<i16>, InvalidInput> {
    let mut v: Vec<i16> = Vec::with_capacity(c.len());
    for &i in c {
        if i < 0 || i as usize >= n {
            return Err(InvalidInput {
                field,
                reason: "names an option that does not exist",
            });
        }
        v.push(i as i16);
    }
    v.sort_unstable();
    v.dedup();
    if v.is_empty() || (!multiple && v.len() != 1) {
        return Err(InvalidInput {
            field,
            reason: "must name one option (or, for a multiple-choice poll, one or more)",
        });
    }
    Ok(v)
}

/// Trimmed text of 1 to `max` characters without control characters.
fn text(s: &str, max: usize, field: &'static str) -> Result<String, InvalidInput> {
    crate::chat::ChatText::parse(s, max)
        .map(|t| t.as_str().replace(['\n', '\t'], " "))
        .map_err(|e| InvalidInput {
            field,
            reason: e.reason,
        })
}

/// A question as a reader sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuestionView {
    pub id: Uuid,
    pub lesson_id: Uuid,
    pub body: String,
    pub anonymous: bool,
    /// Null for students when the question is anonymous (moderators always see it).
    pub author_id: Option<Uuid>,
    /// The reader asked it (REST snapshot; `false` in broadcasts).
    pub mine: bool,
    pub votes: i32,
    /// The reader voted for it (REST snapshot; `false` in broadcasts).
    pub voted: bool,
    pub state: QuestionState,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub pinned_at: Option<OffsetDateTime>,
}

/// A poll as a reader sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PollView {
    pub id: Uuid,
    pub lesson_id: Uuid,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    /// The right options of a quiz: moderators always, students once the results are shown.
    pub correct: Option<Vec<i16>>,
    pub quiz: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<OffsetDateTime>,
    pub closed: bool,
    pub results_shown: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// How many chose each option (`rev`: the newest answer counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PollResults {
    pub counts: Vec<i64>,
    pub answered: i64,
    pub rev: i64,
}

/// A raised hand in the teacher's queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RaisedHand {
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_needs_two_to_ten_options_and_valid_answers() {
        let opts = |n: usize| (0..n).map(|i| format!("o{i}")).collect::<Vec<_>>();
        assert!(PollSpec::parse("q", &opts(1), false, None, None).is_err());
        assert!(PollSpec::parse("q", &opts(11), false, None, None).is_err());
        assert!(PollSpec::parse(" ", &opts(2), false, None, None).is_err());
        let p = PollSpec::parse(" 2+2? ", &opts(3), false, Some(&[1]), Some(30)).unwrap();
        assert_eq!(p.question, "2+2?");
        assert_eq!(p.correct, Some(vec![1]));
        assert!(PollSpec::parse("q", &opts(3), false, Some(&[0, 1]), None).is_err());
        assert!(PollSpec::parse("q", &opts(3), true, Some(&[3]), None).is_err());
        assert!(PollSpec::parse("q", &opts(3), false, None, Some(4)).is_err());
        assert!(PollSpec::parse("q", &["a".into(), "".into()], false, None, None).is_err());
    }

    #[test]
    fn choices_are_a_sorted_set_within_the_options() {
        assert_eq!(choice_set(&[2, 0, 2], 3, true, "c").unwrap(), vec![0, 2]);
        assert!(choice_set(&[], 3, true, "c").is_err());
        assert!(choice_set(&[0, 1], 3, false, "c").is_err());
        assert_eq!(choice_set(&[1, 1], 3, false, "c").unwrap(), vec![1]);
        assert!(choice_set(&[-1], 3, false, "c").is_err());
    }

    #[test]
    fn names_of_reactions_states_and_markers_round_trip() {
        for r in Reaction::ALL {
            assert_eq!(Reaction::parse(r.as_str()).unwrap(), r);
        }
        assert!(Reaction::parse("poop").is_err());
        for s in ["open", "answered", "pinned", "dismissed"] {
            assert_eq!(QuestionState::parse(s).unwrap().as_str(), s);
        }
        assert!(MarkerKind::parse("sleepy").is_err());
        let f: Frame = serde_json::from_str(
            r#"{"type":"poll_answer","channel":"lesson:x","client_id":"a","poll_id":"0194e5a4-0000-7000-8000-000000000000","choices":[1]}"#,
        )
        .unwrap();
        assert_eq!(f.client_id(), "a");
        assert_eq!(f.channel(), "lesson:x");
    }
}
