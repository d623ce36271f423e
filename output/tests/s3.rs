//! The S3 object store against a real, signature-checking S3 server (s3s-fs, started by
//! `scripts/s3-server.sh`, which installs it when missing).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use tapline_output::ids::digest_hex;
use tapline_output::metrics::ComponentMetrics;
use tapline_output::object::{ObjectStore, StoredObject};
use tapline_output::s3::batch::decode_member;
use tapline_output::s3::{S3Client, S3Config, S3ObjectStore, S3Transport, UrlTarget, decode_upload, fetch_by_record};

const AK: &str = "tapline-test-ak";
const SK: &str = "tapline-test-secret";

/// A running s3s-fs; killed on drop.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    pid: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-server.sh");
        for _ in 0..3 {
            let port = free_port();
            let out = Command::new("bash")
                .arg(&script)
                .arg(dir.path().join("data"))
                .arg(port.to_string())
                .args([AK, SK])
                .output()
                .expect("running scripts/s3-server.sh");
            if out.status.success() {
                let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
                return Server { dir, port, pid };
            }
            eprintln!("s3-server.sh failed (retrying): {}", String::from_utf8_lossy(&out.stderr));
        }
        panic!("cannot start s3s-fs");
    }

    fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.dir.path().join("data").join(name)).unwrap();
        name.to_string()
    }

    fn config(&self, bucket: &str) -> S3Config {
        let mut c = S3Config::new(bucket);
        c.endpoint = format!("127.0.0.1:{}", self.port);
        c.insecure = true;
        c.access_key = Some(AK.into());
        c.secret_key = Some(SK.into());
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// Random-ish 1 KiB JSON objects (xorshift, deterministic per seed).
fn objects(n: usize, seed: u64) -> Vec<StoredObject> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let mut s = format!("{{\"i\":{i},\"seed\":{seed},\"data\":\"");
            while s.len() < 1022 {
                s.push(char::from(b"abcdefghijklmnopqrstuvwxyz0123456789 "[(next() % 37) as usize]));
            }
            s.push_str("\"}");
            let bytes = s.into_bytes();
            StoredObject { digest: digest_hex(&bytes), content_type: "application/json", bytes }
        })
        .collect()
}

type Items = Arc<Mutex<Vec<Vec<u8>>>>;

fn store(cfg: S3Config, index_dir: &Path) -> (S3ObjectStore, Items) {
    let items: Items = Arc::default();
    let sink = items.clone();
    let s = S3ObjectStore::new(
        cfg,
        index_dir,
        ComponentMetrics::detached("object_store", "s3"),
        Box::new(move |item| sink.lock().unwrap().push(item)),
    )
    .unwrap();
    (s, items)
}

fn record(url: &str, digest: &str) -> String {
    serde_json::json!({"type": "artifact_record", "digest": digest, "url": url}).to_string()
}

