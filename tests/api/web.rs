//! The web app: how `wemaster serve` serves it (deep links, caching, security headers), the
//! browser session mode of the auth API (refresh cookie + CSRF), and the classroom end to end in
//! Debian's Chromium driven by Playwright (`web/e2e/classroom.mjs`): a teacher going live from
//! the browser (WHIP) or with ffmpeg (RTMP), a student buying, watching, chatting, reloading and
//! watching the replay; the teacher's studio and the ops console (`web/e2e/studio.mjs`,
//! `web/e2e/recordings.mjs`). `scripts/test` builds web/dist before these run.

use std::{path::PathBuf, process::Stdio, time::Duration};

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with, unique_email};

const PW: &str = "a long passphrase for tests";

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The built app must be there: the tests read it from disk (debug builds do not embed it).
fn require_dist() {
    assert!(
        web_dir().join("dist/index.html").exists(),
        "web/dist is not built: run the tests with scripts/test (or `cd web && npm ci && npm run build`)"
    );
}

fn header_of(r: &reqwest::Response, name: header::HeaderName) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn app_routes_answer_the_index_page_with_a_strict_csp_and_no_cache() {
    require_dist();
    let app = spawn_app().await;
    for path in [
        "/",
        "/courses",
        "/lessons/0198c3e2-0000-7000-8000-000000000000",
        "/me/wallet",
        "/studio/x",
        "/studio/courses/0198c3e2-0000-7000-8000-000000000000/lessons",
        "/ops/storage",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            header_of(&r, header::CONTENT_TYPE).starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache", "{path}");
        let csp = header_of(&r, "content-security-policy".parse().unwrap());
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(
            header_of(&r, "x-content-type-options".parse().unwrap()),
            "nosniff"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains("<div id=\"root\">"), "{path}: {body}");
        // Vite emits no inline script: the CSP would block it.
        assert!(
            !body.contains("<script>") && body.contains("type=\"module\""),
            "{body}"
        );
    }
    // The request metrics count them as app pages, not with unknown paths.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total") && l.contains("route=\"web app page\"")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn hashed_assets_are_immutable_gzipped_and_a_missing_one_is_a_404() {
    require_dist();
    let app = spawn_app().await;
    let index = app.get("/").await.text().await.unwrap();
    let script = index
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("index.html names its script");
    assert!(script.starts_with("/assets/"), "{script}");
    let r = app
        .client
        .get(app.url(script))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert!(header_of(&r, header::CONTENT_TYPE).contains("javascript"));
    assert_eq!(header_of(&r, header::CONTENT_ENCODING), "gzip");
    let etag = header_of(&r, header::ETAG);
    let again = app
        .client
        .get(app.url(script))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // A missing hashed file must not be answered with the HTML page.
    assert_problem(
        app.get("/assets/nothing-here.js").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
    // Server paths keep their meaning.
    assert_problem(
        app.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
    assert_problem(
        app.get("/hls/nothing").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
    app.stop().await;
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
    })
}

#[tokio::test]
async fn browser_mode_keeps_the_refresh_token_in_an_http_only_cookie_with_csrf() {
    let app = spawn_app().await;
    let email = unique_email("cookie");
    app.register(&email, PW).await;
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW, "cookie": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("wm_refresh="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1/auth/refresh",
    ] {
        assert!(refresh_cookie.contains(attr), "{refresh_cookie}");
    }
    let refresh = cookie_value(&cookies, "wm_refresh").unwrap();
    let csrf = cookie_value(&cookies, "wm_csrf").unwrap();

    let call = |cookie: String, csrf_header: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/api/v1/auth/refresh"))
            .header(header::COOKIE, cookie)
            .json(&json!({}));
        if let Some(h) = csrf_header {
            req = req.header("x-csrf-token", h);
        }
        req.send()
    };
    // Without the CSRF header (what a cross-site form could send): refused.
    let r = call(format!("wm_refresh={refresh}; wm_csrf={csrf}"), None)
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = call(
        format!("wm_refresh={refresh}; wm_csrf={csrf}"),
        Some("forged".into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With it: a new access token and a rotated cookie.
    let r = call(
        format!("wm_refresh={refresh}; wm_csrf={csrf}"),
        Some(csrf.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = set_cookies(&r);
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    assert!(body.get("refresh_token").is_none());
    let new_refresh = cookie_value(&rotated, "wm_refresh").unwrap();
    assert_ne!(new_refresh, refresh);
    let me = app.get_auth("/api/v1/me", &access).await;
    assert_eq!(me.status(), StatusCode::OK);

    // Logout ends the session and clears both cookies.
    let r = app
        .send(Method::POST, "/api/v1/auth/logout", Some(&access), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookies(&r);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("wm_refresh=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let new_csrf = cookie_value(&rotated, "wm_csrf").unwrap();
    let r = call(
        format!("wm_refresh={new_refresh}; wm_csrf={new_csrf}"),
        Some(new_csrf.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A refused cookie is cleared so the page stops presenting it.
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("wm_refresh=;"))
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    let email = unique_email("everywhere");
    app.register(&email, PW).await;
    let a = app.login(&email, PW).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.login(&email, PW).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .send(Method::DELETE, "/api/v1/me/sessions", Some(&a), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        assert_eq!(
            app.get_auth("/api/v1/me", t).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn profiles_answer_display_names_only_to_signed_in_users() {
    let app = spawn_app().await;
    let (id, token) = app
        .user_with(
            &unique_email("profile"),
            PW,
            &[wemaster::users::Role::Student],
        )
        .await;
    let r = app.get(&format!("/api/v1/users/profiles?ids={id}")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .get_auth(
            &format!("/api/v1/users/profiles?ids={id},{}", uuid::Uuid::now_v7()),
            &token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"], json!([{"id": id, "display_name": "Test"}]));
    let many = (0..101)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let r = app
        .get_auth(&format!("/api/v1/users/profiles?ids={many}"), &token)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// A published paid course with one broadcast lesson, made by a teacher through the API.
async fn course_with_lesson(app: &TestApp, teacher: &str) -> (String, Value) {
    let course: Value = app
        .send(
            Method::POST,
            "/api/v1/courses",
            Some(teacher),
            Some(&json!({"title": "Calligraphy for beginners", "summary": "Brush, ink and the first strokes",
                         "description": "Eight live lessons.", "price": {"amount": 9900, "currency": "CNY"},
                         "visibility": "published", "tags": ["art"]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let course_id = course["id"].as_str().expect("course created").to_string();
    let starts = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    let lesson: Value = app
        .send(
            Method::POST,
            &format!("/api/v1/courses/{course_id}/lessons"),
            Some(teacher),
            Some(&json!({"title": "The first stroke", "kind": "broadcast",
                         "starts_at": starts.format(&time::format_description::well_known::Rfc3339).unwrap(),
                         "duration_minutes": 45, "time_zone": "Asia/Shanghai"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(lesson["id"].is_string(), "{lesson}");
    (course_id, lesson)
}

/// Run the Playwright scenario; its output goes to the test's output.
async fn run_classroom(mode: &str, extra: &[(&str, String)]) {
    require_dist();
    // Short access tokens, so the scenario sees one expire and be refreshed.
    let app = spawn_app_with(|s| s.auth.access_token_ttl_s = 12).await;
    let teacher_email = unique_email("teacher-web");
    let (_, teacher) = app
        .user_with(&teacher_email, PW, &[wemaster::users::Role::Teacher])
        .await;
    let (course_id, lesson) = course_with_lesson(&app, &teacher).await;
    let rtmp_url = format!(
        "rtmp://{}/live/{}",
        app.rtmp_addr,
        lesson["stream_key"].as_str().unwrap()
    );
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/web");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(web_dir().join("e2e/classroom.mjs"))
        .current_dir(web_dir())
        .env("WM_BASE", &app.base)
        .env("WM_MODE", mode)
        .env("WM_TEACHER_EMAIL", &teacher_email)
        .env("WM_TEACHER_PASSWORD", PW)
        .env("WM_COURSE_ID", &course_id)
        .env("WM_LESSON_ID", lesson["id"].as_str().unwrap())
        .env("WM_RTMP_URL", rtmp_url)
        .env("WM_ACCESS_TTL_S", "12")
        .env("WM_SCREENSHOTS", screenshots)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let status = tokio::time::timeout(Duration::from_secs(300), cmd.status())
        .await
        .expect("the classroom scenario finishes within 5 minutes")
        .expect("node runs (scripts/test installs it)");
    assert!(
        status.success(),
        "the classroom scenario failed ({status}): see its output above"
    );
    app.stop().await;
}

#[tokio::test]
async fn classroom_in_the_browser_with_a_whip_teacher() {
    run_classroom("whip", &[]).await;
}

#[tokio::test]
async fn classroom_in_the_browser_with_an_ffmpeg_rtmp_teacher() {
    run_classroom("rtmp", &[]).await;
}

#[tokio::test]
async fn the_checkout_offers_only_the_enabled_payment_providers() {
    let app = spawn_app_with(|s| s.payments.stripe.enabled = false).await;
    let r = app.get("/api/v1/payments/providers").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"], json!(["sandbox"]));
    app.stop().await;
    let app = spawn_app_with(|s| s.payments.sandbox.enabled = false).await;
    let body: Value = app
        .get("/api/v1/payments/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"], json!([]));
    app.stop().await;
}

/// Every answer says `nosniff`; HSTS only when configured for an https site (it tells browsers
/// to use TLS only, so a plain-http site must never send it).
#[tokio::test]
async fn every_answer_says_nosniff_and_hsts_comes_when_configured() {
    let app = spawn_app().await;
    for path in ["/api/v1/courses", "/healthz", "/api/v1/nope", "/courses"] {
        let r = app.get(path).await;
        assert_eq!(
            header_of(&r, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{path}"
        );
        assert!(
            r.headers().get(header::STRICT_TRANSPORT_SECURITY).is_none(),
            "{path}"
        );
    }
    app.stop().await;
    let app = spawn_app_with(|s| {
        s.http.public_url = Some("https://lessons.example.com".parse().unwrap());
        s.http.hsts_max_age_s = 31_536_000;
    })
    .await;
    for path in ["/api/v1/courses", "/healthz", "/courses"] {
        let r = app.get(path).await;
        assert_eq!(
            header_of(&r, header::STRICT_TRANSPORT_SECURITY),
            "max-age=31536000",
            "{path}"
        );
    }
    app.stop().await;
}

/// Stripe's card form (web/e2e/checkout-stripe.mjs), against localstripe: the providers list
/// names the form only when configured, the page's CSP admits the configured Stripe.js, a
/// declined card leaves the order open, a card with 3-D Secure pays it through the webhook.
#[tokio::test]
async fn a_card_payment_through_stripes_card_form_in_the_browser() {
    require_dist();
    let stripe = crate::payment_gateways::localstripe();
    let js_url = format!("{stripe}/js.stripe.com/v3/");
    let plain = crate::payment_gateways::stripe_app_with(false, |_| {}).await;
    let body: Value = plain
        .get("/api/v1/payments/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["stripe"],
        Value::Null,
        "no publishable key, no card form"
    );
    plain.stop().await;

    let js = js_url.clone();
    let app = crate::payment_gateways::stripe_app_with(true, move |s| {
        s.payments.stripe.publishable_key = "pk_test_wemaster".into();
        s.payments.stripe.js_url = js;
    })
    .await;
    let body: Value = app
        .get("/api/v1/payments/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["stripe"],
        json!({"publishable_key": "pk_test_wemaster", "js_url": js_url})
    );
    let page = app.get("/courses").await;
    let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains(&format!("script-src 'self' {stripe};")),
        "{csp}"
    );
    let teacher = unique_email("teacher-stripe");
    let student = unique_email("student-stripe");
    let (_, teacher_token) = app
        .user_with(&teacher, PW, &[wemaster::users::Role::Teacher])
        .await;
    let (_, student_token) = app
        .user_with(&student, PW, &[wemaster::users::Role::Student])
        .await;
    let (course_id, _) = course_with_lesson(&app, &teacher_token).await;
    run_script(
        "checkout-stripe.mjs",
        &app,
        &[
            ("WM_STRIPE_URL", stripe),
            (
                "WM_STRIPE_SECRET_KEY",
                crate::payment_gateways::STRIPE_KEY.into(),
            ),
            ("WM_STUDENT_EMAIL", student.clone()),
            ("WM_STUDENT_PASSWORD", PW.into()),
            ("WM_COURSE_ID", course_id.clone()),
        ],
    )
    .await;
    // The server agrees: one paid order for the course, through Stripe.
    let orders: Value = app
        .get_auth("/api/v1/orders", &student_token)
        .await
        .json()
        .await
        .unwrap();
    let paid: Vec<_> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "paid" && o["product_id"] == course_id.as_str())
        .collect();
    assert_eq!(paid.len(), 1, "{orders}");
    assert_eq!(paid[0]["provider"], "stripe");
    app.stop().await;
}

/// Run one of the Playwright scripts of web/e2e with `env`; its output goes to the test's.
async fn run_script(script: &str, app: &TestApp, env: &[(&str, String)]) {
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/web");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(web_dir().join("e2e").join(script))
        .current_dir(web_dir())
        .env("WM_BASE", &app.base)
        .env("WM_SCREENSHOTS", screenshots)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = tokio::time::timeout(Duration::from_secs(300), cmd.status())
        .await
        .expect("the scenario finishes within 5 minutes")
        .expect("node runs (scripts/test installs it)");
    assert!(
        status.success(),
        "{script} failed ({status}): see its output above"
    );
}

/// Tests 1, 3, 4 and 5 of the studio and console (web/e2e/studio.mjs): a course built and
/// published in the studio, found and bought by a student; a payout asked for, approved and
/// paid; students and teachers kept out where they do not belong; axe in both languages.
#[tokio::test]
async fn studio_and_console_in_the_browser() {
    require_dist();
    // The script's webhook receiver listens on loopback: an internal address, allowed here.
    let app = crate::helpers::spawn_app_with(|s| {
        s.webhooks.allow_internal_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let teacher = unique_email("teacher-studio");
    let student = unique_email("student-studio");
    let admin = unique_email("admin-studio");
    app.user_with(&teacher, PW, &[wemaster::users::Role::Teacher])
        .await;
    app.user_with(&student, PW, &[wemaster::users::Role::Student])
        .await;
    app.user_with(&admin, PW, &[wemaster::users::Role::Admin])
        .await;
    run_script(
        "studio.mjs",
        &app,
        &[
            ("WM_TEACHER_EMAIL", teacher),
            ("WM_TEACHER_PASSWORD", PW.into()),
            ("WM_STUDENT_EMAIL", student),
            ("WM_STUDENT_PASSWORD", PW.into()),
            ("WM_ADMIN_EMAIL", admin),
            ("WM_ADMIN_PASSWORD", PW.into()),
        ],
    )
    .await;
    app.stop().await;
}

/// Test 2 (web/e2e/recordings.mjs): a lesson recorded from ffmpeg, found, played and made
/// public in the studio's library; ops see the usage grow by its size, delete it in the
/// console, and the usage drops.
#[tokio::test]
async fn a_recording_from_the_studio_library_to_the_ops_console() {
    require_dist();
    let app = spawn_app().await;
    let teacher_email = unique_email("teacher-rec");
    let ops_email = unique_email("ops-rec");
    let (_, teacher) = app
        .user_with(&teacher_email, PW, &[wemaster::users::Role::Teacher])
        .await;
    app.user_with(&ops_email, PW, &[wemaster::users::Role::Ops])
        .await;
    let (course_id, lesson) = course_with_lesson(&app, &teacher).await;
    let rtmp_url = format!(
        "rtmp://{}/live/{}",
        app.rtmp_addr,
        lesson["stream_key"].as_str().unwrap()
    );
    run_script(
        "recordings.mjs",
        &app,
        &[
            ("WM_TEACHER_EMAIL", teacher_email),
            ("WM_TEACHER_PASSWORD", PW.into()),
            ("WM_OPS_EMAIL", ops_email),
            ("WM_OPS_PASSWORD", PW.into()),
            ("WM_COURSE_ID", course_id),
            ("WM_LESSON_ID", lesson["id"].as_str().unwrap().to_string()),
            ("WM_RTMP_URL", rtmp_url),
        ],
    )
    .await;
    app.stop().await;
}

/// ffmpeg publishing `seconds` of one solid colour (and a tone), 1 s GOP, in real time.
fn ffmpeg_colour(url: &str, colour: &str, seconds: u32) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "color=c={colour}:size=640x360:rate=30:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=44100:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is installed (scripts/test installs it)")
}

/// web/e2e/restart.mjs in the browser profile `profile`: hls.js plays the stream's plain and LL
/// playlists and must show `colour`.
async fn watch_colour(app: &TestApp, profile: &std::path::Path, id: &str, colour: &str) {
    let urls = json!([
        format!("{}/hls/live/{id}/index.m3u8", app.base),
        format!("{}/hls/live/{id}/ll.m3u8", app.base)
    ]);
    let env = [
        ("WM_PROFILE", profile.display().to_string()),
        ("WM_URLS", urls.to_string()),
        ("WM_EXPECT", colour.to_string()),
    ];
    run_script("restart.mjs", app, &env).await;
}

/// Issue #16's first finding, in a real browser: one Chromium profile watches a stream, the
/// server restarts (segment numbering starts again), the stream's next session publishes
/// another picture, and hls.js in the same profile — plain and LL playlists — shows the new
/// session's picture, never the cached one of the previous session.
#[tokio::test]
async fn one_browser_profile_sees_the_new_session_after_a_server_restart() {
    require_dist();
    let spool = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let dir = spool.path().to_path_buf();
    let first = spawn_app_with(move |s| s.media.spool_dir = dir).await;
    let live = crate::live_rtmp::Live::on(first, 0, "public").await;
    let key = live.stream["stream_key"].as_str().unwrap().to_string();
    let id = live.id().to_string();
    let (db, listen) = (live.app.database_url.clone(), live.app.addr);
    let mut red = ffmpeg_colour(&live.rtmp_url(), "red", 40);
    live.wait_playlist(Duration::from_secs(20), "three segments", |p| {
        p.matches("#EXTINF").count() >= 3
    })
    .await;
    watch_colour(&live.app, profile.path(), &id, "red").await;
    let _ = red.kill().await;
    live.app.stop().await;

    // The same stream, database, spool and port on a restarted server.
    let dir = spool.path().to_path_buf();
    let second = spawn_app_with(move |s| {
        s.media.spool_dir = dir;
        s.database.url = wemaster::config::Secret::new(db);
        s.http.listen = listen;
        s.http.public_url = Some(format!("http://{listen}").parse().unwrap());
    })
    .await;
    assert_eq!(
        second.addr, listen,
        "the restarted server has the same origin"
    );
    let url = format!("rtmp://{}/live/{key}", second.rtmp_addr);
    let mut blue = ffmpeg_colour(&url, "blue", 40);
    let path = format!("/hls/live/{id}/index.m3u8");
    for _ in 0..100 {
        if let Ok(p) = crate::playlists::fetch(&second.client, &second.url(&path)).await
            && p.matches("#EXTINF").count() >= 3
            && !p.contains("#EXT-X-ENDLIST")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch_colour(&second, profile.path(), &id, "blue").await;
    let _ = blue.kill().await;
    second.stop().await;
}

/// The first admin on the web app's `/setup` page (web/e2e/setup.mjs), with a token from the
/// function that issues the one the server prints at start (tests/api/cli.rs follows the
/// printed link itself): the form makes the admin, who lands in the console; then the page
/// says the server is set up.
#[tokio::test]
async fn the_first_admin_is_made_on_the_setup_page() {
    require_dist();
    let app = spawn_app().await;
    let redis = wemaster::cache::Redis::connect(&app.settings.redis)
        .await
        .unwrap();
    let key = wemaster::identity::setup::token_key(&app.settings.auth.limits);
    let token = wemaster::identity::setup::issue(&redis, &key)
        .await
        .unwrap();
    let email = unique_email("first-admin");
    run_script(
        "setup.mjs",
        &app,
        &[("WM_SETUP_TOKEN", token), ("WM_ADMIN_EMAIL", email.clone())],
    )
    .await;
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let (roles,): (Vec<String>,) = sqlx::query_as("SELECT roles FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(roles, ["admin"]);
}
