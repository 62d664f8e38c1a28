//! The storage contract, checked against both backends.
//!
//! Every behaviour is one `async fn(&Storage)`; [`storage_contract!`] turns it into a test per
//! backend (`storage::local::<name>`, `storage::s3::<name>`). Local tests get a fresh temp dir;
//! S3 tests get a fresh bucket on the S3-compatible server named by `WEMASTER_TEST_S3_*`
//! (`scripts/test` starts one). Without those variables the S3 tests fail: a skipped backend
//! must not look like a passing one.

use std::{io, time::Duration};

use bytes::Bytes;
use futures::stream;
use sha2::{Digest, Sha256};
use tokio_util::io::StreamReader;
use url::Url;
use wemaster::{
    config::{LocalStorageSettings, S3Settings, Secret},
    storage::{
        BodyReader, ByteRange, InvalidKey, LocalStore, ObjectKey, PresignMethod, PutOptions,
        S3Store, Storage, StorageError,
    },
};

/// A store plus whatever must live as long as it (the local root).
struct TestStorage {
    storage: Storage,
    _root: Option<tempfile::TempDir>,
}

async fn local_storage() -> TestStorage {
    let dir = tempfile::tempdir().expect("temp dir");
    // A file beside the root: no key or prefix may reach it.
    std::fs::write(dir.path().join("outside.txt"), b"not an object").expect("write outside file");
    let settings = LocalStorageSettings {
        root: dir.path().join("objects"),
        signing_key: Secret::new("test-signing-key"),
        signing_key_file: None,
    };
    let public_url = Url::parse("http://127.0.0.1:8080").expect("url");
    let store = LocalStore::new(&settings, &public_url)
        .await
        .expect("local store");
    TestStorage {
        storage: Storage::Local(store),
        _root: Some(dir),
    }
}

const S3_PART_SIZE: u64 = 5 * 1024 * 1024;

async fn s3_storage() -> TestStorage {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the S3 storage tests need an S3-compatible server. Run them with \
                 `scripts/test`, which starts one and sets WEMASTER_TEST_S3_ENDPOINT, \
                 WEMASTER_TEST_S3_ACCESS_KEY and WEMASTER_TEST_S3_SECRET_KEY"
            )
        })
    };
    let settings = S3Settings {
        endpoint: var("WEMASTER_TEST_S3_ENDPOINT"),
        bucket: format!("wm-test-{}", uuid::Uuid::new_v4().simple()),
        region: "us-east-1".into(),
        access_key_id: var("WEMASTER_TEST_S3_ACCESS_KEY"),
        secret_access_key: Secret::new(var("WEMASTER_TEST_S3_SECRET_KEY")),
        secret_access_key_file: None,
        force_path_style: true,
        multipart_part_size_bytes: S3_PART_SIZE,
        multipart_concurrency: 3,
        request_timeout_s: 60,
        create_bucket: true,
    };
    let store = S3Store::new(&settings)
        .await
        .expect("S3 store with a fresh bucket");
    let storage = Storage::S3(store);
    storage.check().await.expect("the fresh bucket answers");
    TestStorage {
        storage,
        _root: None,
    }
}