#[test]
fn batches_end_to_end() {
    let srv = Server::start();
    let bucket = srv.bucket("captures");
    let mut cfg = srv.config(&bucket);
    cfg.key_prefix = "tap".into();
    cfg.max_batch_bytes = 64 << 10; // several batches
    let index = tempfile::tempdir().unwrap();
    let (store, items) = store(cfg.clone(), index.path());

    let objs = objects(500, 7);
    let mut urls = BTreeMap::new();
    for o in &objs {
        let loc = store.put(o.clone()).unwrap();
        assert!(loc.url.starts_with(&format!("http://127.0.0.1:{}/captures/tap/batches/", srv.port)), "{}", loc.url);
        assert!(loc.url.contains(".ndjson.gz#bytes="), "{}", loc.url);
        urls.insert(o.digest.clone(), loc.url);
    }
    // Objects of unsent batches are served from memory.
    assert_eq!(store.get(&objs[499].digest).unwrap().as_deref(), Some(&objs[499].bytes[..]));
    store.flush();
    assert_eq!(store.pending_objects(), 0);
    let items = std::mem::take(&mut *items.lock().unwrap());
    assert!(items.len() >= 4, "{} batches", items.len());

    let mut transport = S3Transport::new(&cfg).unwrap();
    transport.send(&items).unwrap();
    let client = transport.client();

    // The bucket holds exactly the batches; each is NDJSON once gunzipped (zcat | jq).
    let listed = client.list("").unwrap();
    let keys: BTreeSet<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    let sent: BTreeSet<String> = items.iter().map(|i| decode_upload(i).unwrap().0.to_string()).collect();
    assert_eq!(keys, sent);
    let digests: BTreeSet<&str> = objs.iter().map(|o| o.digest.as_str()).collect();
    let mut lines = 0;
    for key in &keys {
        assert!(key.starts_with("tap/batches/") && key.ends_with(".ndjson.gz"), "{key}");
        let body = client.get(key).unwrap();
        for line in BufReader::new(MultiGzDecoder::new(&body[..])).lines() {
            let line = line.unwrap();
            let _: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(digests.contains(digest_hex(line.as_bytes()).as_str()));
            lines += 1;
        }
    }
    assert_eq!(lines, 500);

    // Every object: a ranged GET of its member is a gzip of exactly its bytes + "\n";
    // get(digest) (index + ranged GET) and fetch_by_record return its exact bytes.
    for o in &objs {
        let url = &urls[&o.digest];
        let Some(UrlTarget::Member(m)) = cfg.parse_access_url(url) else { panic!("{url}") };
        let member = client.get_range(&m.key, m.offset..m.offset + m.length).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&member[..]), &mut plain).unwrap();
        assert_eq!(plain.len(), o.bytes.len() + 1);
        assert_eq!(&plain[..o.bytes.len()], &o.bytes[..]);
        assert_eq!(plain.last(), Some(&b'\n'));
        assert_eq!(decode_member(&member).unwrap(), o.bytes);
        assert_eq!(store.get(&o.digest).unwrap().as_deref(), Some(&o.bytes[..]));
    }
    for o in objs.iter().step_by(50) {
        let rec = record(&urls[&o.digest], &o.digest);
        assert_eq!(fetch_by_record(&rec, &cfg).unwrap(), o.bytes);
        assert_eq!(store.fetch_record(&rec).unwrap(), o.bytes);
    }

    // The index file: one `digest key offset length` line per object.
    let index_text = std::fs::read_to_string(store.index_path()).unwrap();
    assert_eq!(index_text.lines().count(), 500);
    let first: Vec<&str> = index_text.lines().next().unwrap().split('\t').collect();
    assert_eq!(first.len(), 4);
    assert!(digests.contains(first[0]) && keys.contains(first[1]));

    // get() from inside a tokio runtime (the agent's) works too.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(async { store.get(&objs[3].digest).unwrap() }).as_deref(), Some(&objs[3].bytes[..]));

    // A digest never stored.
    assert_eq!(store.get(&"0".repeat(40)).unwrap(), None);
    // A tampered record is caught by its digest.
    let rec = record(&urls[&objs[0].digest], &objs[1].digest);
    assert!(fetch_by_record(&rec, &cfg).unwrap_err().to_string().contains("do not hash"));
    store.shutdown(Duration::from_secs(1)).unwrap();
    assert!(store.put(objs[0].clone()).is_err());
}

#[test]
fn age_limit_hands_over_without_new_puts() {
    let srv = Server::start();
    let mut cfg = srv.config(&srv.bucket("bkt"));
    cfg.max_batch_age = Duration::from_millis(300);
    let index = tempfile::tempdir().unwrap();
    let (store, items) = store(cfg.clone(), index.path());
    let o = objects(1, 3).remove(0);
    let url = store.put(o.clone()).unwrap().url;
    let t0 = Instant::now();
    while items.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "the aged batch was never handed over");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t0.elapsed() >= Duration::from_millis(250));
    S3Transport::new(&cfg).unwrap().send(&items.lock().unwrap()).unwrap();
    assert_eq!(fetch_by_record(&record(&url, &o.digest), &cfg).unwrap(), o.bytes);
}

