//! Is this the start of an HTTP/1 message?

/// The verdict on the first bytes of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// A request line (`METHOD SP target SP HTTP/1.x`).
    Request,
    /// A status line (`HTTP/1.x`).
    Response,
    /// Not HTTP/1.
    NotHttp,
    /// Too few bytes to tell.
    NeedMore,
}

const VERSION: &[u8] = b"HTTP/1.";

/// Looks at the first bytes sent in one direction.
pub fn detect(b: &[u8]) -> Detection {
    if b.is_empty() {
        return Detection::NeedMore;
    }
    // Status line.
    let n = b.len().min(VERSION.len());
    if b[..n] == VERSION[..n] {
        return if n == VERSION.len() { Detection::Response } else { Detection::NeedMore };
    }
    // Request line: a method token of uppercase letters, then the target, then the version.
    let tok = b.iter().take_while(|c| c.is_ascii_uppercase() || **c == b'-' || **c == b'_').count();
    if tok == b.len() {
        return if tok <= 16 { Detection::NeedMore } else { Detection::NotHttp };
    }
    if !(3..=16).contains(&tok) || b[tok] != b' ' {
        return Detection::NotHttp;
    }
    let rest = &b[tok + 1..];
    let target = rest.iter().take_while(|&&c| c > b' ' && c != 0x7f).count();
    if target == rest.len() {
        return if rest.len() <= 8192 { Detection::NeedMore } else { Detection::NotHttp };
    }
    if target == 0 || rest[target] != b' ' {
        return Detection::NotHttp;
    }
    let ver = &rest[target + 1..];
    let n = ver.len().min(VERSION.len());
    if ver[..n] != VERSION[..n] {
        Detection::NotHttp
    } else if n < VERSION.len() {
        Detection::NeedMore
    } else {
        Detection::Request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detection::Request);
        assert_eq!(detect(b"M-SEARCH * HTTP/1.1\r\n"), Detection::Request);
        assert_eq!(detect(b"GE"), Detection::NeedMore);
        assert_eq!(detect(b"GET /abc"), Detection::NeedMore);
        assert_eq!(detect(b"GET /abc HT"), Detection::NeedMore);
        assert_eq!(detect(b"HTTP/1.1 200 OK\r\n"), Detection::Response);
        assert_eq!(detect(b"HTT"), Detection::NeedMore);
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n"), Detection::NotHttp);
        assert_eq!(detect(b"\x16\x03\x01\x00"), Detection::NotHttp);
        assert_eq!(detect(b"SSH-2.0-OpenSSH"), Detection::NotHttp);
        assert_eq!(detect(b"get / HTTP/1.1"), Detection::NotHttp);
        assert_eq!(detect(b"GET  / HTTP/1.1"), Detection::NotHttp);
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), Detection::NotHttp);
    }
}
