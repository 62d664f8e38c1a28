//! The emoji and sticker set: a JSON manifest and sticker images under `assets/emoji/`,
//! compiled into the binary and served as static assets (`GET /api/v1/chat/emoji`,
//! `GET /api/v1/chat/emoji/stickers/{file}`). Reactions must use an emoji of the manifest.

use std::sync::LazyLock;

use serde::Deserialize;

/// The manifest as served.
pub const MANIFEST: &str = include_str!("../../assets/emoji/manifest.json");

/// Sticker files: (file name, SVG).
pub const STICKERS: &[(&str, &str)] = &[
    (
        "thanks.svg",
        include_str!("../../assets/emoji/stickers/thanks.svg"),
    ),
    (
        "question.svg",
        include_str!("../../assets/emoji/stickers/question.svg"),
    ),
    (
        "got-it.svg",
        include_str!("../../assets/emoji/stickers/got-it.svg"),
    ),
];

#[derive(Deserialize)]
struct Manifest {
    emoji: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    emoji: String,
}

static ALLOWED: LazyLock<Vec<String>> = LazyLock::new(|| {
    serde_json::from_str::<Manifest>(MANIFEST)
        .expect("assets/emoji/manifest.json is valid")
        .emoji
        .into_iter()
        .map(|e| e.emoji)
        .collect()
});

/// An emoji of the served set (reactions accept nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(s: &str) -> Result<Emoji, crate::users::InvalidInput> {
        if ALLOWED.iter().any(|e| e == s) {
            Ok(Emoji(s.to_owned()))
        } else {
            Err(crate::users::InvalidInput {
                field: "emoji",
                reason: "must be one of the emoji set (GET /api/v1/chat/emoji)",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sticker's SVG by file name.
pub fn sticker(file: &str) -> Option<&'static str> {
    STICKERS.iter().find(|(n, _)| *n == file).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_emoji_of_the_manifest_are_accepted() {
        assert!(Emoji::parse("👍").is_ok());
        assert!(Emoji::parse("❤️").is_ok());
        assert!(Emoji::parse("🦀").is_err());
        assert!(Emoji::parse("<b>").is_err());
        assert!(Emoji::parse("").is_err());
    }

    #[test]
    fn every_sticker_of_the_manifest_is_served() {
        let m: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        for s in m["stickers"].as_array().unwrap() {
            let file = s["file"]
                .as_str()
                .unwrap()
                .strip_prefix("stickers/")
                .unwrap();
            assert!(sticker(file).is_some(), "{file}");
        }
    }
}