#[test]
fn per_object_mode() {
    let srv = Server::start();
    let mut cfg = srv.config(&srv.bucket("objects"));
    cfg.batch = false;
    let index = tempfile::tempdir().unwrap();
    let (store, items) = store(cfg.clone(), index.path());
    let objs = objects(20, 11);
    let mut urls = Vec::new();
    for o in &objs {
        let url = store.put(o.clone()).unwrap().url;
        assert_eq!(url, format!("http://127.0.0.1:{}/objects/{}", srv.port, o.digest));
        urls.push(url);
    }
    let items = std::mem::take(&mut *items.lock().unwrap());
    assert_eq!(items.len(), 20);
    let mut t = S3Transport::new(&cfg).unwrap();
    t.send(&items).unwrap();
    let keys: BTreeSet<String> = t.client().list("").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, objs.iter().map(|o| o.digest.clone()).collect());
    for (o, url) in objs.iter().zip(&urls) {
        assert_eq!(t.client().get(&o.digest).unwrap(), o.bytes, "stored as is, not gzipped");
        assert_eq!(store.get(&o.digest).unwrap().as_deref(), Some(&o.bytes[..]));
        assert_eq!(fetch_by_record(&record(url, &o.digest), &cfg).unwrap(), o.bytes);
    }
    assert_eq!(store.get(&"f".repeat(40)).unwrap(), None);
}

