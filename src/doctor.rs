//! `wemaster doctor`: everything a server needs from its machine, checked the way the server
//! would use it, one line each and the fix for each problem — GStreamer and the pipelines'
//! elements, the listeners' ports, PostgreSQL and Redis (reachable, versions, schema), the
//! clock, object storage (writable), the spool (writable, room for recordings) and the secret
//! files the configuration names. Exit status 1 when anything failed; warnings do not fail.

use std::{net::SocketAddr, path::Path, process::ExitCode, time::Duration};

use crate::config::Settings;

/// The oldest servers WeMaster is tested against (Debian 12's: PostgreSQL 15, Redis 7); older
/// ones get a warning, not a failure.
const POSTGRES_MIN: i64 = 130_000;
const REDIS_MIN: (u64, u64) = (6, 2);
/// Clock skew against PostgreSQL past which tokens and presigned URLs misbehave.
const MAX_SKEW: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn ok(&mut self, what: impl std::fmt::Display) {
        println!("ok   {what}");
    }

    fn warn(&mut self, what: impl std::fmt::Display, fix: impl std::fmt::Display) {
        self.warned += 1;
        println!("warn {what}\n     fix: {fix}");
    }

    fn fail(&mut self, what: impl std::fmt::Display, fix: impl std::fmt::Display) {
        self.failed += 1;
        println!("FAIL {what}\n     fix: {fix}");
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut r = Report::default();
    gstreamer(settings, &mut r)?;
    if serving(settings).await {
        // Run beside the server it checks: its ports are rightly taken.
        r.warn(
            format!(
                "a server answers /healthz on http.listen {}: its ports are not checked",
                settings.http.listen
            ),
            "stop it (or run doctor with other ports) to check that they can be bound",
        );
    } else {
        ports(settings, &mut r);
    }
    let pool = postgres(settings, &mut r).await;
    redis(settings, &mut r).await;
    if let Some(pool) = &pool {
        clock(pool, &mut r).await;
    }
    storage(settings, &mut r).await;
    spool(settings, &mut r);
    println!("\n{} problem(s), {} warning(s)", r.failed, r.warned);
    Ok(if r.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn gstreamer(settings: &Settings, r: &mut Report) -> anyhow::Result<()> {
    use wemaster_media::doctor::missing_elements;
    if let Err(e) = wemaster_media::init() {
        r.fail(
            format!("GStreamer does not initialise: {e}"),
            "apt-get install gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav",
        );
        return Ok(());
    }
    r.ok(wemaster_media::gstreamer_version());
    let set = crate::startup::pipeline_templates(&settings.media)?;
    for template in set.iter() {
        let elements = template.elements();
        let missing = missing_elements(elements.iter().map(String::as_str));
        if missing.is_empty() {
            r.ok(format!(
                "pipeline {} ({} elements)",
                template.name,
                elements.len()
            ));
        }
        for m in missing {
            let what = format!("pipeline {}: element {} missing", template.name, m.element);
            match m.package {
                Some(p) => r.fail(what, format!("apt-get install {p}")),
                None => r.fail(
                    what,
                    "no known Debian package: install the GStreamer plugin that has it",
                ),
            }
        }
    }
    Ok(())
}

/// Whether a server already answers `/healthz` on `http.listen` (doctor run on a live machine).
async fn serving(settings: &Settings) -> bool {
    let url = format!("http://{}/healthz", settings.http.local_addr());
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Each listener's address can be bound now (nothing else holds it).
fn ports(settings: &Settings, r: &mut Report) {
    let tcp = [
        ("http.listen", settings.http.listen),
        ("rtmp.listen", settings.rtmp.listen),
    ];
    for (key, addr) in tcp {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => r.ok(format!("{key} {addr} is free")),
            Err(e) => r.fail(
                format!("{key} {addr} cannot be bound: {e}"),
                port_fix(key, addr, &e),
            ),
        }
    }
    let udp = settings.whip.udp_listen;
    match std::net::UdpSocket::bind(udp) {
        Ok(_) => r.ok(format!("whip.udp_listen {udp} is free")),
        Err(e) => r.fail(
            format!("whip.udp_listen {udp} cannot be bound: {e}"),
            port_fix("whip.udp_listen", udp, &e),
        ),
    }
}

fn port_fix(key: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process holds it (a wemaster already running? `ss -lntup | grep :{}`), or set {key} to a free port",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: set {key} to a port above 1023"
        ),
        _ => format!("set {key} to an address of this machine"),
    }
}

