#!/usr/bin/env python3
"""Overhead of the agent on a real server, as ratios (this machine is shared and noisy).

nginx serves a 1 KiB response over HTTP/1.1 plaintext, HTTP/1.1 TLS and HTTP/2 TLS; wrk
(HTTP/1.1) and h2load (HTTP/2) load it with fixed connection counts. For each case and each
agent level (none, summary, full) runs are interleaved A B A B ... (PAIRS pairs): A without the
agent, B with it. Reported per case and level: median requests/s ratio B/A, p50 and p99 latency
difference, the agent's CPU (from /proc/<pid>/stat over the B runs, in cores) and peak RSS.

Usage (root): python3 scripts/bench/overhead.py [--pairs 5] [--seconds 5] [--bin target/release/tapline]
Prints a Markdown table (docs/benchmarks.md keeps the last one).
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

LEVELS = ["none", "summary", "full"]
TICKS = os.sysconf("SC_CLK_TCK")


def sh(*a, **kw):
    return subprocess.run(list(a), check=True, capture_output=True, text=True, **kw)


def nginx(workdir, port_plain, port_tls):
    body = os.path.join(workdir, "www")
    os.makedirs(body, exist_ok=True)
    with open(os.path.join(body, "1k"), "wb") as f:
        f.write(b"x" * 1024)
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
       "-keyout", f"{workdir}/key.pem", "-out", f"{workdir}/cert.pem")
    conf = f"""daemon off; master_process off; user root; pid {workdir}/nginx.pid; worker_rlimit_nofile 65536;
error_log {workdir}/error.log; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {workdir};
  server {{ listen 127.0.0.1:{port_plain}; root {body}; }}
  server {{ listen 127.0.0.1:{port_tls} ssl http2; root {body};
    ssl_certificate {workdir}/cert.pem; ssl_certificate_key {workdir}/key.pem; }} }}
"""
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    # nginx on CPU 1, the load generator on CPU 0, the agent wherever the scheduler puts it.
    p = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", path])
    time.sleep(1)
    if p.poll() is not None:
        raise SystemExit(f"nginx did not start: {open(os.path.join(workdir, 'error.log')).read()}")
    return p


def agent_config(workdir, level):
    path = os.path.join(workdir, f"agent-{level}.yaml")
    with open(path, "w") as f:
        f.write(f"""services:
  event_stores: [{{type: stdout}}]
  object_stores: [{{type: local, dir: {workdir}/objects}}]
stacks:
  s: {{plugins: [{{type: http_capture, config: {{level: {level}}}}}]}}
tap: {{direction: all, ignore_loopback: false, http: {{stack: s}}}}
""")
    return path


def start_agent(binary, workdir, level):
    out = open(os.path.join(workdir, f"events-{level}.ndjson"), "ab")
    p = subprocess.Popen([binary, "--config", agent_config(workdir, level), "--data-dir", workdir,
                          "--http-listen", "127.0.0.1:10199"], stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if urllib.request.urlopen("http://127.0.0.1:10199/readyz", timeout=1).status == 200:
                return p
        except Exception:
            time.sleep(0.1)
    raise SystemExit("the agent did not become ready")


def cpu_secs(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICKS


def hwm_kib(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM:"):
            return int(l.split()[1])
    return 0


def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n if u == "ms" else n * 1000


def wrk(url, seconds, conns):
    o = sh("taskset", "-c", "0", "wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s", "--latency", url).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", o).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", o).group(1))
    return rps, p50, p99


def h2load(url, seconds, conns, workdir, extra=("-m", "10")):
    log = os.path.join(workdir, "h2load.log")
    o = sh("taskset", "-c", "0", "h2load", "-c", str(conns), *extra, "-D", str(seconds), "--log-file", log, url).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", o).group(1))
    times = sorted(int(l.split("\t")[2]) / 1000 for l in open(log) if l.strip())
    os.remove(log)
    return rps, times[len(times) // 2], times[int(len(times) * 0.99)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--bin", default="target/release/tapline")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--only", help="run the cases whose name contains this")
    a = ap.parse_args()
    for tool in ("wrk", "h2load", "nginx", "taskset", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: bash scripts/install-deps.sh --bench")
    work = tempfile.mkdtemp(prefix="tapline-bench-")
    plain, tls = 18480, 18443
    ng = nginx(work, plain, tls)
    cases = [
        ("HTTP/1.1", lambda: wrk(f"http://127.0.0.1:{plain}/1k", a.seconds, a.conns)),
        ("HTTP/1.1 TLS", lambda: wrk(f"https://127.0.0.1:{tls}/1k", a.seconds, a.conns)),
        ("HTTP/2 TLS", lambda: h2load(f"https://127.0.0.1:{tls}/1k", a.seconds, a.conns, work)),
        # A fixed 10,000 req/s (10 connections x 1,000/s), below saturation: what the agent adds
        # to latency and how much CPU it takes at a realistic rate.
        ("HTTP/1.1 at 10k req/s", lambda: h2load(f"http://127.0.0.1:{plain}/1k", a.seconds, 10, work,
                                                ("--h1", "--rps", "1000"))),
    ]
    results = []
    if a.only:
        cases = [c for c in cases if a.only in c[0]]
    try:
        for name, load in cases:
            load()  # warm-up
            for level in LEVELS:
                base, with_agent, cpu, peak = [], [], [], 0
                for _ in range(a.pairs):
                    base.append(load())
                    ag = start_agent(a.bin, work, level)
                    c0, t0 = cpu_secs(ag.pid), time.time()
                    with_agent.append(load())
                    cpu.append((cpu_secs(ag.pid) - c0) / (time.time() - t0))
                    peak = max(peak, hwm_kib(ag.pid))
                    ag.send_signal(signal.SIGTERM)
                    ag.wait(timeout=30)
                    shutil.rmtree(os.path.join(work, "objects"), ignore_errors=True)
                ratio = statistics.median(b[0] / a_[0] for a_, b in zip(base, with_agent))
                r = {"case": name, "level": level, "rps_base": statistics.median(x[0] for x in base),
                     "rps_ratio": ratio,
                     "p50_add_ms": statistics.median(b[1] - a_[1] for a_, b in zip(base, with_agent)),
                     "p99_add_ms": statistics.median(b[2] - a_[2] for a_, b in zip(base, with_agent)),
                     "agent_cores": statistics.median(cpu), "peak_rss_mib": peak / 1024}
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        ng.terminate()
        ng.wait()
    print(f"| case | level | baseline req/s | ratio | p50 added | p99 added | agent CPU | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r['level']} | {r['rps_base']:.0f} | {r['rps_ratio']:.3f} | "
              f"{r['p50_add_ms'] * 1000:+.0f} µs | {r['p99_add_ms'] * 1000:+.0f} µs | {r['agent_cores']:.2f} cores | "
              f"{r['peak_rss_mib']:.0f} MiB |")
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