/// `both`: run against each backend. `s3_only`: behaviours the local backend delegates to the
/// HTTP layer (its presigned URLs are served by our own server, tested there and in `local.rs`).
/// `s3_ignored`: S3 behaviour the test server (s3s-fs 0.14.1) gets wrong; they run on the local
/// backend, and on S3 with `cargo test -- --ignored` against a server that does them right.
macro_rules! storage_contract {
    (
        both: [$($both:ident),* $(,)?],
        s3_only: [$($s3:ident),* $(,)?],
        s3_ignored: [$($ign:ident => $why:literal),* $(,)?] $(,)?
    ) => {
        mod local {
            $(
                #[tokio::test]
                async fn $both() {
                    let t = super::local_storage().await;
                    super::$both(&t.storage).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $ign() {
                    let t = super::local_storage().await;
                    super::$ign(&t.storage).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    let t = super::s3_storage().await;
                    super::$both(&t.storage).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s3() {
                    let t = super::s3_storage().await;
                    super::$s3(&t.storage).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = $why]
                async fn $ign() {
                    let t = super::s3_storage().await;
                    super::$ign(&t.storage).await;
                }
            )*
        }
    };
}

storage_contract! {
    both: [
        put_bytes_then_get_round_trips_bytes_and_content_type,
        put_overwrites_an_existing_object,
        empty_stream_is_stored_as_an_empty_object,
        small_stream_is_stored_in_one_piece,
        stream_over_20_mib_reads_back_identical_and_goes_up_in_parts_on_s3,
        body_failing_midway_leaves_no_object,
        range_from_to_returns_exact_bytes_and_served_range,
        range_from_to_past_the_end_is_clamped,
        range_from_returns_the_tail,
        range_suffix_returns_the_last_bytes,
        unsatisfiable_ranges_are_invalid_range_with_the_size,
        ranges_of_an_empty_object_are_unsatisfiable,
        head_reports_size_content_type_etag_and_mtime,
        get_and_head_of_a_missing_key_are_not_found,
        list_by_prefix_is_sorted_and_excludes_other_prefixes,
        list_uses_plain_string_prefixes,
        delete_is_idempotent,
        delete_prefix_counts_and_leaves_other_prefixes,
        prefixes_that_no_valid_key_has_list_nothing,
        invalid_keys_are_refused,
    ],
    s3_only: [
        presigned_get_serves_the_bytes,
        presigned_put_stores_the_bytes,
    ],
    s3_ignored: [
        range_suffix_longer_than_the_object_serves_all_of_it =>
            "s3s-fs 0.14.1 answers 500 to bytes=-n when n > size (seeks before the file start)",
        suffix_range_of_an_empty_object_is_unsatisfiable =>
            "s3s-fs 0.14.1 answers 500 to bytes=-n when n > size (seeks before the file start)",
        a_prefix_of_other_keys_is_not_an_object =>
            "s3s-fs 0.14.1 answers 500 to HEAD/GET of a key that is a directory on its disk",
    ],
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap_or_else(|e| panic!("test key {s:?}: {e}"))
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, reproducible.
fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// A body that arrives in `chunk`-sized pieces, like a socket.
fn chunked_reader(data: Bytes, chunk: usize) -> BodyReader {
    let pieces: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Box::pin(StreamReader::new(stream::iter(pieces)))
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn put(storage: &Storage, k: &str, body: impl Into<Bytes>) {
    storage
        .put_bytes(&key(k), body.into(), &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {k}: {e}"));
}

async fn get_all(storage: &Storage, k: &str) -> Bytes {
    let object = storage
        .get(&key(k), None)
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e}"));
    object
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read {k}: {e}"))
}

/// The error of a call expected to fail (`GetObject` has no `Debug`, so no `unwrap_err`).
fn expect_err<T>(result: Result<T, StorageError>, what: &str) -> StorageError {
    match result {
        Ok(_) => panic!("{what}: expected an error, got success"),
        Err(e) => e,
    }
}

async fn listed_keys(storage: &Storage, prefix: &str) -> Vec<String> {
    storage
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"))
        .into_iter()
        .map(|m| m.key.into_string())
        .collect()
}

/// The part count of a multipart ETag (`"<md5>-<parts>"`), `None` for a single-piece one.
fn multipart_parts(etag: &str) -> Option<u32> {
    etag.trim_matches('"')
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Behaviours

async fn put_bytes_then_get_round_trips_bytes_and_content_type(storage: &Storage) {
    let k = key("course-1/live/index.m3u8");
    let body = Bytes::from_static(b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n");

    let put = storage
        .put_bytes(&k, body.clone(), &PutOptions::default())
        .await
        .expect("put");
    let got = storage.get(&k, None).await.expect("get");

    assert_eq!(put.key, k);
    assert_eq!(put.size, body.len() as u64);
    assert_eq!(got.meta.size, body.len() as u64);
    assert_eq!(
        got.meta.content_type.as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(got.range, None);
    assert_eq!(got.bytes().await.expect("body"), body);
}

async fn put_overwrites_an_existing_object(storage: &Storage) {
    put(storage, "r/notes.txt", "first version, longer").await;
    put(storage, "r/notes.txt", "second").await;

    assert_eq!(
        get_all(storage, "r/notes.txt").await,
        Bytes::from_static(b"second")
    );
    assert_eq!(
        storage.head(&key("r/notes.txt")).await.expect("head").size,
        6
    );
    assert_eq!(listed_keys(storage, "r/").await, ["r/notes.txt"]);
}

async fn empty_stream_is_stored_as_an_empty_object(storage: &Storage) {
    let k = key("empty/marker.txt");

    let put = storage
        .put_stream(&k, chunked_reader(Bytes::new(), 1), &PutOptions::default())
        .await
        .expect("put");

    assert_eq!(put.size, 0);
    assert_eq!(storage.head(&k).await.expect("head").size, 0);
    assert!(get_all(storage, "empty/marker.txt").await.is_empty());
}

async fn small_stream_is_stored_in_one_piece(storage: &Storage) {
    let k = key("rec/thumb.jpg");
    let data = pseudo_random(300_000, 7);

    let put = storage
        .put_stream(
            &k,
            chunked_reader(data.clone(), 4096),
            &PutOptions::default(),
        )
        .await
        .expect("put");
    let head = storage.head(&k).await.expect("head");

    assert_eq!(put.size, 300_000);
    assert_eq!(head.size, 300_000);
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    if let Storage::S3(_) = storage {
        let etag = head.etag.expect("S3 returns an ETag");
        assert_eq!(
            multipart_parts(&etag),
            None,
            "a body under one part is one PutObject, ETag {etag}"
        );
    }
    assert_eq!(
        sha256(&get_all(storage, "rec/thumb.jpg").await),
        sha256(&data)
    );
}

async fn stream_over_20_mib_reads_back_identical_and_goes_up_in_parts_on_s3(storage: &Storage) {
    const SIZE: usize = 21 * 1024 * 1024;
    let k = key("recordings/lesson-42/full.mp4");
    let data = pseudo_random(SIZE, 42);
    // An odd chunk size, so parts never line up with the chunks the body arrives in.
    let body = chunked_reader(data.clone(), 1024 * 1024 + 7);
    let opts = PutOptions {
        content_type: Some("video/mp4".into()),
        cache_control: None,
    };

    let put = storage
        .put_stream(&k, body, &opts)
        .await
        .expect("streamed put");
    let head = storage.head(&k).await.expect("head");
    let got = storage.get(&k, None).await.expect("get");
    let got_size = got.meta.size;
    let read_back = got.bytes().await.expect("body");

    assert_eq!(put.size, SIZE as u64);
    assert_eq!(head.size, SIZE as u64);
    assert_eq!(got_size, SIZE as u64);
    assert_eq!(read_back.len(), SIZE);
    assert_eq!(
        sha256(&read_back),
        sha256(&data),
        "bytes read back differ from those written"
    );
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    if let Storage::S3(_) = storage {
        // 21 MiB in 5 MiB parts: 4 full parts and a 1 MiB last one.
        let etag = head.etag.expect("S3 returns an ETag");
        assert_eq!(
            multipart_parts(&etag),
            Some(5),
            "expected a 5-part multipart ETag, got {etag}"
        );
        assert_eq!(put.etag.as_deref(), Some(etag.as_str()));
    }
}

async fn body_failing_midway_leaves_no_object(storage: &Storage) {
    // 12 MiB then an error: on S3 that is two parts uploaded, then an abort.
    let data = pseudo_random(12 * 1024 * 1024, 5);
    let mut pieces: Vec<io::Result<Bytes>> = (0..12)
        .map(|i| Ok(data.slice(i * 1024 * 1024..(i + 1) * 1024 * 1024)))
        .collect();
    pieces.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "publisher went away",
    )));
    let body: BodyReader = Box::pin(StreamReader::new(stream::iter(pieces)));
    let k = key("recordings/broken.mp4");

    let err = expect_err(
        storage.put_stream(&k, body, &PutOptions::default()).await,
        "put of a failing body",
    );

    assert!(
        matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    let head = expect_err(storage.head(&k).await, "head after failed put");
    assert!(matches!(head, StorageError::NotFound(_)), "{head:?}");
    assert!(listed_keys(storage, "").await.is_empty());
}

async fn ranged_object(storage: &Storage) -> Bytes {
    let data = pseudo_random(1000, 3);
    put(storage, "seg/0001.ts", data.clone()).await;
    data
}

async fn range_from_to_returns_exact_bytes_and_served_range(storage: &Storage) {
    let data = ranged_object(storage).await;

    let got = storage
        .get(&key("seg/0001.ts"), Some(ByteRange::FromTo(100, 199)))
        .await
        .expect("ranged get");

    assert_eq!(got.range, Some((100, 199)));
    assert_eq!(got.meta.size, 1000, "meta describes the whole object");
    assert_eq!(got.bytes().await.expect("body"), data.slice(100..200));
}

async fn range_from_to_past_the_end_is_clamped(storage: &Storage) {
    let data = ranged_object(storage).await;

    let got = storage
        .get(&key("seg/0001.ts"), Some(ByteRange::FromTo(990, 5000)))
        .await
        .expect("ranged get");

    assert_eq!(got.range, Some((990, 999)));
    assert_eq!(got.bytes().await.expect("body"), data.slice(990..));
}

async fn range_from_returns_the_tail(storage: &Storage) {
    let data = ranged_object(storage).await;

    let got = storage
        .get(&key("seg/0001.ts"), Some(ByteRange::From(900)))
        .await
        .expect("ranged get");

    assert_eq!(got.range, Some((900, 999)));
    assert_eq!(got.meta.size, 1000);
    assert_eq!(got.bytes().await.expect("body"), data.slice(900..));
}

async fn range_suffix_returns_the_last_bytes(storage: &Storage) {
    let data = ranged_object(storage).await;

    let got = storage
        .get(&key("seg/0001.ts"), Some(ByteRange::Suffix(10)))
        .await
        .expect("suffix get");

    assert_eq!(got.range, Some((990, 999)));
    assert_eq!(got.meta.size, 1000);
    assert_eq!(got.bytes().await.expect("body"), data.slice(990..));
}

async fn range_suffix_longer_than_the_object_serves_all_of_it(storage: &Storage) {
    let data = ranged_object(storage).await;

    let got = storage
        .get(&key("seg/0001.ts"), Some(ByteRange::Suffix(5000)))
        .await
        .expect("oversized suffix");

    assert_eq!(got.range, Some((0, 999)));
    assert_eq!(got.meta.size, 1000);
    assert_eq!(got.bytes().await.expect("body"), data);
}

async fn unsatisfiable_ranges_are_invalid_range_with_the_size(storage: &Storage) {
    ranged_object(storage).await;
    let k = key("seg/0001.ts");

    for range in [
        ByteRange::From(1000),
        ByteRange::FromTo(1000, 1200),
        ByteRange::FromTo(5, 4),
        ByteRange::Suffix(0),
    ] {
        let err = expect_err(storage.get(&k, Some(range)).await, &format!("{range:?}"));
        assert!(
            matches!(err, StorageError::InvalidRange { size: 1000 }),
            "{range:?}: {err:?}"
        );
    }
}

async fn ranges_of_an_empty_object_are_unsatisfiable(storage: &Storage) {
    put(storage, "empty.ts", Bytes::new()).await;
    let k = key("empty.ts");

    for range in [ByteRange::From(0), ByteRange::FromTo(0, 10)] {
        let err = expect_err(storage.get(&k, Some(range)).await, &format!("{range:?}"));
        assert!(
            matches!(err, StorageError::InvalidRange { size: 0 }),
            "{range:?}: {err:?}"
        );
    }
    assert!(
        get_all(storage, "empty.ts").await.is_empty(),
        "a plain get still works"
    );
}

async fn suffix_range_of_an_empty_object_is_unsatisfiable(storage: &Storage) {
    put(storage, "empty.ts", Bytes::new()).await;

    let err = expect_err(
        storage
            .get(&key("empty.ts"), Some(ByteRange::Suffix(5)))
            .await,
        "bytes=-5",
    );

    assert!(
        matches!(err, StorageError::InvalidRange { size: 0 }),
        "{err:?}"
    );
}

async fn head_reports_size_content_type_etag_and_mtime(storage: &Storage) {
    let before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    put(storage, "rec/a.mp4", pseudo_random(12_345, 1)).await;

    let head = storage.head(&key("rec/a.mp4")).await.expect("head");

    assert_eq!(head.key, key("rec/a.mp4"));
    assert_eq!(head.size, 12_345);
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    assert!(
        head.etag.as_deref().is_some_and(|e| !e.is_empty()),
        "etag {:?}",
        head.etag
    );
    let modified = head.last_modified.expect("last_modified");
    let after = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    assert!(
        before < modified && modified < after,
        "last_modified {modified}"
    );
}

async fn get_and_head_of_a_missing_key_are_not_found(storage: &Storage) {
    put(storage, "present/a.ts", "x").await;

    let missing = [
        key("absent.ts"),
        key("present/b.ts"),
        key("present/a.ts/child"),
    ];
    for k in &missing {
        let get = expect_err(storage.get(k, None).await, &format!("get {k}"));
        let ranged = expect_err(
            storage.get(k, Some(ByteRange::From(0))).await,
            &format!("ranged get {k}"),
        );
        let head = expect_err(storage.head(k).await, &format!("head {k}"));
        assert!(matches!(get, StorageError::NotFound(_)), "get {k}: {get:?}");
        assert!(
            matches!(ranged, StorageError::NotFound(_)),
            "ranged get {k}: {ranged:?}"
        );
        assert!(
            matches!(head, StorageError::NotFound(_)),
            "head {k}: {head:?}"
        );
    }
}

async fn a_prefix_of_other_keys_is_not_an_object(storage: &Storage) {
    put(storage, "course-1/live/seg-1.ts", "x").await;

    for k in [key("course-1"), key("course-1/live")] {
        let head = expect_err(storage.head(&k).await, &format!("head {k}"));
        let get = expect_err(storage.get(&k, None).await, &format!("get {k}"));
        assert!(
            matches!(head, StorageError::NotFound(_)),
            "head {k}: {head:?}"
        );
        assert!(matches!(get, StorageError::NotFound(_)), "get {k}: {get:?}");
    }
    // Deleting it is a no-op that leaves the objects under it alone.
    storage
        .delete(&key("course-1/live"))
        .await
        .expect("delete of a prefix");
    assert_eq!(listed_keys(storage, "").await, ["course-1/live/seg-1.ts"]);
}

async fn list_by_prefix_is_sorted_and_excludes_other_prefixes(storage: &Storage) {
    for (k, body) in [
        ("course-1/b.ts", "bb"),
        ("course-2/y.ts", "y"),
        ("course-1/sub/c.ts", "ccc"),
        ("course-1/a.ts", "a"),
        ("other.txt", "o"),
    ] {
        put(storage, k, body).await;
    }

    let listed = storage.list("course-1/").await.expect("list");

    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    let sizes: Vec<u64> = listed.iter().map(|m| m.size).collect();
    assert_eq!(
        keys,
        ["course-1/a.ts", "course-1/b.ts", "course-1/sub/c.ts"]
    );
    assert_eq!(sizes, [1, 2, 3]);
    assert!(
        listed.iter().all(|m| m.last_modified.is_some()),
        "{listed:?}"
    );
    assert_eq!(
        listed_keys(storage, "course-1/sub/").await,
        ["course-1/sub/c.ts"]
    );
    assert!(listed_keys(storage, "course-3/").await.is_empty());
    assert_eq!(
        listed_keys(storage, "").await,
        [
            "course-1/a.ts",
            "course-1/b.ts",
            "course-1/sub/c.ts",
            "course-2/y.ts",
            "other.txt"
        ]
    );
}

async fn list_uses_plain_string_prefixes(storage: &Storage) {
    for k in [
        "course-10/x.ts",
        "course-1/a.ts",
        "course-1.json",
        "course-2/b.ts",
        "course-1/sub/seg-1.ts",
        "course-1/sub/seg-2.ts",
    ] {
        put(storage, k, "x").await;
    }

    assert_eq!(
        listed_keys(storage, "course-1").await,
        [
            "course-1.json",
            "course-1/a.ts",
            "course-1/sub/seg-1.ts",
            "course-1/sub/seg-2.ts",
            "course-10/x.ts"
        ]
    );
    assert_eq!(
        listed_keys(storage, "course-1/sub/seg-").await,
        ["course-1/sub/seg-1.ts", "course-1/sub/seg-2.ts"]
    );
    assert_eq!(
        listed_keys(storage, "course-1/s").await,
        ["course-1/sub/seg-1.ts", "course-1/sub/seg-2.ts"]
    );
    assert_eq!(
        listed_keys(storage, "course-1/a.ts").await,
        ["course-1/a.ts"]
    );
    assert!(listed_keys(storage, "course-1/a.tsx").await.is_empty());
}

async fn delete_is_idempotent(storage: &Storage) {
    put(storage, "tmp/x.ts", "x").await;
    put(storage, "tmp/y.ts", "y").await;
    let k = key("tmp/x.ts");

    storage.delete(&k).await.expect("first delete");
    let head = expect_err(storage.head(&k).await, "head after delete");
    storage
        .delete(&k)
        .await
        .expect("second delete of the same key");
    storage
        .delete(&key("never/existed.ts"))
        .await
        .expect("delete of a key never written");

    assert!(matches!(head, StorageError::NotFound(_)), "{head:?}");
    assert_eq!(listed_keys(storage, "").await, ["tmp/y.ts"]);
}

async fn delete_prefix_counts_and_leaves_other_prefixes(storage: &Storage) {
    for k in [
        "session-1/a.ts",
        "session-1/b.ts",
        "session-1/hls/index.m3u8",
        "session-10/a.ts",
        "keep.txt",
    ] {
        put(storage, k, "x").await;
    }

    let deleted = storage
        .delete_prefix("session-1/")
        .await
        .expect("delete prefix");
    let again = storage
        .delete_prefix("session-1/")
        .await
        .expect("delete prefix again");

    assert_eq!(deleted, 3);
    assert_eq!(again, 0);
    assert_eq!(
        listed_keys(storage, "").await,
        ["keep.txt", "session-10/a.ts"]
    );
    let gone = expect_err(
        storage.head(&key("session-1/hls/index.m3u8")).await,
        "head deleted",
    );
    assert!(matches!(gone, StorageError::NotFound(_)), "{gone:?}");
    // The prefix can be written again (local: the removed directories come back).
    put(storage, "session-1/hls/index.m3u8", "#EXTM3U").await;
    assert_eq!(
        listed_keys(storage, "session-1/").await,
        ["session-1/hls/index.m3u8"]
    );
}

async fn prefixes_that_no_valid_key_has_list_nothing(storage: &Storage) {
    put(storage, "a/b.ts", "x").await;

    // The local backend has a file beside its root: none of these may reach it.
    for prefix in [
        "../",
        "..",
        "../outside.txt",
        "/",
        "/a",
        "a//",
        "a/../",
        "a\\",
        "./a",
    ] {
        assert!(
            listed_keys(storage, prefix).await.is_empty(),
            "prefix {prefix:?}"
        );
    }
    assert_eq!(
        storage
            .delete_prefix("../")
            .await
            .expect("delete_prefix ../"),
        0
    );
    assert_eq!(listed_keys(storage, "").await, ["a/b.ts"]);
}

async fn invalid_keys_are_refused(storage: &Storage) {
    let cases = [
        ("../x", InvalidKey::DotSegment),
        ("/abs", InvalidKey::Absolute),
        ("a//b", InvalidKey::EmptySegment),
        ("", InvalidKey::Empty),
        ("a\\b", InvalidKey::Backslash),
        ("a\0b", InvalidKey::ControlChar),
    ];
    for (raw, expected) in cases {
        assert_eq!(ObjectKey::parse(raw), Err(expected.clone()), "{raw:?}");
        // Refusing at the edge is what keeps them from any backend: becomes 400, not 503.
        let as_storage: StorageError = expected.into();
        assert!(
            matches!(as_storage, StorageError::InvalidKey(_)),
            "{as_storage:?}"
        );
    }
    // And nothing was written by trying.
    assert!(listed_keys(storage, "").await.is_empty());
}

async fn presigned_get_serves_the_bytes(storage: &Storage) {
    let data = pseudo_random(70_000, 9);
    put(storage, "share/clip.mp4", data.clone()).await;

    let url = storage
        .presign(
            PresignMethod::Get,
            &key("share/clip.mp4"),
            Duration::from_secs(300),
        )
        .await
        .expect("presign");
    let response = reqwest::get(url.clone()).await.expect("GET presigned URL");
    let status = response.status();
    let body = response.bytes().await.expect("body");
    let unsigned = reqwest::get(url.as_str().split('?').next().expect("base"))
        .await
        .expect("GET without signature");

    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(sha256(&body), sha256(&data));
    assert!(
        unsigned.status().is_client_error(),
        "the bare URL must need the signature: {}",
        unsigned.status()
    );
}

async fn presigned_put_stores_the_bytes(storage: &Storage) {
    let data = pseudo_random(50_000, 11);
    let k = key("uploads/incoming.mp4");

    let url = storage
        .presign(PresignMethod::Put, &k, Duration::from_secs(300))
        .await
        .expect("presign");
    let response = reqwest::Client::new()
        .put(url)
        .body(data.clone())
        .send()
        .await
        .expect("PUT presigned URL");
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();

    assert!(status.is_success(), "{status}: {answer}");
    assert_eq!(storage.head(&k).await.expect("head").size, 50_000);
    assert_eq!(
        sha256(&get_all(storage, "uploads/incoming.mp4").await),
        sha256(&data)
    );
}