#[test]
fn multipart_upload_is_whole() {
    let srv = Server::start();
    let mut cfg = srv.config(&srv.bucket("big"));
    cfg.multipart_threshold = 1; // every upload is multipart
    cfg.part_size = 5 << 20; // S3's (and s3s-fs's) minimum
    let index = tempfile::tempdir().unwrap();

    // A batch through the store: one (last, small) part.
    let (store, items) = store(cfg.clone(), index.path());
    let objs = objects(300, 5);
    for o in &objs {
        store.put(o.clone()).unwrap();
    }
    store.flush();
    let items = std::mem::take(&mut *items.lock().unwrap());
    assert_eq!(items.len(), 1);
    let (key, body) = decode_upload(&items[0]).unwrap();
    let mut t = S3Transport::new(&cfg).unwrap();
    t.send(&items).unwrap();
    assert_eq!(t.client().get(key).unwrap(), body);
    for o in objs.iter().step_by(37) {
        assert_eq!(store.get(&o.digest).unwrap().as_deref(), Some(&o.bytes[..]));
    }

    // A 12 MiB body: parts of 5 + 5 + 2 MiB, reassembled exactly.
    let mut x = 0x9e3779b97f4a7c15u64;
    let big: Vec<u8> = (0..12 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    t.client().put("big.ndjson.gz", big.clone()).unwrap();
    assert_eq!(t.client().get("big.ndjson.gz").unwrap(), big);
    assert_eq!(
        t.client().get_range("big.ndjson.gz", (5 << 20) - 3..(5 << 20) + 3).unwrap(),
        big[(5 << 20) - 3..(5 << 20) + 3]
    );
}

fn send_one(cfg: &S3Config) -> tapline_output::s3::S3Error {
    let mut t = S3Transport::new(cfg).unwrap();
    let item = tapline_output::s3::encode_upload("k.ndjson.gz", b"x");
    t.send(&[item]).unwrap_err()
}

#[test]
fn wrong_secret_is_fatal_and_says_so() {
    let srv = Server::start();
    let mut cfg = srv.config(&srv.bucket("bkt"));
    cfg.secret_key = Some("wrong".into());
    let e = send_one(&cfg);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(e.is_fatal(), "{msg}");
    assert!(msg.contains("credentials were rejected"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{}", srv.port)) && msg.contains("`bkt`"), "{msg}");
    // A wrong access key id too.
    cfg.access_key = Some("nobody".into());
    let e = send_one(&cfg);
    assert!(e.is_fatal() && e.to_string().contains("credentials were rejected"), "{e}");
}

/// A server answering every request as AWS does when it was signed for the wrong region.
fn wrong_region_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            use std::io::{Read, Write};
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
                <Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message>\
                <Region>eu-west-1</Region><RequestId>TAPLINE1</RequestId></Error>";
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn wrong_region_says_which_one() {
    let mut cfg = S3Config::new("bkt");
    cfg.endpoint = format!("127.0.0.1:{}", wrong_region_server());
    cfg.insecure = true;
    cfg.region = "us-east-1".into();
    cfg.access_key = Some(AK.into());
    cfg.secret_key = Some(SK.into());
    let e = send_one(&cfg);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(e.is_fatal(), "{msg}");
    assert!(msg.contains("wrong region") && msg.contains("set `region: eu-west-1`"), "{msg}");
}

#[test]
fn missing_bucket_is_fatal_and_named() {
    let srv = Server::start();
    let cfg = srv.config("no-such-bucket");
    let e = send_one(&cfg);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(e.is_fatal(), "{msg}");
    assert!(msg.contains("`no-such-bucket` does not exist"), "{msg}");
}

#[test]
fn server_down_is_retry() {
    let mut cfg = S3Config::new("bkt");
    cfg.endpoint = format!("127.0.0.1:{}", free_port());
    cfg.insecure = true;
    cfg.access_key = Some(AK.into());
    cfg.secret_key = Some(SK.into());
    let t0 = Instant::now();
    let e = send_one(&cfg);
    eprintln!("{e}");
    assert!(!e.is_fatal(), "{e}");
    assert!(matches!(e, tapline_output::s3::S3Error::Unavailable(_)), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(15), "reported quickly: {:?}", t0.elapsed());
    // Fetching is an error too (not "not found").
    let c = S3Client::new(&cfg).unwrap();
    assert!(!c.get("x").unwrap_err().is_fatal());
}

/// What the docs promise a user: `curl -r OFFSET-END URL | zcat` is the object, and
/// `curl URL | zcat | jq` reads the batch (skipped when curl, zcat or jq is missing).
#[test]
fn curl_zcat_jq_on_record_urls() {
    let have = |tool: &str| {
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
    };
    if !["curl", "zcat", "jq"].iter().all(|t| have(t)) {
        eprintln!("skipped: curl, zcat or jq missing");
        return;
    }
    let srv = Server::start();
    let cfg = srv.config(&srv.bucket("curl"));
    let index = tempfile::tempdir().unwrap();
    let (store, items) = store(cfg.clone(), index.path());
    let objs = objects(5, 99);
    let urls: Vec<String> = objs.iter().map(|o| store.put(o.clone()).unwrap().url).collect();
    store.flush();
    S3Transport::new(&cfg).unwrap().send(&items.lock().unwrap()).unwrap();
    let curl =
        format!("curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user {AK}:{SK} -H x-amz-content-sha256:UNSIGNED-PAYLOAD");
    for (o, url) in objs.iter().zip(&urls) {
        let (base, range) = url.split_once("#bytes=").unwrap();
        let out = Command::new("sh").arg("-c").arg(format!("{curl} -r {range} '{base}' | zcat")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, [&o.bytes[..], b"\n"].concat());
    }
    let base = urls[0].split_once('#').unwrap().0;
    let out = Command::new("sh").arg("-c").arg(format!("{curl} '{base}' | zcat | jq -c .i")).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0\n1\n2\n3\n4\n");
}

/// The gzip level of batch members: 1 by default (the fastest), `gzip_level` otherwise; every
/// member decodes to its object whatever the level. Needs no server: the uploads are read
/// from the sink.
#[test]
fn gzip_level_of_members() {
    // Compressible objects (repeated JSON), so levels differ in size.
    let objs: Vec<StoredObject> = (0..200)
        .map(|i| {
            let bytes = format!("{{\"i\":{i},\"headers\":{}}}", "{\"content-type\":\"application/json\"},".repeat(40))
                .into_bytes();
            StoredObject { digest: digest_hex(&bytes), content_type: "application/json", bytes }
        })
        .collect();
    let batch_bytes = |level: Option<u32>| {
        let mut cfg = S3Config::new("levels");
        if let Some(l) = level {
            cfg.gzip_level = l;
        }
        let index = tempfile::tempdir().unwrap();
        let (store, items) = store(cfg, index.path());
        for o in &objs {
            let loc = store.put(o.clone()).unwrap();
            assert!(loc.url.contains("#bytes="), "{}", loc.url);
        }
        store.flush();
        let items = items.lock().unwrap().clone();
        let mut whole = Vec::new();
        for item in &items {
            whole.extend_from_slice(decode_upload(item).unwrap().1);
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut MultiGzDecoder::new(whole.as_slice()), &mut text).unwrap();
        let want: String = objs.iter().map(|o| format!("{}\n", String::from_utf8_lossy(&o.bytes))).collect();
        assert_eq!(text, want, "level {level:?}: every member decodes to its object");
        whole.len()
    };
    let (default, one, six, stored) =
        (batch_bytes(None), batch_bytes(Some(1)), batch_bytes(Some(6)), batch_bytes(Some(0)));
    assert_eq!(default, one, "the default level is 1");
    assert!(six < one && one < stored, "level 6 {six} < level 1 {one} < level 0 {stored}");
}
