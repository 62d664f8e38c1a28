//! `wemaster admin backup` and `restore`: a whole server in one folder, restorable into an
//! empty database and storage.
//!
//! ```text
//! backup-dir/
//!   database.dump    pg_dump's custom format (one consistent snapshot: pg_dump reads in one
//!                    repeatable-read transaction while the server keeps running)
//!   objects/<key>    every object of the configured storage (recordings, covers, attachments)
//!   manifest.json    written last: format, release, schema version, and each object's key,
//!                    size and SHA-256 — a folder without it is an unfinished backup
//! ```
//!
//! Restore refuses a database that holds tables, runs `pg_restore` in one transaction, checks
//! each object's bytes against the manifest before putting it into the configured storage, then
//! migrates (a backup of an older release comes up to this one's schema). Objects written while
//! a backup runs may be in the folder without a row that names them, or the reverse for an
//! object deleted meanwhile; the storage scan (`/api/v1/ops/storage/scan`) finds both. For
//! point-in-time recovery on larger sites, PostgreSQL's own WAL archiving (docs/operations.md).
//!
//! The database password never reaches a command line: `pg_dump`/`pg_restore` get the URL
//! without it and the password in `PGPASSWORD`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{
    config::Settings,
    storage::{ObjectKey, PutOptions, Storage},
};

const FORMAT: u32 = 1;
const DUMP: &str = "database.dump";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub wemaster_version: String,
    /// The newest migration applied to the database backed up.
    pub schema_version: i64,
    pub objects: Vec<ObjectEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: Option<String>,
}

/// What a backup or restore did.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub dir: PathBuf,
    pub schema_version: i64,
    pub objects: usize,
    pub object_bytes: u64,
    pub database_bytes: u64,
}

pub async fn backup(settings: &Settings, dir: &Path) -> anyhow::Result<Summary> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty: back up into a new folder", dir.display());
    }
    std::fs::create_dir_all(dir.join("objects"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let pool = crate::db::connect(&settings.database).await?;
    let schema_version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .context("the database has no WeMaster schema")?;
    let dump = dir.join(DUMP);
    pg_tool(
        settings,
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            path_str(&dump)?,
        ],
    )
    .await?;
    let storage = Storage::from_settings(&settings.storage, &settings.http.default_public_url())
        .await
        .context("cannot open object storage")?;
    let mut objects = Vec::new();
    for meta in storage.list("").await.context("cannot list the objects")? {
        let path = dir.join("objects").join(meta.key.as_str());
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let got = storage
            .get(&meta.key, None)
            .await
            .with_context(|| format!("cannot read {}", meta.key))?;
        let mut file = tokio::fs::File::create(&path).await?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut body = got.body;
        while let Some(chunk) = body.try_next().await? {
            hash.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        objects.push(ObjectEntry {
            key: meta.key.as_str().to_string(),
            size,
            sha256: hex::encode(hash.finalize()),
            content_type: got.meta.content_type.or(meta.content_type),
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: time::OffsetDateTime::now_utc(),
        wemaster_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        objects,
    };
    // Last, and atomically: its presence says the backup is complete.
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    Ok(Summary {
        dir: dir.to_path_buf(),
        schema_version,
        objects: manifest.objects.len(),
        object_bytes: manifest.objects.iter().map(|o| o.size).sum(),
        database_bytes: std::fs::metadata(&dump)?.len(),
    })
}

pub async fn restore(settings: &Settings, dir: &Path) -> anyhow::Result<Summary> {
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).with_context(|| {
            format!("{} has no {MANIFEST}: not a complete backup", dir.display())
        })?)
        .context("the manifest cannot be read")?;
    if manifest.format != FORMAT {
        bail!(
            "backup format {} is not one this release reads ({FORMAT})",
            manifest.format
        );
    }
    // Every object's bytes first: a damaged backup is found before anything is written.
    for o in &manifest.objects {
        let path = object_path(dir, &o.key)?;
        let (size, sha) = file_digest(&path)
            .await
            .with_context(|| format!("object {} is missing from the backup", o.key))?;
        if size != o.size || sha != o.sha256 {
            bail!(
                "object {} does not match the manifest (damaged backup)",
                o.key
            );
        }
    }
    let pool = crate::db::connect(&settings.database).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&pool)
    .await?;
    if tables > 0 {
        bail!("the database holds {tables} table(s): restore into an empty database");
    }
    let dump = dir.join(DUMP);
    pg_tool(
        settings,
        "pg_restore",
        &[
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            path_str(&dump)?,
        ],
    )
    .await?;
    let storage = Storage::from_settings(&settings.storage, &settings.http.default_public_url())
        .await
        .context("cannot open object storage")?;
    for o in &manifest.objects {
        let key = ObjectKey::parse(o.key.clone())
            .with_context(|| format!("invalid key in the manifest: {}", o.key))?;
        let file = tokio::fs::File::open(object_path(dir, &o.key)?).await?;
        let opts = PutOptions {
            content_type: o.content_type.clone(),
            cache_control: None,
        };
        storage
            .put_stream(&key, Box::pin(file), &opts)
            .await
            .with_context(|| format!("cannot store {}", o.key))?;
    }
    crate::db::migrate(&settings.database, &pool).await?;
    Ok(Summary {
        dir: dir.to_path_buf(),
        schema_version: manifest.schema_version,
        objects: manifest.objects.len(),
        object_bytes: manifest.objects.iter().map(|o| o.size).sum(),
        database_bytes: std::fs::metadata(&dump)?.len(),
    })
}

/// Run `pg_dump`/`pg_restore` against PostgreSQL (`database.direct_url` when set: a dump is
/// one session, which a transaction pooler would not keep), the password in the environment.
async fn pg_tool(settings: &Settings, tool: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut url = url::Url::parse(settings.database.session_url().expose())
        .context("database.url is not a URL")?;
    let password = url.password().map(percent_decode);
    let _ = url.set_password(None);
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args).arg("--dbname").arg(url.as_str());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().await.map_err(|e| {
        anyhow::anyhow!("cannot run {tool}: {e} (apt-get install postgresql-client)")
    })?;
    if !out.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn object_path(dir: &Path, key: &str) -> anyhow::Result<PathBuf> {
    // Keys are validated object keys (no `..`, no leading `/`): parse before joining.
    let key = ObjectKey::parse(key.to_string())
        .with_context(|| format!("invalid key in the manifest: {key}"))?;
    Ok(dir.join("objects").join(key.as_str()))
}

async fn file_digest(path: &Path) -> anyhow::Result<(u64, String)> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hash.finalize())))
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// A URL's userinfo is percent-encoded; libpq wants the password itself.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_percent_decoded_for_libpq() {
        assert_eq!(super::percent_decode("p%40ss%2Fw%3Ard%"), "p@ss/w:rd%");
        assert_eq!(super::percent_decode("plain"), "plain");
    }
}
