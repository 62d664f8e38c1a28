//! Low-Latency HLS end to end: ffmpeg publishes over RTMP, the LL playlist starts on the first
//! request (on demand), blocking reloads wake on the next part, parts and segments decode
//! with ffprobe, ffmpeg and GStreamer's `qtdemux` (independent demuxers of our fMP4), delta
//! updates skip what is older than `CAN-SKIP-UNTIL`, and private streams carry the token into
//! every URI.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::{assert_problem, spawn_app_with},
    live_rtmp::{Live, ffmpeg_publish_gop},
};

/// A live stream on an app with 1 s segments (`EXT-X-TARGETDURATION:2`, so delta updates skip
/// what is older than 12 s) and 200 ms parts.
async fn live(visibility: &str) -> Live {
    let app = spawn_app_with(|s| {
        s.live.segment_duration_s = 1.0;
        s.live.segment_max_duration_s = Some(1.5);
        s.live.part_duration_s = 0.2;
    })
    .await;
    Live::on(app, 2, visibility).await
}

fn ll_path(live: &Live) -> String {
    format!("/hls/live/{}/ll.m3u8", live.id())
}

/// GET an LL playlist; 200 answers are checked by [`crate::playlists`].
async fn get_ll(live: &Live, query: &str) -> (StatusCode, String, Duration) {
    let url = live.app.url(&format!("{}{query}", ll_path(live)));
    let start = Instant::now();
    match crate::playlists::fetch(&live.app.client, &url).await {
        Ok(text) => (StatusCode::OK, text, start.elapsed()),
        Err(status) => (status, String::new(), start.elapsed()),
    }
}

/// The last `#EXT-X-PART` of a playlist: (msn, part index).
fn last_part(playlist: &str) -> (u64, u64) {
    let uri = playlist
        .lines()
        .rfind(|l| l.starts_with("#EXT-X-PART:"))
        .expect("the playlist lists parts");
    part_of(uri)
}

/// (msn, part) from a line naming `ll-M.P.m4s`.
fn part_of(line: &str) -> (u64, u64) {
    let name = line.split("ll-").nth(1).unwrap();
    let stem = name.split(".m4s").next().unwrap();
    let (m, p) = stem.split_once('.').unwrap();
    (m.parse().unwrap(), p.parse().unwrap())
}

/// The quoted `URI="…"` of a tag line.
fn uri_of(line: &str) -> &str {
    line.split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
}

async fn fetch_media(live: &Live, uri: &str) -> reqwest::Response {
    live.app
        .get(&format!("/hls/live/{}/{uri}", live.id()))
        .await
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .expect("the tool is installed (scripts/test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// ffprobe: the codecs and the number of packets in `path`, failing on any error.
fn probe(path: &Path) -> (Vec<String>, usize) {
    let (ok, out) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-count_packets",
        ])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path));
    assert!(ok, "ffprobe {}: {out}", path.display());
    let mut codecs = Vec::new();
    let mut packets = 0;
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (codec, n) = line.split_once(',').unwrap_or((line, "0"));
        codecs.push(codec.to_string());
        packets += n.trim().parse::<usize>().unwrap_or(0);
    }
    codecs.sort();
    (codecs, packets)
}

