//! TLS handshake metadata from the raw bytes of a connection (sans-I/O): SNI, ALPN and
//! offered versions from the ClientHello; the negotiated version and cipher from the
//! ServerHello. Works on the ciphertext every socket carries, whether or not a TLS library
//! probe sees the plaintext.

/// What the first handshake message of one direction said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello.
    Client(ClientHello),
    /// A ServerHello.
    Server(ServerHello),
}

/// ClientHello facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// server_name (SNI), when sent.
    pub sni: Option<String>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<String>,
    /// Versions offered (supported_versions, else the legacy version), e.g. 0x0304.
    pub versions: Vec<u16>,
}

/// ServerHello facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// The negotiated version (supported_versions for TLS 1.3, else the legacy field): 771 = 1.2, 772 = 1.3.
    pub version: u16,
    /// The chosen cipher suite.
    pub cipher: u16,
    /// The chosen ALPN protocol (TLS 1.2; in 1.3 it is encrypted).
    pub alpn: Option<String>,
}

/// The verdict on the first bytes of a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A complete hello.
    Done(Hello),
    /// Looks like TLS, more bytes needed (at most one record, 16 KiB + 5).
    NeedMore,
    /// Not a TLS handshake.
    NotTls,
}

/// Whether bytes start like a TLS handshake record (`0x16 0x03 0x00..=0x04`).
pub fn looks_like_tls(b: &[u8]) -> Option<bool> {
    match b {
        [] => None,
        [0x16] => None,
        [0x16, 0x03] => None,
        [0x16, 0x03, minor, ..] => Some(*minor <= 4),
        _ => Some(false),
    }
}

/// Whether bytes start like any TLS record: handshake, alert, change_cipher_spec or
/// application data (types 20–23) with version major 3, minor 0–4. Catches connections seen
/// after their handshake (the agent started later) as well as new ones. `None`: too short.
pub fn looks_like_tls_record(b: &[u8]) -> Option<bool> {
    let record_type = |t: &u8| (0x14..=0x17).contains(t);
    match b {
        [] => None,
        [t] | [t, 0x03] if record_type(t) => None,
        [t, 0x03, minor, ..] => Some(record_type(t) && *minor <= 4),
        _ => Some(false),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n.into())
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n.into())
    }
}

/// Parses the first handshake message at the start of a direction's bytes.
pub fn parse_hello(b: &[u8]) -> Parse {
    match looks_like_tls(b) {
        None => return Parse::NeedMore,
        Some(false) => return Parse::NotTls,
        Some(true) => {}
    }
    if b.len() < 5 {
        return Parse::NeedMore;
    }
    let rec_len = usize::from(u16::from_be_bytes([b[3], b[4]]));
    if rec_len == 0 || rec_len > 16384 + 2048 {
        return Parse::NotTls;
    }
    // The hello usually fits one record; gather fragments across records if not.
    let mut hs = Vec::new();
    let mut rest = b;
    loop {
        if rest.len() < 5 {
            return Parse::NeedMore;
        }
        if rest[0] != 0x16 {
            return Parse::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let Some(body) = rest.get(5..5 + len) else { return Parse::NeedMore };
        hs.extend_from_slice(body);
        rest = &rest[5 + len..];
        if hs.len() >= 4 {
            let need = 4 + ((usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]));
            if hs.len() >= need {
                break;
            }
            if need > 64 * 1024 {
                return Parse::NotTls;
            }
        }
    }
    let mut r = Reader(&hs);
    let (Some(kind), Some(len)) = (r.u8(), r.u24()) else { return Parse::NotTls };
    let Some(body) = r.take(len) else { return Parse::NeedMore };
    let parsed = match kind {
        1 => client_hello(body).map(Hello::Client),
        2 => server_hello(body).map(Hello::Server),
        _ => None,
    };
    parsed.map(Parse::Done).unwrap_or(Parse::NotTls)
}

fn alpn_list(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader(data);
    if let Some(list) = r.vec16() {
        let mut l = Reader(list);
        while let Some(p) = l.vec8() {
            out.push(String::from_utf8_lossy(p).into_owned());
        }
    }
    out
}

fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let legacy = r.u16()?;
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression
    let mut out = ClientHello::default();
    if let Some(exts) = r.vec16() {
        let mut e = Reader(exts);
        while let (Some(t), Some(data)) = (e.u16(), e.vec16()) {
            match t {
                0 => {
                    // server_name_list: type 0 = host_name
                    let mut s = Reader(data);
                    if let Some(list) = s.vec16() {
                        let mut l = Reader(list);
                        while let (Some(kind), Some(name)) = (l.u8(), l.vec16()) {
                            if kind == 0 {
                                out.sni = std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
                                break;
                            }
                        }
                    }
                }
                16 => out.alpn = alpn_list(data),
                43 => {
                    let mut v = Reader(data);
                    if let Some(list) = v.vec8() {
                        out.versions = list.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                    }
                }
                _ => {}
            }
        }
    }
    if out.versions.is_empty() {
        out.versions.push(legacy);
    }
    Some(out)
}

fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let legacy = r.u16()?;
    r.take(32)?;
    r.vec8()?;
    let cipher = r.u16()?;
    r.u8()?; // compression
    let mut out = ServerHello { version: legacy, cipher, alpn: None };
    if let Some(exts) = r.vec16() {
        let mut e = Reader(exts);
        while let (Some(t), Some(data)) = (e.u16(), e.vec16()) {
            match t {
                43 if data.len() == 2 => out.version = u16::from_be_bytes([data[0], data[1]]),
                16 => out.alpn = alpn_list(data).into_iter().next(),
                _ => {}
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
