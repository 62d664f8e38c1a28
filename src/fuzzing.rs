//! Fuzz entries for the server crate's parsers of outside bytes: chat/interaction WebSocket
//! frames, Markdown → HTML sanitizing (course descriptions and chat), uploads' magic numbers,
//! payment provider callbacks, and access tokens (JWT). The media crate has its own (RTMP,
//! FLV, the TS/fMP4 packagers' input, the WHEP stage, SDP offers: `wemaster_media::*::fuzz_*`).
//!
//! Each entry takes arbitrary bytes, never panics, and asserts the property that matters for
//! its input: no script or event handler survives sanitizing, no callback or token verifies
//! without the right key, a refused frame still names the `client_id` it carried. They are
//! driven two ways: by libFuzzer (`fuzz/`, `cargo fuzz run <target>`, see fuzz/README.md) for
//! long runs, and by seeded smoke runs in the unit tests below (`fuzzing::tests`), which the
//! test command runs every time.

use std::sync::OnceLock;

use crate::{
    chat::{self, Decoded},
    config::{PaymentSettings, Secret, Settings, Sources},
    identity::auth::{
        keys::KeyRing,
        tokens::{self, Claims},
    },
    payments::providers::{Provider, VerifyError, stripe::stripe_signature_header},
};

/// The default settings, loaded once (the payment and auth entries need a whole `Settings`).
fn defaults() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        Settings::load(&Sources {
            local: None,
            file: None,
            env: Some(vec![]),
        })
        .expect("the embedded defaults load")
    })
}

// ---------------------------------------------------------------------------------------------
// Markdown / HTML

/// Both Markdown renderers (course descriptions: CommonMark + tables; chat: a small subset),
/// on any text: the HTML they give may only hold safe tags and attributes.
pub fn markdown(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let course = crate::courses::render_markdown(&text);
    if let Err(e) = html_is_safe(&course, COURSE_TAGS, crate::courses::COURSE_URL_SCHEMES) {
        panic!("course Markdown gave unsafe HTML ({e}): {course:?} from {text:?}");
    }
    let chat = chat::render(&text);
    if let Err(e) = html_is_safe(&chat, chat::CHAT_TAGS, CHAT_URL_SCHEMES) {
        panic!("chat Markdown gave unsafe HTML ({e}): {chat:?} from {text:?}");
    }
}

/// Tags the course renderer may emit (ammonia's default allow-list, of which CommonMark uses
/// these and more).
const COURSE_TAGS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "area",
    "article",
    "aside",
    "b",
    "bdi",
    "bdo",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "data",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "map",
    "mark",
    "nav",
    "ol",
    "p",
    "pre",
    "q",
    "rp",
    "rt",
    "rtc",
    "ruby",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "time",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
];

/// The chat renderer's URL schemes (chat::render).
const CHAT_URL_SCHEMES: &[&str] = &["http", "https", "mailto"];

