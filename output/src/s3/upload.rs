//! The opaque delivery item of the S3 store: one upload (key + body).
//!
//! Layout: `b"TLS3"`, version byte `1`, key length (`u16`, big endian), the key (UTF-8), then
//! the body to the end. Items go through the delivery queue and its disk spool, so the format
//! is versioned.

const MAGIC: &[u8; 4] = b"TLS3";
const VERSION: u8 = 1;
const HEADER: usize = MAGIC.len() + 1 + 2;

/// Why an item is not an upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadDecodeError {
    /// Not produced by [`encode_upload`] (or of another version).
    #[error("not an S3 upload item (bad magic or version)")]
    BadHeader,
    /// Cut short.
    #[error("S3 upload item truncated")]
    Truncated,
    /// The key is not UTF-8.
    #[error("S3 upload item has a non-UTF-8 key")]
    BadKey,
}

/// Encodes an upload of `body` under `key` (keys longer than 65535 bytes are cut; S3 allows
/// 1024).
pub fn encode_upload(key: &str, body: &[u8]) -> Vec<u8> {
    let mut k = key.as_bytes();
    if k.len() > usize::from(u16::MAX) {
        k = &k[..usize::from(u16::MAX)];
    }
    let mut v = Vec::with_capacity(HEADER + k.len() + body.len());
    v.extend_from_slice(MAGIC);
    v.push(VERSION);
    v.extend_from_slice(&(k.len() as u16).to_be_bytes());
    v.extend_from_slice(k);
    v.extend_from_slice(body);
    v
}

/// The `(key, body)` of an item made by [`encode_upload`].
pub fn decode_upload(item: &[u8]) -> Result<(&str, &[u8]), UploadDecodeError> {
    if item.len() < HEADER {
        return Err(if item.starts_with(&MAGIC[..item.len().min(4)]) {
            UploadDecodeError::Truncated
        } else {
            UploadDecodeError::BadHeader
        });
    }
    if &item[..4] != MAGIC || item[4] != VERSION {
        return Err(UploadDecodeError::BadHeader);
    }
    let klen = usize::from(u16::from_be_bytes([item[5], item[6]]));
    let rest = &item[HEADER..];
    if rest.len() < klen {
        return Err(UploadDecodeError::Truncated);
    }
    let key = std::str::from_utf8(&rest[..klen]).map_err(|_| UploadDecodeError::BadKey)?;
    Ok((key, &rest[klen..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let item = encode_upload("batches/2026/01/01/00/1-x.ndjson.gz", b"\x1f\x8bbody");
        assert_eq!(decode_upload(&item), Ok(("batches/2026/01/01/00/1-x.ndjson.gz", &b"\x1f\x8bbody"[..])));
        assert_eq!(decode_upload(&encode_upload("k", b"")), Ok(("k", &b""[..])));
    }

    #[test]
    fn rejects_other_items() {
        assert_eq!(decode_upload(b"hello world"), Err(UploadDecodeError::BadHeader));
        assert_eq!(decode_upload(b"TLS"), Err(UploadDecodeError::Truncated));
        let item = encode_upload("key", b"");
        assert_eq!(decode_upload(&item[..item.len() - 1]), Err(UploadDecodeError::Truncated));
        let mut bad = encode_upload("k", b"");
        bad[7] = 0xff;
        assert_eq!(decode_upload(&bad), Err(UploadDecodeError::BadKey));
    }
}