#[tokio::test]
async fn ll_hls_parts_decode_and_a_blocking_reload_wakes_on_the_next_part() {
    let live = live("public").await;
    let publisher = ffmpeg_publish_gop(&live.rtmp_url(), 30, true, 30);
    live.wait_playlist(Duration::from_secs(20), "a first segment", |p| {
        p.contains("#EXTINF")
    })
    .await;

    // The first request starts the LL output (on demand) and waits until it can be played.
    let (status, first, waited) = get_ll(&live, "").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(
        waited < Duration::from_secs(6),
        "the first LL playlist took {waited:?}"
    );
    for tag in [
        "#EXT-X-VERSION:9\n",
        "#EXT-X-TARGETDURATION:2\n",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=0.600\n",
        "#EXT-X-PART-INF:PART-TARGET=0.200\n",
        "#EXT-X-MAP:URI=\"",
        "#EXT-X-PROGRAM-DATE-TIME:",
        ",INDEPENDENT=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"",
    ] {
        assert!(first.contains(tag), "no {tag:?} in\n{first}");
    }

    // A player without LL support plays the same playlist as fMP4 HLS: GStreamer's playbin3
    // (hlsdemux2, qtdemux, the decoders) for ten seconds, beside the rest of this test.
    let gst = Command::new("timeout")
        .args(["10", "gst-launch-1.0", "-v", "playbin3"])
        .arg(format!("uri={}", live.app.url(&ll_path(&live))))
        .args(["video-sink=fpsdisplaysink text-overlay=false video-sink=fakesink"])
        .args(["audio-sink=fakesink"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 is installed (scripts/test installs it)");

    // A blocking reload for the part after the last one waits for it, then lists it.
    let (msn, part) = last_part(&first);
    let (status, next, waited) =
        get_ll(&live, &format!("?_HLS_msn={msn}&_HLS_part={}", part + 1)).await;
    assert_eq!(status, StatusCode::OK);
    let listed = next
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .map(part_of)
        .any(|p| p == (msn, part + 1) || p.0 > msn);
    assert!(
        listed,
        "the awaited part is not listed after {waited:?}:\n{next}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "a part takes 200 ms, waited {waited:?}"
    );

    // The preload hint names a part that does not exist yet: its GET waits and gets it.
    let hint = next
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .map(uri_of)
        .unwrap()
        .to_string();
    let r = fetch_media(&live, &hint).await;
    assert_eq!(r.status(), StatusCode::OK, "{hint}");
    assert_eq!(r.headers()["content-type"], "video/iso.segment");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let hinted = r.bytes().await.unwrap();
    assert_eq!(&hinted[4..8], b"moof");

    // Far ahead of the live edge, or a part without its segment: 400, at once.
    for bad in [format!("?_HLS_msn={}", msn + 5), "?_HLS_part=1".to_string()] {
        let r = live.app.get(&format!("{}{bad}", ll_path(&live))).await;
        assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }

    // Every part of a complete segment: init + part probes with ffprobe, and the parts put
    // together are the segment, which ffmpeg and GStreamer's qtdemux decode without an error.
    let (_, text, _) = get_ll(&live, &format!("?_HLS_msn={}", msn + 1)).await;
    let lines: Vec<&str> = text.lines().collect();
    let map = uri_of(lines.iter().find(|l| l.starts_with("#EXT-X-MAP:")).unwrap()).to_string();
    let init = fetch_media(&live, &map).await;
    assert_eq!(init.headers()["content-type"], "video/mp4");
    let init = init.bytes().await.unwrap();
    // The first complete segment whose parts are all listed.
    let mut parts = Vec::new();
    let mut segment_uri = None;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("#EXT-X-PART:") {
            parts.push(uri_of(l).to_string());
        } else if l.starts_with("#EXTINF:") {
            if parts.first().is_some_and(|p| part_of(p).1 == 0) {
                segment_uri = Some(lines[i + 1].to_string());
                break;
            }
            parts.clear();
        }
    }
    let segment_uri =
        segment_uri.unwrap_or_else(|| panic!("no segment with all its parts:\n{text}"));
    let dir = tempfile::tempdir().unwrap();
    let mut joined = init.to_vec();
    for (i, uri) in parts.iter().enumerate() {
        let bytes = fetch_media(&live, uri).await.bytes().await.unwrap();
        let path = dir.path().join(format!("part{i}.mp4"));
        std::fs::write(&path, [&init[..], &bytes[..]].concat()).unwrap();
        let (codecs, packets) = probe(&path);
        assert_eq!(codecs, ["aac", "h264"], "{uri}");
        assert!(packets > 0, "{uri} holds no packet");
        joined.extend_from_slice(&bytes);
    }
    let whole = fetch_media(&live, &segment_uri)
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&joined[init.len()..], &whole[..], "a segment is its parts");
    let path = dir.path().join("segment.mp4");
    std::fs::write(&path, &joined).unwrap();
    let (codecs, packets) = probe(&path);
    assert_eq!(codecs, ["aac", "h264"]);
    assert!(packets >= 25, "a 1 s segment holds {packets} packets");
    let (ok, out) = run(Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"]));
    assert!(
        ok && out.trim().is_empty(),
        "ffmpeg decoding the segment: {out}"
    );
    let (ok, out) = run(Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", path.display()))
        .args([
            "!",
            "qtdemux",
            "name=d",
            "d.video_0",
            "!",
            "queue",
            "!",
            "h264parse",
            "!",
        ])
        .args([
            "avdec_h264",
            "!",
            "fakesink",
            "d.audio_0",
            "!",
            "queue",
            "!",
            "aacparse",
        ])
        .args(["!", "avdec_aac", "!", "fakesink"]));
    assert!(ok, "GStreamer qtdemux: {out}");

    // (Waited for off the runtime's thread: the server under test runs on it.)
    let gst = tokio::task::spawn_blocking(move || gst.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&gst.stdout);
    let rendered = log
        .lines()
        .filter_map(|l| l.split("rendered: ").nth(1))
        .filter_map(|r| r.split(',').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        rendered >= 120 && !log.contains("ERROR"),
        "playbin3 rendered {rendered} frames of the LL playlist: {log}{}",
        String::from_utf8_lossy(&gst.stderr)
    );

    // Delta updates: once there is more than 12 s, what is older than CAN-SKIP-UNTIL is skipped.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (_, full, _) = get_ll(&live, "").await;
    let (_, delta, _) = get_ll(&live, "?_HLS_skip=YES").await;
    assert!(!full.contains("#EXT-X-SKIP"), "{full}");
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    assert!(delta.len() < full.len());

    // The session ends (after the 2 s reconnect window): the LL playlist ends too, and a
    // blocking request for what will never come answers at once.
    crate::live_rtmp::wait_child(publisher, Duration::from_secs(60)).await;
    let start = Instant::now();
    let ended = loop {
        let (_, text, _) = get_ll(&live, "").await;
        if text.ends_with("#EXT-X-ENDLIST\n") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no ENDLIST:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (msn, _) = last_part(&ended);
    let (status, _, waited) = get_ll(&live, &format!("?_HLS_msn={}&_HLS_part=0", msn + 1)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        waited < Duration::from_secs(1),
        "an ended playlist made a request wait {waited:?}"
    );
}

#[tokio::test]
async fn a_private_ll_stream_needs_the_token_on_every_uri() {
    let live = live("private").await;
    let publisher = ffmpeg_publish_gop(&live.rtmp_url(), 12, true, 30);
    let r = live.action("playback-token").await;
    let grant: Value = r.json().await.unwrap();
    let token = grant["token"].as_str().unwrap().to_string();
    let ll_url = grant["ll_hls_url"]
        .as_str()
        .expect("LL-HLS is on by default");
    assert!(
        ll_url.ends_with(&format!("/ll.m3u8?token={token}")),
        "{ll_url}"
    );

    let start = Instant::now();
    let text = loop {
        let (status, text, _) = get_ll(&live, &format!("?token={token}")).await;
        if status == StatusCode::OK {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no LL playlist: {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_problem(
        live.app.get(&ll_path(&live)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let suffix = format!("?token={token}");
    let uris: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            if l.contains("URI=\"") {
                Some(uri_of(l))
            } else if !l.starts_with('#') && !l.is_empty() {
                Some(l)
            } else {
                None
            }
        })
        .collect();
    assert!(
        uris.len() > 3 && uris.iter().all(|u| u.ends_with(&suffix)),
        "{text}"
    );
    let part = uris.iter().find(|u| u.contains(".0.m4s")).unwrap();
    let r = fetch_media(&live, part).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    let bare = part.split('?').next().unwrap();
    assert_eq!(
        fetch_media(&live, bare).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let _ = crate::live_rtmp::wait_child(publisher, Duration::from_secs(60)).await;
}