/// A small HTML tag scanner (the renderers' output is serialized by html5ever, so tags and
/// quoted attributes are well formed): every tag is allowed, no attribute is an event
/// handler or `style`, and no URL attribute has a scheme outside `schemes`.
fn html_is_safe(html: &str, allowed: &[&str], schemes: &[&str]) -> Result<(), String> {
    let b = html.as_bytes();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let mut j = i + off + 1;
        if b.get(j) == Some(&b'/') {
            j += 1;
        }
        let name_end = html[j..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .map_or(html.len(), |n| j + n);
        let name = html[j..name_end].to_ascii_lowercase();
        if !allowed.contains(&name.as_str()) {
            return Err(format!("tag <{name}>"));
        }
        // Attributes up to the closing `>`, quotes respected.
        let mut k = name_end;
        loop {
            while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'/') {
                k += 1;
            }
            if k >= b.len() {
                return Err("unterminated tag".into());
            }
            if b[k] == b'>' {
                k += 1;
                break;
            }
            let attr_end = html[k..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>')
                .map_or(html.len(), |n| k + n);
            let attr = html[k..attr_end].to_ascii_lowercase();
            k = attr_end;
            let mut value = String::new();
            if b.get(k) == Some(&b'=') {
                k += 1;
                let quote = b.get(k).copied();
                if matches!(quote, Some(b'"') | Some(b'\'')) {
                    let close = html[k + 1..]
                        .find(quote.unwrap() as char)
                        .ok_or("unterminated attribute value")?;
                    value = html[k + 1..k + 1 + close].to_string();
                    k = k + 1 + close + 1;
                } else {
                    let end = html[k..]
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .map_or(html.len(), |n| k + n);
                    value = html[k..end].to_string();
                    k = end;
                }
            }
            if attr.starts_with("on") || attr == "style" || attr == "srcdoc" {
                return Err(format!("attribute {attr} on <{name}>"));
            }
            if matches!(
                attr.as_str(),
                "href" | "src" | "cite" | "action" | "formaction"
            ) {
                // As the WHATWG URL parser reads it: C0 controls and spaces trimmed at both
                // ends, tabs and newlines removed anywhere.
                let v = html_unescape(&value).to_ascii_lowercase();
                let v = v.trim_matches(|c: char| c <= ' ');
                let v: String = v
                    .chars()
                    .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                    .collect();
                // What a browser would take as a scheme (RFC 3986: a letter, then letters,
                // digits, `+`, `-`, `.`; tabs and newlines inside are dropped above, as the
                // URL parser does). Anything else before a `:` makes a relative URL.
                let is_scheme = |s: &str| {
                    s.starts_with(|c: char| c.is_ascii_alphabetic())
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                };
                if let Some((scheme, _)) = v.split_once(':')
                    && is_scheme(scheme)
                    && !schemes.contains(&scheme)
                {
                    return Err(format!("{attr}={value:?} on <{name}>"));
                }
            }
        }
        i = k;
    }
    Ok(())
}