async fn postgres(settings: &Settings, r: &mut Report) -> Option<sqlx::PgPool> {
    let pool = match tokio::time::timeout(
        TIMEOUT,
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(TIMEOUT)
            .connect(settings.database.url.expose()),
    )
    .await
    {
        Ok(Ok(pool)) => pool,
        Ok(Err(e)) => {
            r.fail(
                format!("PostgreSQL: cannot connect (database.url): {e}"),
                "start PostgreSQL, or set DATABASE_URL / database.url (scripts/run starts a private one and writes .data/wemaster.toml)",
            );
            return None;
        }
        Err(_) => {
            r.fail(
                "PostgreSQL: no answer within 5 s (database.url)",
                "check the host and port of database.url, and the firewall",
            );
            return None;
        }
    };
    match sqlx::query_scalar::<_, String>("SHOW server_version_num")
        .fetch_one(&pool)
        .await
        .map(|v| v.parse::<i64>().unwrap_or(0))
    {
        Ok(v) if v >= POSTGRES_MIN => r.ok(format!("PostgreSQL {}.{}", v / 10_000, v % 10_000)),
        Ok(v) => r.warn(
            format!(
                "PostgreSQL {}.{} is older than WeMaster is tested with (13+)",
                v / 10_000,
                v % 10_000
            ),
            "upgrade PostgreSQL (Debian 12 ships 15)",
        ),
        Err(e) => r.warn(
            format!("PostgreSQL: cannot read its version: {e}"),
            "check database.url's user",
        ),
    }
    match crate::db::check_schema(&pool).await {
        Ok(()) => r.ok("database schema is this release's"),
        Err(e) => {
            let text = format!("{e:#}");
            if text.contains("newer") {
                r.fail(format!("database schema: {text}"), "run the newer release");
            } else {
                r.warn(
                    format!("database schema: {text}"),
                    "`wemaster migrate` (serve migrates at start unless database.migrate_on_start = false)",
                );
            }
        }
    }
    Some(pool)
}

