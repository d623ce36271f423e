//! Encoding throughput of the Forward codec, one core: JSON envelope → msgpack entry → gzip PackedForward.
//!
//! `cargo test --release -p tapline-output --test forward_bench -- --ignored --nocapture`

use std::time::Instant;

use tapline_output::forward::codec::{self, Compression, EventTime};

/// About 1 KiB connection-like envelopes with varying ids, addresses and counters (not trivially compressible).
fn records(n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let (a, b, c, d) = (next(), next(), next(), next());
            format!(
                "{{\"level\":\"qpoint\",\"ts\":{ts}.{ms:03},\"message\":\"event store submission\",\
                 \"type\":\"*eventstore.Connection\",\"event\":\"connection\",\"item\":{{\
                 \"connectionId\":\"{a:016x}\",\"endpointId\":\"api-{e}.example.com\",\
                 \"timestamp\":\"2025-10-23T16:47:{s:02}.{b:09}Z\",\"direction\":\"egress\",\
                 \"meta\":{{\"processId\":{pid},\"processExe\":\"/usr/bin/service-{e}\",\"container\":\"{c:016x}\",\
                 \"pod\":\"web-{d:08x}\",\"namespace\":\"prod\",\"labels\":{{\"app\":\"web\",\"tier\":\"frontend\",\
                 \"version\":\"v{v}\"}}}},\"source\":{{\"ip\":\"10.{o1}.{o2}.{o3}\",\"port\":{sp}}},\
                 \"destination\":{{\"ip\":\"172.16.{o2}.{o1}\",\"port\":443,\"hostname\":\"api-{e}.example.com\"}},\
                 \"protocol\":\"http2\",\"tls\":{{\"version\":\"1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\",\
                 \"sni\":\"api-{e}.example.com\",\"alpn\":\"h2\"}},\"bytesSent\":{bs},\"bytesReceived\":{br},\
                 \"requests\":{rq},\"durationMs\":{dur},\"closed\":true,\"error\":null,\
                 \"tags\":[\"ingress-nginx\",\"ha\",\"{tag:x}\"],\
                 \"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) client/{v}.{e}\",\"traceId\":\"{a:016x}{d:016x}\",\
                 \"requestPath\":\"/v1/orders/{c:x}/items\",\"status\":{st}}}}}\n",
                ts = 1_761_238_061 + i / 1000,
                ms = i % 1000,
                e = a % 97,
                s = b % 60,
                b = b % 1_000_000_000,
                pid = 1000 + c % 60000,
                v = d % 20,
                o1 = a % 250,
                o2 = b % 250,
                o3 = c % 250,
                sp = 1024 + d % 60000,
                bs = a % 1_000_000,
                br = b % 10_000_000,
                rq = c % 500,
                dur = d % 100_000,
                tag = next(),
                st = [200, 201, 204, 404, 500][(a % 5) as usize],
            )
            .into_bytes()
        })
        .collect()
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn encode_throughput() {
    let recs = records(200_000);
    let avg = recs.iter().map(Vec::len).sum::<usize>() / recs.len();
    let per_message = 4000; // ≈ 4 MiB of entries per message
    for compress in [Compression::Gzip, Compression::None] {
        let t0 = Instant::now();
        let mut wire = 0usize;
        let mut entry_bytes = 0usize;
        for group in recs.chunks(per_message) {
            let entries: Vec<Vec<u8>> =
                group.iter().map(|r| codec::encode_entry_at_record_time(r, EventTime::now()).unwrap()).collect();
            entry_bytes += entries.iter().map(Vec::len).sum::<usize>();
            wire += codec::packed_forward("tapline.connection", &entries, compress, &codec::new_chunk_id()).len();
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{compress:?}: {} records of {avg} B JSON: {:.0} entries/s, {:.1} MiB/s of JSON, msgpack {:.0}% of JSON, \
             wire {:.1}% of msgpack",
            recs.len(),
            recs.len() as f64 / dt,
            recs.iter().map(Vec::len).sum::<usize>() as f64 / dt / 1048576.0,
            100.0 * entry_bytes as f64 / recs.iter().map(Vec::len).sum::<usize>() as f64,
            100.0 * wire as f64 / entry_bytes as f64,
        );
    }
}
