//! Typed ids: a `UserId` cannot be passed where a `ChannelId` is expected, so two ids of a call
//! cannot be swapped unnoticed (the chat's store had `join(user, channel)` beside
//! `unmute(channel, user)`). They wrap the UUID and serialize as it; queries bind the UUID
//! (`.get()`) at the SQL boundary, where sqlx's compile-checked macros want the plain type.
//! `LiveStreamId` (live/model.rs) predates these and follows the same shape.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The UUID, for a query parameter.
            pub fn get(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A user's id (`users.id`).
    UserId
);
id!(
    /// A course's id (`courses.id`).
    CourseId
);
id!(
    /// A lesson's id (`lessons.id`).
    LessonId
);
id!(
    /// A chat channel's id (`chat_channels.id`; not its name).
    ChannelId
);
id!(
    /// A recording's id (`recordings.id`).
    RecordingId
);
id!(
    /// An order's id (`orders.id`).
    OrderId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_their_uuid() {
        let u = Uuid::now_v7();
        assert_eq!(
            serde_json::to_value(UserId(u)).unwrap(),
            serde_json::json!(u.to_string())
        );
        let back: CourseId = serde_json::from_value(serde_json::json!(u.to_string())).unwrap();
        assert_eq!(back.get(), u);
        assert_eq!(LessonId::from(u).to_string(), u.to_string());
    }
}