async fn redis(settings: &Settings, r: &mut Report) {
    let redis = match crate::cache::Redis::connect(&settings.redis).await {
        Ok(redis) => redis,
        Err(e) => {
            r.fail(
                format!("Redis: {e:#}"),
                "start Redis, or set REDIS_URL / redis.url (scripts/run starts a private one)",
            );
            return;
        }
    };
    let mut conn = redis.conn();
    let mut info = redis::cmd("INFO");
    info.arg("server");
    // A cluster answers for each master: node address → its INFO text.
    let infos: Option<Vec<String>> = tokio::time::timeout(TIMEOUT, async {
        if redis.is_cluster() {
            info.query_async::<std::collections::HashMap<String, String>>(&mut conn)
                .await
                .map(|m| m.into_values().collect())
        } else {
            info.query_async::<String>(&mut conn).await.map(|s| vec![s])
        }
    })
    .await
    .ok()
    .and_then(Result::ok);
    let nodes = infos.as_ref().map_or(0, Vec::len);
    // The oldest node decides.
    let version = infos.and_then(|infos| {
        infos
            .iter()
            .filter_map(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("redis_version:"))
                    .map(|v| v.trim().to_string())
            })
            .min_by_key(|v| {
                v.split('.')
                    .map(|p| p.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
    });
    let version = version.map(|v| {
        if redis.is_cluster() {
            format!("{v} (a cluster of {nodes} masters)")
        } else {
            v
        }
    });
    match version {
        Some(v) => {
            let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if (major, minor) >= REDIS_MIN {
                r.ok(format!("Redis {v}"));
            } else {
                r.warn(
                    format!("Redis {v} is older than WeMaster needs (6.2+: streams and GETDEL)"),
                    "upgrade Redis (Debian 12 ships 7.0)",
                );
            }
        }
        None => r.warn(
            "Redis: cannot read its version (INFO server)",
            "check redis.url's user and ACL",
        ),
    }
}

/// This machine's clock against PostgreSQL's: access tokens, playback tokens and presigned URLs
/// carry times that other machines check.
async fn clock(pool: &sqlx::PgPool, r: &mut Report) {
    let before = time::OffsetDateTime::now_utc();
    let Ok(db_now) = sqlx::query_scalar::<_, time::OffsetDateTime>("SELECT now()")
        .fetch_one(pool)
        .await
    else {
        return;
    };
    let after = time::OffsetDateTime::now_utc();
    let half: time::Duration = (after - before) / 2i32;
    let here = before + half;
    let diff: time::Duration = here - db_now;
    let skew = diff.abs();
    if here.year() < 2024 {
        r.fail(
            format!("the clock says {here}"),
            "set the time (timedatectl set-ntp true): tokens and certificates depend on it",
        );
    } else if skew > MAX_SKEW {
        r.warn(
            format!(
                "the clock is {:.1} s off PostgreSQL's",
                skew.as_seconds_f64()
            ),
            "run NTP on both machines (timedatectl set-ntp true)",
        );
    } else {
        r.ok(format!(
            "clock within {:.2} s of PostgreSQL's",
            skew.as_seconds_f64()
        ));
    }
}

async fn storage(settings: &Settings, r: &mut Report) {
    let public = settings.http.default_public_url();
    match crate::storage::Storage::from_settings(&settings.storage, &public).await {
        Ok(store) => match store.check().await {
            Ok(()) => r.ok(format!(
                "object storage ({}) is writable",
                store.backend_name()
            )),
            Err(e) => r.fail(
                format!("object storage ({}): {e}", store.backend_name()),
                storage_fix(settings),
            ),
        },
        Err(e) => r.fail(format!("object storage: {e}"), storage_fix(settings)),
    }
}

fn storage_fix(settings: &Settings) -> String {
    match settings.storage.backend {
        crate::config::StorageBackend::Local => format!(
            "make {} writable by this user, or set storage.local.root",
            settings.storage.local.root.display()
        ),
        crate::config::StorageBackend::S3 => {
            "check storage.s3 (endpoint, bucket, keys) and that the S3 service answers".into()
        }
    }
}

/// The spool: writable, and room for recordings beyond `recordings.min_free_bytes`.
fn spool(settings: &Settings, r: &mut Report) {
    let dir = &settings.media.spool_dir;
    if let Err(e) = writable(dir) {
        r.fail(
            format!("media.spool_dir {} is not writable: {e}", dir.display()),
            "create it and give it to the user wemaster runs as, or set media.spool_dir",
        );
        return;
    }
    let min = settings.recordings.min_free_bytes;
    match crate::recordings::recorder::free_bytes(dir) {
        Some(free) if free < min => r.fail(
            format!("media.spool_dir has {} MiB free, less than recordings.min_free_bytes ({} MiB): new recordings would be refused", free >> 20, min >> 20),
            "free space on that disk, or move media.spool_dir to a larger one",
        ),
        Some(free) if free < min.saturating_mul(4) => r.warn(
            format!("media.spool_dir has {} MiB free (recordings are refused under {} MiB)", free >> 20, min >> 20),
            "give the spool a larger disk: an hour of a 2.5 Mbit/s lesson is about 1.1 GiB",
        ),
        Some(free) => r.ok(format!("media.spool_dir is writable, {} GiB free", free >> 30)),
        None => r.warn("media.spool_dir: cannot read its free space", "check the filesystem"),
    }
}

fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}