/// The entities html5ever writes in attribute values, and numeric ones.
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let c = match ent {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "nbsp" => Some('\u{a0}'),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames

/// A chat socket's text frame, as [`chat::decode_frame`] decides it. A refusal must carry the
/// frame's `client_id` when the frame is a JSON object with a string one (the client matches
/// errors to what it sent by it), and a frame with a NUL in a string is always refused.
pub fn chat_frame(data: &[u8]) {
    let decoded = chat::decode_frame(data);
    let value: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let cid = value
        .as_ref()
        .and_then(|v| v.get("client_id"))
        .and_then(|c| c.as_str());
    match decoded {
        Decoded::Chat(_) | Decoded::Interaction { .. } => {
            assert!(
                !crate::domain::json_has_nul(data),
                "a frame with a NUL was accepted"
            );
            assert!(value.is_some(), "a frame that is not JSON was accepted");
        }
        Decoded::Refused { client_id, .. } => {
            if !crate::domain::json_has_nul(data) {
                assert_eq!(client_id.as_deref(), cid, "a refusal lost the client_id");
            }
        }
    }
    // Channel names arrive in `subscribe` frames: parsing any text never panics.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chat::ChannelName::parse(text);
    }
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// The magic-number check of chat attachments, on any first bytes and every declared type:
/// never panics, and a file passing as `text/plain` holds no NUL.
pub fn attachment_magic(data: &[u8]) {
    let head = &data[..data.len().min(512)];
    for declared in [
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "application/pdf",
        "application/zip",
        "audio/mpeg",
        "video/mp4",
        "text/plain",
        "application/x-unknown",
    ] {
        let ok = chat::attachments::content_matches(declared, head);
        if ok && declared == "text/plain" {
            assert!(!head.contains(&0), "text with a NUL passed as text/plain");
        }
        if declared == "application/x-unknown" {
            assert!(!ok, "an unknown type passed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payment callbacks

const FUZZ_WEBHOOK_SECRET: &str = "whsec_fuzz";

/// Payment settings with every provider's verification keys set (an RSA key made once).
fn payment_settings() -> &'static PaymentSettings {
    static S: OnceLock<PaymentSettings> = OnceLock::new();
    S.get_or_init(|| {
        use aws_lc_rs::{encoding::AsDer, rsa::KeySize, signature::KeyPair};
        use base64::{Engine, engine::general_purpose::STANDARD};
        let key = aws_lc_rs::signature::RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let public = STANDARD.encode(key.public_key().as_der().expect("DER").as_ref());
        let mut p = defaults().payments.clone();
        p.sandbox.secret = Secret::new(FUZZ_WEBHOOK_SECRET);
        p.stripe.webhook_secret = Secret::new(FUZZ_WEBHOOK_SECRET);
        p.alipay.public_key = public.clone();
        p.wechatpay.platform_public_key = public;
        p.wechatpay.platform_serial = "FUZZSERIAL".into();
        p.wechatpay.apiv3_key = Secret::new("0123456789abcdef0123456789abcdef");
        p
    })
}

/// A provider callback: the first byte picks the provider and whether the body is signed
/// with the right secret (Stripe and the sandbox, whose scheme is an HMAC we can compute, so
/// the fuzzer reaches the event parser behind the signature), the rest is the body; header
/// values come from the body's first line. Unsigned callbacks never verify; signed ones
/// verify or are refused as malformed, never panic.
pub fn payment_callback(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let settings = payment_settings();
    let provider = Provider::ALL[selector as usize % Provider::ALL.len()];
    let sign = selector & 0x80 != 0 && matches!(provider, Provider::Stripe | Provider::Sandbox);
    let now = 1_800_000_000;
    let first_line = body
        .split(|&b| b == b'\n')
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    let signature = if sign {
        stripe_signature_header(FUZZ_WEBHOOK_SECRET.as_bytes(), now, body)
    } else {
        first_line.clone()
    };
    let header = |name: &'static str| -> Option<&str> {
        Some(match name {
            "stripe-signature" | "sandbox-signature" | "wechatpay-signature" => &signature,
            "wechatpay-timestamp" => "1800000000",
            "wechatpay-serial" => "FUZZSERIAL",
            _ => &first_line,
        })
    };
    let r = provider.verify_callback(settings, &header, body, now);
    match (&r, sign) {
        (Ok(_), false) => panic!("an unsigned {provider:?} callback verified: {body:?}"),
        (Err(VerifyError::BadSignature | VerifyError::Stale), true) => {
            panic!("a correctly signed {provider:?} callback was refused: {r:?}")
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Access tokens

struct TokenFixture {
    keys: KeyRing,
    validation: jsonwebtoken::Validation,
    valid: String,
}

fn token_fixture() -> &'static TokenFixture {
    static F: OnceLock<TokenFixture> = OnceLock::new();
    F.get_or_init(|| {
        // A key made for this process in a directory of its own (left in the temp dir: a
        // few hundred bytes, and the process may be a fuzzer that never returns).
        let dir = std::env::temp_dir().join(format!(
            "wemaster-fuzz-keys-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let auth = &defaults().auth;
        let keys = KeyRing::load_or_generate(&dir, &auth.signing_kid).expect("a key");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: auth.issuer.clone(),
            aud: auth.audience.clone(),
            sub: uuid::Uuid::from_u128(1),
            sid: uuid::Uuid::from_u128(2),
            iat: now,
            nbf: Some(now),
            exp: now + 10 * 365 * 86_400,
        };
        let (kid, key) = keys.signing();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        let valid = jsonwebtoken::encode(&header, &claims, key).expect("signing");
        TokenFixture {
            validation: tokens::validation(auth),
            keys,
            valid,
        }
    })
}

/// An access token: either the bytes as a token (byte 0 is 0) or a valid token with bytes
/// changed at fuzzer-chosen places (pairs of position and value). Only the untouched valid
/// token may verify.
pub fn access_token(data: &[u8]) {
    let f = token_fixture();
    let token = match data.split_first() {
        Some((0, rest)) => String::from_utf8_lossy(rest).into_owned(),
        _ => {
            let mut t = f.valid.clone().into_bytes();
            for pair in data.chunks_exact(2) {
                let at = pair[0] as usize * t.len() / 256;
                t[at] = pair[1];
            }
            String::from_utf8_lossy(&t).into_owned()
        }
    };
    let r = tokens::decode(&f.keys, &f.validation, &token);
    if token != f.valid {
        assert!(r.is_err(), "a changed or forged token verified: {token:?}");
    } else {
        assert!(r.is_ok(), "the valid token was refused: {r:?}");
    }
}

#[cfg(test)]
mod tests {
    //! Seeded smoke runs of every entry: structured seeds and random mutations of them (the
    //! same xorshift the media crate's smoke runs use), a few thousand inputs each.

    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Each seed as is, then `n` mutations: bytes replaced, inserted or removed, seeds spliced.
    fn run(seeds: &[&[u8]], n: usize, entry: fn(&[u8])) {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for seed in seeds {
            entry(seed);
        }
        for _ in 0..n {
            let mut input = seeds[xorshift(&mut s) as usize % seeds.len()].to_vec();
            for _ in 0..1 + xorshift(&mut s) % 8 {
                let r = xorshift(&mut s);
                let at = if input.is_empty() {
                    0
                } else {
                    (r >> 8) as usize % input.len()
                };
                match r % 4 {
                    0 if !input.is_empty() => input[at] = (r >> 40) as u8,
                    1 => input.insert(at, (r >> 40) as u8),
                    2 if !input.is_empty() => {
                        input.remove(at);
                    }
                    _ => {
                        let other = seeds[(r >> 20) as usize % seeds.len()];
                        input.extend_from_slice(&other[..other.len().min(32)]);
                    }
                }
            }
            entry(&input);
        }
    }

    #[test]
    fn markdown_never_gives_unsafe_html() {
        run(
            &[
                b"**bold** _it_ ~~del~~ `code` [a](https://x.test) <script>alert(1)</script>",
                b"[x](javascript:alert(1)) [y](JaVaScRiPt&#58;alert(1)) <img src=x onerror=alert(1)>",
                b"| a | b |\n|---|---|\n| <b onclick=x>1</b> | [z](data:text/html,<script>) |",
                b"- [ ] task\n- [x] done\n> quote\n\n```js\n<iframe srcdoc='x'>\n```",
                b"<a href=\"vbscript:msgbox\">v</a> <svg><script>x</script></svg> <style>*{}</style>",
                b"[l](  java\tscript:x) ![img](javascript:x \"t\") <form action=javascript:x>",
                // Found by libFuzzer: ammonia's default schemes let `mms:` through.
                b"=x](jrt <img src=mms:\x7fmg src=x> [s](ssh://host) [m](magnet:?xt=1)",
            ],
            3_000,
            markdown,
        );
    }

    #[test]
    fn the_html_check_catches_what_it_must() {
        assert!(
            html_is_safe(
                "<p>a <a href=\"https://x\" rel=\"n\">b</a></p>",
                chat::CHAT_TAGS,
                CHAT_URL_SCHEMES
            )
            .is_ok()
        );
        assert!(
            html_is_safe(
                "<script>x</script>",
                COURSE_TAGS,
                crate::courses::COURSE_URL_SCHEMES
            )
            .is_err()
        );
        assert!(
            html_is_safe(
                "<p onclick=\"x\">a</p>",
                COURSE_TAGS,
                crate::courses::COURSE_URL_SCHEMES
            )
            .is_err()
        );
        assert!(
            html_is_safe(
                "<a href=\"java&#x73;cript:x\">a</a>",
                COURSE_TAGS,
                crate::courses::COURSE_URL_SCHEMES
            )
            .is_err()
        );
        assert!(
            html_is_safe(
                "<a href=\"/relative:ok\">a</a>",
                COURSE_TAGS,
                crate::courses::COURSE_URL_SCHEMES
            )
            .is_ok()
        );
        assert!(
            html_is_safe(
                "<p title=\"a onclick=b\">t</p>",
                COURSE_TAGS,
                crate::courses::COURSE_URL_SCHEMES
            )
            .is_ok()
        );
        assert!(html_is_safe("<img src=\"x\">", chat::CHAT_TAGS, CHAT_URL_SCHEMES).is_err());
    }

    const SEND: &[u8] = br#"{"type":"send","channel":"course:0190a6f0-0000-7000-8000-000000000001","client_id":"c1","body":"hi **there**"}"#;
    const POLL_OPEN: &[u8] = br#"{"type":"poll_open","client_id":"p1","channel":"lesson:0190a6f0-0000-7000-8000-000000000001","question":"Q?","options":["a","b"]}"#;

    #[test]
    fn chat_frames_are_decoded_or_refused_with_their_client_id() {
        // The seeds reach each outcome.
        assert!(matches!(chat::decode_frame(SEND), Decoded::Chat(_)));
        assert!(matches!(
            chat::decode_frame(POLL_OPEN),
            Decoded::Interaction { client_id: Some(ref c), .. } if c == "p1"
        ));
        assert!(matches!(
            chat::decode_frame(br#"{"type":"nope","client_id":"x"}"#),
            Decoded::Refused { code: chat::ChatError::UnknownType, client_id: Some(ref c), .. } if c == "x"
        ));
        assert!(matches!(
            chat::decode_frame(br#"{"type":"poll_open","client_id":"p2","channel":7}"#),
            Decoded::Refused { code: chat::ChatError::BadFrame, client_id: Some(ref c), .. } if c == "p2"
        ));
        run(
            &[
                br#"{"type":"subscribe","channel":"lesson:0190a6f0-0000-7000-8000-000000000001","since_seq":3}"#,
                SEND,
                POLL_OPEN,
                br#"{"type":"ask","client_id":"q1","channel":"lesson:0190a6f0-0000-7000-8000-000000000001","body":"why?","anonymous":true}"#,
                br#"{"type":"live_reaction","client_id":"r1","channel":"lesson:0190a6f0-0000-7000-8000-000000000001","reaction":"lost"}"#,
                br#"{"type":"nope","client_id":"x"}"#,
                br#"{"type":"send","client_id":"n","body":"a\u0000b"}"#,
                b"[1,2,{\"client_id\":7}]",
            ],
            5_000,
            chat_frame,
        );
    }

    #[test]
    fn attachments_magic_numbers_hold_on_any_bytes() {
        run(
            &[
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                b"\xff\xd8\xff\xe0\0\x10JFIF",
                b"RIFF\0\0\0\0WEBPVP8 ",
                b"%PDF-1.7\n",
                b"PK\x03\x04",
                b"ID3\x04\0",
                b"\0\0\0\x18ftypmp42",
                "plain text, 中文\n".as_bytes(),
            ],
            5_000,
            attachment_magic,
        );
    }

    #[test]
    fn payment_callbacks_verify_only_when_signed() {
        let stripe_event = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":100,"currency":"cny","metadata":{"order_id":"0190a6f0-0000-7000-8000-000000000001"}}}}"#;
        let mut signed = vec![0x81u8];
        signed.extend_from_slice(stripe_event);
        let mut sandbox = vec![0x80u8];
        sandbox.extend_from_slice(stripe_event);
        run(
            &[
                &signed,
                &sandbox,
                b"\x01t=1800000000,v1=00\n{}",
                b"\x02sign_type=RSA2&sign=AAAA&out_trade_no=1&trade_status=TRADE_SUCCESS",
                b"\x03{\"resource\":{\"algorithm\":\"AEAD_AES_256_GCM\",\"ciphertext\":\"AA==\",\"nonce\":\"n\"}}",
            ],
            2_000,
            payment_callback,
        );
        // The signed seed is not refused by the entry: the right signature passes the gate.
        let settings = payment_settings();
        let h =
            stripe_signature_header(FUZZ_WEBHOOK_SECRET.as_bytes(), 1_800_000_000, stripe_event);
        let header = |_: &'static str| Some(h.as_str());
        let r = Provider::Stripe.verify_callback(settings, &header, stripe_event, 1_800_000_000);
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn access_tokens_verify_only_untouched() {
        let valid = token_fixture().valid.clone();
        let mut raw = vec![0u8];
        raw.extend_from_slice(valid.as_bytes());
        run(
            &[
                &raw,
                b"\0eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
                b"\0eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.AAAA",
                b"\x10A\x20B\x90C",
                b"\0....",
            ],
            3_000,
            access_token,
        );
        access_token(&raw); // the untouched token verifies (asserted inside)
    }
}
