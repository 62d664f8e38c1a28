//! Object keys, parsed once at the edge.
//!
//! An [`ObjectKey`] is a relative, `/`-separated path whose segments are all real names: it can
//! neither climb out of the local storage root (`..`, absolute paths, backslashes that Windows
//! tooling would read as separators) nor alias another object (`a//b`, `a/./b`), and it is
//! always a valid S3 key (≤ 1024 bytes, no control characters).

use std::{fmt, str::FromStr};

/// Longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a string is not an [`ObjectKey`]. Becomes 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("invalid object key: empty")]
    Empty,
    #[error("invalid object key: {len} bytes, at most {MAX_KEY_LEN} allowed")]
    TooLong { len: usize },
    #[error("invalid object key: must be relative (no leading '/')")]
    Absolute,
    #[error("invalid object key: empty segment ('//' or trailing '/')")]
    EmptySegment,
    #[error("invalid object key: '.' and '..' segments are not allowed")]
    DotSegment,
    #[error("invalid object key: backslash not allowed")]
    Backslash,
    #[error("invalid object key: control character (including NUL) not allowed")]
    ControlChar,
    /// Refused by one backend only: the local store keeps its temporary files under `.tmp/`.
    #[error("invalid object key: the '{0}/' prefix is reserved by the storage backend")]
    Reserved(&'static str),
}

/// A validated object key such as `recordings/2026/11/abc/index.m3u8`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parse and validate a key.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidKey> {
        let s = s.into();
        validate(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate(s: &str) -> Result<(), InvalidKey> {
    if s.is_empty() {
        return Err(InvalidKey::Empty);
    }
    if s.len() > MAX_KEY_LEN {
        return Err(InvalidKey::TooLong { len: s.len() });
    }
    if s.starts_with('/') {
        return Err(InvalidKey::Absolute);
    }
    // Character checks first, so `a\..` says "backslash" rather than something confusing.
    for c in s.chars() {
        if c == '\\' {
            return Err(InvalidKey::Backslash);
        }
        if c.is_control() {
            return Err(InvalidKey::ControlChar);
        }
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err(InvalidKey::EmptySegment),
            "." | ".." => return Err(InvalidKey::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// The directory part of a list prefix (before its last `/`, `""` when it has none), or `None`
/// when no valid key can start with `prefix`. Listing such a prefix finds nothing; checking it
/// up front keeps `../` from walking outside the local root and keeps servers that rewrite
/// prefixes (s3s-fs strips a leading `/`) from answering for another one.
pub(super) fn prefix_dir(prefix: &str) -> Option<&str> {
    if prefix.len() > MAX_KEY_LEN || prefix.chars().any(|c| c == '\\' || c.is_control()) {
        return None;
    }
    match prefix.rfind('/') {
        None => Some(""),
        Some(i) => validate(&prefix[..i]).ok().map(|()| &prefix[..i]),
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = InvalidKey;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = InvalidKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl FromStr for ObjectKey {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_accepted_unchanged() {
        for k in [
            "a",
            "recordings/2026/11/x.mp4",
            "live/abc/seg-00001.ts",
            "a.b/c..d/.hidden",
            "ünï/cödé ok",
        ] {
            let key = ObjectKey::parse(k).expect(k);
            assert_eq!(key.as_str(), k);
            assert_eq!(key.to_string(), k);
        }
    }

    #[test]
    fn empty_key_is_refused() {
        assert_eq!(ObjectKey::parse(""), Err(InvalidKey::Empty));
    }

    #[test]
    fn key_of_1024_bytes_is_accepted_and_1025_refused() {
        assert!(ObjectKey::parse("a".repeat(1024)).is_ok());
        assert_eq!(
            ObjectKey::parse("a".repeat(1025)),
            Err(InvalidKey::TooLong { len: 1025 })
        );
        // Bytes, not chars: 513 two-byte chars are 1026 bytes.
        assert_eq!(
            ObjectKey::parse("é".repeat(513)),
            Err(InvalidKey::TooLong { len: 1026 })
        );
    }

    #[test]
    fn absolute_keys_are_refused() {
        assert_eq!(ObjectKey::parse("/abs"), Err(InvalidKey::Absolute));
        assert_eq!(ObjectKey::parse("/"), Err(InvalidKey::Absolute));
    }

    #[test]
    fn empty_segments_are_refused() {
        assert_eq!(ObjectKey::parse("a//b"), Err(InvalidKey::EmptySegment));
        assert_eq!(ObjectKey::parse("a/"), Err(InvalidKey::EmptySegment));
    }

    #[test]
    fn dot_segments_are_refused() {
        for k in ["../x", "a/../b", "a/..", ".", "./a", "a/./b", ".."] {
            assert_eq!(ObjectKey::parse(k), Err(InvalidKey::DotSegment), "{k}");
        }
    }

    #[test]
    fn backslash_nul_and_control_chars_are_refused() {
        assert_eq!(ObjectKey::parse("a\\b"), Err(InvalidKey::Backslash));
        assert_eq!(ObjectKey::parse("..\\x"), Err(InvalidKey::Backslash));
        assert_eq!(ObjectKey::parse("a\0b"), Err(InvalidKey::ControlChar));
        assert_eq!(ObjectKey::parse("a\nb"), Err(InvalidKey::ControlChar));
        assert_eq!(ObjectKey::parse("a\u{7f}b"), Err(InvalidKey::ControlChar));
    }

    #[test]
    fn conversions_agree_with_parse() {
        let from_str: ObjectKey = "a/b".parse().unwrap();
        let from_ref = ObjectKey::try_from("a/b").unwrap();
        let from_string = ObjectKey::try_from(String::from("a/b")).unwrap();
        assert_eq!(from_str, from_ref);
        assert_eq!(from_ref, from_string);
        assert!("../x".parse::<ObjectKey>().is_err());
        assert_eq!(String::from(from_str), "a/b");
    }

    #[test]
    fn list_prefixes_give_their_directory_or_none() {
        assert_eq!(prefix_dir(""), Some(""));
        assert_eq!(prefix_dir("course-1"), Some(""));
        assert_eq!(prefix_dir("course-1/"), Some("course-1"));
        assert_eq!(prefix_dir("a/b/seg-"), Some("a/b"));
        assert_eq!(prefix_dir("a/.."), Some("a"), "'a/..x' is a valid key");
        for p in [
            "/",
            "/a",
            "../",
            "a/../",
            "a//",
            "./a",
            "a\\",
            "a\0",
            &"a".repeat(1025),
        ] {
            assert_eq!(prefix_dir(p), None, "{p:?}");
        }
    }

    #[test]
    fn keys_order_like_their_strings() {
        let mut keys: Vec<ObjectKey> = ["b", "a/c", "a/b"]
            .iter()
            .map(|k| ObjectKey::parse(*k).unwrap())
            .collect();
        keys.sort();
        let sorted: Vec<&str> = keys.iter().map(ObjectKey::as_str).collect();
        assert_eq!(sorted, ["a/b", "a/c", "b"]);
    }
}
