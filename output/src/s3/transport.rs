//! The delivery side: uploads the items the S3 store handed to its sink.

use tracing::warn;

use super::client::{S3Client, S3Error};
use super::config::S3Config;
use super::upload::decode_upload;

/// Uploads encoded items ([`super::encode_upload`]) to one bucket. Owns its client (and the
/// client's small tokio runtime); meant to live on the delivery thread.
pub struct S3Transport {
    client: S3Client,
    malformed: u64,
    bucket_checked: bool,
}

impl std::fmt::Debug for S3Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Transport").field("client", &self.client).field("malformed", &self.malformed).finish()
    }
}

impl S3Transport {
    /// A transport for `cfg`.
    pub fn new(cfg: &S3Config) -> Result<Self, S3Error> {
        Ok(Self { client: S3Client::new(cfg)?, malformed: 0, bucket_checked: false })
    }

    /// `s3`.
    pub fn name(&self) -> &str {
        "s3"
    }

    /// The client (tests, `tapline fetch`).
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// Items dropped because they were not uploads.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Uploads every item, in order; stops at the first failure (the caller sends them all
    /// again later: uploads are idempotent, same key same bytes). An item that is not an
    /// upload can never succeed: it is logged, counted and skipped.
    ///
    /// The first send (and every send until one succeeds) first checks the bucket and the
    /// credentials ([`S3Client::check_bucket`]), so that a missing bucket is reported even by
    /// servers that would create it on PUT.
    pub fn send(&mut self, items: &[Vec<u8>]) -> Result<(), S3Error> {
        if !self.bucket_checked {
            self.client.check_bucket()?;
            self.bucket_checked = true;
        }
        for item in items {
            match decode_upload(item) {
                Ok((key, body)) => self.client.put(key, body.to_vec())?,
                Err(e) => {
                    self.malformed += 1;
                    warn!(store = "s3", error = %e, bytes = item.len(), "dropping a malformed delivery item");
                }
            }
        }
        Ok(())
    }
}
