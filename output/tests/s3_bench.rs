//! Throughput of gzip batching (ignored by default; run in release on one core):
//! `taskset -c 0 cargo test --release -p tapline-output --test s3_bench -- --ignored --nocapture`

use std::time::{Duration, Instant};

use tapline_output::ids::digest_hex;
use tapline_output::metrics::ComponentMetrics;
use tapline_output::object::{ObjectStore, StoredObject};
use tapline_output::s3::{BatchBuilder, S3Config, S3ObjectStore};

/// 1 KiB objects: `random` = random letters (compresses ~1.6x), else a transaction-like JSON.
fn objects(n: usize, random: bool) -> Vec<StoredObject> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|i| {
            let mut s = if random {
                format!("{{\"i\":{i},\"data\":\"")
            } else {
                format!(
                    "{{\"metadata\":{{\"process_id\":\"{}\",\"process_exe\":\"/usr/bin/curl\",\"bytes_sent\":{},\
                     \"bytes_received\":{},\"connection_id\":\"d0{i:018}\",\"endpoint_id\":\"api.example.com\"}},\
                     \"request\":{{\"method\":\"GET\",\"url\":\"https://api.example.com/v1/items/{i}\",\"path\":\
                     \"/v1/items/{i}\",\"authority\":\"api.example.com\",\"scheme\":\"https\",\"user_agent\":\
                     \"curl/8.5.0\"}},\"response\":{{\"status\":200,\"content_type\":\"application/json\"}},\
                     \"data\":\"",
                    1000 + i,
                    100 + i,
                    900 + i
                )
            };
            while s.len() < 1022 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize]));
            }
            s.push_str("\"}");
            let bytes = s.into_bytes();
            StoredObject { digest: digest_hex(&bytes), content_type: "application/json", bytes }
        })
        .collect()
}

#[test]
#[ignore]
fn batch_throughput() {
    let n = 200_000;
    for (random, level) in [(true, 6), (false, 6), (false, 1)] {
        let objs = objects(n, random);
        let mut b = BatchBuilder::new("p", 8 << 20, Duration::from_secs(10)).with_level(level);
        let t0 = Instant::now();
        let mut out = 0usize;
        for o in &objs {
            b.add(o, t0);
            while let Some(batch) = b.take_ready(t0) {
                out += batch.bytes.len();
            }
        }
        out += b.take_all().iter().map(|x| x.bytes.len()).sum::<usize>();
        let dt = t0.elapsed();
        println!(
            "BatchBuilder::add, level {level}, {} 1 KiB objects: {:.0} objects/s, {:.1} MB/s in, ratio {:.2}",
            if random { "random" } else { "transaction-like" },
            n as f64 / dt.as_secs_f64(),
            (n * 1024) as f64 / dt.as_secs_f64() / 1e6,
            (n * 1024) as f64 / out as f64
        );
    }

    // Through the ObjectStore (lock, URL, index file, sink).
    let objs = objects(n, false);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = S3Config::new("bench");
    cfg.endpoint = "127.0.0.1:9".into();
    let store = S3ObjectStore::new(cfg, dir.path(), ComponentMetrics::detached("object_store", "s3"), Box::new(|_| {}))
        .unwrap();
    let t0 = Instant::now();
    for o in objs {
        store.put(o).unwrap();
    }
    store.flush();
    let dt = t0.elapsed();
    println!("S3ObjectStore::put, transaction-like: {:.0} objects/s", n as f64 / dt.as_secs_f64());
}
