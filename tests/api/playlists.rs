//! Every HLS playlist the suite fetches through [`fetch`] is checked here against RFC 8216's
//! rules and ours, and kept (when `WEMASTER_TEST_PLAYLISTS` names a directory) for the
//! independent parser scripts/test runs over them afterwards (`m3u8`, tests/hls/).
//!
//! Rules of one playlist: `#EXTM3U` first; one integer `EXT-X-TARGETDURATION`; every
//! `#EXTINF` rounded to the nearest second at most the target (§4.3.3.1); one `#EXTINF` per
//! URI; no URI twice; `#EXT-X-ENDLIST` only last, and present on VOD; live playlists date
//! every segment (`EXT-X-PROGRAM-DATE-TIME`), recordings all or none, never going back.
//! Rules across reloads of one URL (§6.2.1, §6.2.2): the target never changes, the media
//! sequence and discontinuity sequence never go back.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Target, media sequence, discontinuity sequence last seen per playlist URL (no query).
static SEEN: Mutex<Option<HashMap<String, (u64, u64, u64)>>> = Mutex::new(None);
static SAVED: AtomicU64 = AtomicU64::new(0);

/// GET a playlist (`url` absolute); a 200 answer is checked and its text returned, any other
/// status is returned as `Err`.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<String, reqwest::StatusCode> {
    let r = client.get(url).send().await.expect("GET playlist");
    if r.status() != reqwest::StatusCode::OK {
        return Err(r.status());
    }
    let text = r.text().await.unwrap();
    check(url, &text);
    Ok(text)
}

/// Check `text`, fetched from `url`, and remember what reloads must keep.
pub(crate) fn check(url: &str, text: &str) {
    let path = url.split('?').next().unwrap_or(url);
    let facts = rules(path.contains("/hls/live/"), text).unwrap_or_else(|e| {
        panic!("playlist {path} breaks a rule: {e}\n{text}");
    });
    let mut seen = SEEN.lock().unwrap();
    let seen = seen.get_or_insert_with(HashMap::new);
    if let Some(&(target, seq, disc)) = seen.get(path) {
        assert_eq!(
            facts.0, target,
            "{path}: EXT-X-TARGETDURATION changed on reload (RFC 8216 §6.2.1)\n{text}"
        );
        assert!(facts.1 >= seq, "{path}: media sequence went back\n{text}");
        assert!(
            facts.2 >= disc,
            "{path}: discontinuity sequence went back\n{text}"
        );
    }
    seen.insert(path.to_string(), facts);
    if let Ok(dir) = std::env::var("WEMASTER_TEST_PLAYLISTS") {
        let n = SAVED.fetch_add(1, Ordering::Relaxed);
        let kind = if path.contains("/hls/live/") {
            "live"
        } else {
            "vod"
        };
        let name = format!("{kind}-{}-{n:05}.m3u8", std::process::id());
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(std::path::Path::new(&dir).join(name), text).unwrap();
    }
}

/// The rules of one playlist; returns (target, media sequence, discontinuity sequence).
fn rules(live: bool, text: &str) -> Result<(u64, u64, u64), String> {
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        return Err("the first line is not #EXTM3U".into());
    }
    let value = |tag: &str| -> Result<Option<u64>, String> {
        let found: Vec<_> = text.lines().filter_map(|l| l.strip_prefix(tag)).collect();
        match found.as_slice() {
            [] => Ok(None),
            [v] => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{tag}{v} is not an integer")),
            _ => Err(format!("{tag} appears {} times", found.len())),
        }
    };
    let target = value("#EXT-X-TARGETDURATION:")?.ok_or("no EXT-X-TARGETDURATION")?;
    let seq = value("#EXT-X-MEDIA-SEQUENCE:")?.unwrap_or(0);
    let disc = value("#EXT-X-DISCONTINUITY-SEQUENCE:")?.unwrap_or(0);
    let mut extinf: Option<f64> = None;
    let mut dated: Option<OffsetDateTime> = None;
    let mut last_date: Option<OffsetDateTime> = None;
    let (mut uris, mut with_date) = (Vec::new(), 0usize);
    let all: Vec<&str> = text.lines().collect();
    for (i, line) in all.iter().enumerate() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d
                .trim_end_matches(',')
                .split(',')
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| format!("bad #EXTINF: {line}"))?;
            if extinf.replace(d).is_some() {
                return Err(format!("two #EXTINF for one segment at line {}", i + 1));
            }
            if d.round() as u64 > target {
                return Err(format!("#EXTINF:{d} rounds above the target {target}"));
            }
        } else if let Some(at) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let at = OffsetDateTime::parse(at, &Rfc3339).map_err(|e| format!("{line}: {e}"))?;
            if last_date.is_some_and(|last| at < last) {
                return Err(format!("{line} goes back in time"));
            }
            dated = Some(at);
            last_date = Some(at);
        } else if *line == "#EXT-X-ENDLIST" {
            if i + 1 != all.len() {
                return Err("#EXT-X-ENDLIST is not the last line".into());
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            if extinf.take().is_none() {
                return Err(format!("{line} has no #EXTINF"));
            }
            if dated.take().is_some() {
                with_date += 1;
            }
            let bare = line.split('?').next().unwrap_or(line);
            if uris.contains(&bare) {
                return Err(format!("{bare} is listed twice"));
            }
            uris.push(bare);
        }
    }
    if extinf.is_some() {
        return Err("an #EXTINF without a URI".into());
    }
    if text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && !text.ends_with("#EXT-X-ENDLIST\n") {
        return Err("a VOD playlist without #EXT-X-ENDLIST".into());
    }
    if live && with_date != uris.len() {
        return Err(format!(
            "{} of {} live segments without EXT-X-PROGRAM-DATE-TIME",
            uris.len() - with_date,
            uris.len()
        ));
    }
    if !live && with_date != 0 && with_date != uris.len() {
        return Err("some recorded segments are dated and some are not".into());
    }
    Ok((target, seq, disc))
}

#[test]
fn the_checker_finds_what_rfc_8216_forbids() {
    let good = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n\
                #EXT-X-PROGRAM-DATE-TIME:2026-12-02T01:00:00.000Z\n#EXTINF:4.400,\na.ts\n\
                #EXT-X-PROGRAM-DATE-TIME:2026-12-02T01:00:04.400Z\n#EXTINF:2.000,\nb.ts?token=x\n";
    assert_eq!(rules(true, good), Ok((4, 3, 0)));
    let bad = [
        good.replace("#EXTINF:4.400", "#EXTINF:4.600"),
        good.replace("#EXT-X-TARGETDURATION:4\n", ""),
        good.replace("b.ts", "a.ts"),
        good.replace("#EXT-X-PROGRAM-DATE-TIME:2026-12-02T01:00:04.400Z\n", ""),
        good.replace("01:00:04.400Z", "00:59:59.000Z"),
        format!("{good}#EXT-X-ENDLIST\n#EXTINF:2.000,\nc.ts\n"),
        good.replace("#EXTINF:2.000,\n", ""),
        good.replace("#EXT-X-MEDIA-SEQUENCE:3", "#EXT-X-PLAYLIST-TYPE:VOD"),
    ];
    for b in bad {
        assert!(rules(true, &b).is_err(), "accepted:\n{b}");
    }
    // Recordings made before dates were kept have none at all: allowed.
    let undated = good
        .lines()
        .filter(|l| !l.starts_with("#EXT-X-PROGRAM"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(rules(false, &format!("{undated}\n")).is_ok());
    assert!(rules(true, &format!("{undated}\n")).is_err());
}
