//! The HPACK decoding context of one direction (RFC 7541), on top of `loona-hpack`.
//!
//! Size bookkeeping: SETTINGS_HEADER_TABLE_SIZE sent by one side bounds the *other* side's
//! encoder, so it raises the limit of the decoder tapline keeps for the other side. The table
//! itself only changes through dynamic table size updates inside that side's header blocks
//! (RFC 7541 §4.2, §6.3), which `loona-hpack` applies. A passive observer cannot tell whether
//! the encoder had already seen a SETTINGS frame when it wrote a block (the two directions are
//! not ordered relative to each other), so the accepted maximum is the largest value ever
//! advertised (at least the protocol default 4096), capped by [`Limits::max_hpack_table`]
//! to bound memory. A size update above that is a decoding error.
//!
//! [`Limits::max_hpack_table`]: super::Limits::max_hpack_table

use super::Header;

/// Initial SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2).
const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block produced no headers.
#[derive(Debug)]
pub(super) enum DecodeError {
    /// Bad HPACK: this side's context is now unknown.
    Hpack(String),
    /// Decoded fine (the context is intact) but the list is larger than the limit.
    TooLarge,
}

/// One direction's decoder.
pub(super) struct HeaderDecoder {
    decoder: loona_hpack::Decoder<'static>,
    allowed: usize,
    cap: usize,
    /// Set once the context is unknown; never cleared.
    pub unknown: bool,
}

impl HeaderDecoder {
    /// A fresh context: empty dynamic table of the default size.
    pub fn new(cap: usize) -> HeaderDecoder {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        HeaderDecoder { decoder, allowed: DEFAULT_TABLE_SIZE, cap, unknown: false }
    }

    /// The peer advertised SETTINGS_HEADER_TABLE_SIZE = `size` to this side's encoder.
    pub fn allow(&mut self, size: u32) {
        let size = usize::try_from(size).unwrap_or(usize::MAX).min(self.cap);
        if size > self.allowed {
            self.allowed = size;
            // Only raises the bound for size updates; never resizes the table itself
            // (`set_max_table_size` would, and asserts against the bound).
            self.decoder.set_max_allowed_table_size(size);
        }
    }

    /// Marks the context unknown and frees the table.
    pub fn forget(&mut self) {
        self.unknown = true;
        self.decoder = loona_hpack::Decoder::new();
    }

    /// Decodes one complete header block. Names and values are lossy UTF-8; the list size is
    /// counted as in SETTINGS_MAX_HEADER_LIST_SIZE (name + value + 32 per field).
    pub fn decode(&mut self, block: &[u8], max_list: usize) -> Result<Vec<Header>, DecodeError> {
        let mut headers = Vec::new();
        let mut size = 0usize;
        let mut over = false;
        // The whole block is always decoded, even past the limit, so the table stays in sync.
        let res = self.decoder.decode_with_cb(block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > max_list {
                if !over {
                    over = true;
                    headers = Vec::new();
                }
                return;
            }
            headers.push(Header {
                name: String::from_utf8_lossy(&name).into_owned(),
                value: String::from_utf8_lossy(&value).into_owned(),
            });
        });
        match res {
            Err(e) => Err(DecodeError::Hpack(e.to_string())),
            Ok(()) if over => Err(DecodeError::TooLarge),
            Ok(()) => Ok(headers),
        }
    }
}
