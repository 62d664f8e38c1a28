//! Text rules every input shares, whatever carries it (HTTP bodies, WebSocket frames).

/// Does this JSON text hold a NUL character in a string? Raw control characters are invalid
/// JSON (the parser refuses them), so a NUL can only come as the escape `\u0000`; in valid
/// JSON every backslash starts an escape, so skipping each escaped character is exact (`\\`
/// followed by `u0000` is a backslash and text, not a NUL). PostgreSQL cannot store NUL in
/// `text` nor `jsonb`: refused at the edge, it is a 400 instead of a 500 from deep inside.
pub fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            0 => return true,
            b'\\' => {
                if json.get(i + 1..i + 6) == Some(b"u0000") {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::json_has_nul;

    #[test]
    fn nul_is_found_in_escapes_only() {
        assert!(json_has_nul(br#"{"q":"a\u0000b"}"#));
        assert!(json_has_nul(br#"["\u0000"]"#));
        assert!(
            !json_has_nul(br#"{"q":"a\\u0000b"}"#),
            "a backslash, then text"
        );
        assert!(
            json_has_nul(br#"{"q":"a\\\u0000b"}"#),
            "a backslash, then a NUL"
        );
        assert!(!json_has_nul(br#"{"q":"\u0001 \n \""}"#));
        assert!(!json_has_nul(b"\\"));
    }
}
