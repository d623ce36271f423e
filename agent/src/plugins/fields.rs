//! The fields rules see for one transaction (`http.req.*`, `http.res.*`, `src.*`, `dst.*`,
//! `tls.*`, `direction`, `protocol`), as the rule language's [`MapFields`].

use std::net::SocketAddr;

use crate::conn::Connection;
use crate::proto::http1::Header;
use crate::rules::MapFields;
use crate::txn::Transaction;
use tapline_output::model::Tags;

fn headers(f: &mut MapFields, prefix: &str, hs: &[Header]) {
    for h in hs {
        f.insert(&format!("{prefix}.headers.{}", h.name.to_ascii_lowercase()), h.value.clone());
    }
}

fn addr(f: &mut MapFields, prefix: &str, a: SocketAddr) {
    f.insert(&format!("{prefix}.ip"), a.ip());
    f.insert(&format!("{prefix}.port"), i64::from(a.port()));
}

/// The fields of `txn` on `conn`, whose URL scheme is `scheme` and whose connection tags are `tags`.
pub fn transaction_fields(txn: &Transaction, conn: &Connection, scheme: &str, tags: &Tags) -> MapFields {
    let mut f = MapFields::new();
    let req = &txn.request;
    let host = req
        .headers
        .iter()
        .find(|h| h.name == ":authority" || h.name.eq_ignore_ascii_case("host"))
        .map(|h| crate::conn::host_without_port(&h.value).to_string())
        .unwrap_or_default();
    let path = req.target.split(['?', '#']).next().unwrap_or("").to_string();
    f.insert("http.req.method", req.method.clone());
    f.insert("http.req.path", path);
    f.insert("http.req.scheme", scheme.to_string());
    f.insert("http.req.url", format!("{scheme}://{host}{}", req.target));
    f.insert("http.req.host", host);
    headers(&mut f, "http.req", &req.headers);
    if let Some(res) = &txn.response {
        f.insert("http.res.status", i64::from(res.status));
        headers(&mut f, "http.res", &res.headers);
    }
    f.insert("direction", conn.direction().as_str().to_string());
    f.insert("protocol", txn.protocol.as_str().to_string());
    let (src, dst) = if conn.is_server_side() { (conn.remote, conn.local) } else { (conn.local, conn.remote) };
    addr(&mut f, "src", src);
    addr(&mut f, "dst", dst);
    f.insert("dst.domain", conn.endpoint_id());
    let p = &conn.process;
    if let Some(exe) = &p.exe {
        f.insert("src.process.path", exe.clone());
        f.insert("src.process.binary", exe.rsplit('/').next().unwrap_or(exe).to_string());
    }
    if let Some(uid) = p.uid {
        f.insert("src.process.user.id", i64::from(uid));
    }
    if let Some(u) = &p.user_name {
        f.insert("src.process.user.name", u.clone());
    }
    for (k, v) in &p.env {
        f.insert(&format!("src.process.env.{k}"), v.clone());
    }
    f.insert("tags", tags.pairs());
    if let Some(c) = &p.container_id {
        f.insert("src.container.id", c.clone());
    }
    if let Some(m) = p.container.as_deref() {
        let pairs = [
            ("src.container.name", &m.name),
            ("src.container.image", &m.image),
            ("src.pod.name", &m.pod_name),
            ("src.pod.namespace", &m.pod_namespace),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                f.insert(k, v.clone());
            }
        }
    }
    f.insert("tls.enabled", conn.is_tls());
    if let Some(t) = conn.l7.tls() {
        if let Some(v) = t.version() {
            f.insert(
                "tls.version",
                if v == 772 {
                    1.3
                } else if v == 771 {
                    1.2
                } else {
                    f64::from(v)
                },
            );
        }
        if let Some(sni) = t.sni() {
            f.insert("tls.sni", sni.to_string());
        }
        if let Some(c) = &t.client {
            f.insert("tls.alpn", c.alpn.clone());
        }
    }
    f
}
