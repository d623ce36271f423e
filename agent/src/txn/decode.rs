//! Content-Encoding decoding of captured HTTP message bodies: streaming, bounded by a cap,
//! and never losing the raw bytes (a body that cannot be decoded is stored as captured).
//!
//! [`decode_body`] removes the codings of a `Content-Encoding` header (`gzip`/`x-gzip`,
//! `deflate`, `br`, `zstd`, stacked in any order) by chaining [`std::io::Read`] decoders, and
//! reads at most `cap` decoded bytes out of the chain: a decompression bomb costs at most
//! `cap` bytes of output buffer plus the decoders' fixed windows (≤ 32 KiB for gzip and
//! deflate, ≤ 16 MiB for brotli, ≤ 8 MiB for zstd, as RFC 9659 allows).

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

/// Beyond the cap, output is still decoded (and discarded) to learn the full decoded length
/// until the total reaches this many times the cap; past that it is reported unknown.
const COUNT_FACTOR: u64 = 64;
/// At most this many stacked codings are decoded; a longer list is stored raw.
const MAX_LAYERS: usize = 4;
/// Buffer between two stacked decoders, and brotli's input buffer.
const LAYER_BUF: usize = 8 * 1024;
/// Largest zstd window accepted (8 MiB), as RFC 9659 allows for `Content-Encoding: zstd`.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Chunk size of the output loop.
const CHUNK: usize = 16 * 1024;

/// What happened to a body on its way to the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEncoding {
    /// Stored as it was on the wire: no Content-Encoding (or only `identity`), or an empty body.
    Identity,
    /// Decoded from these codings, in the order they were removed (`"gzip, br"` gives
    /// `["br", "gzip"]`); `x-gzip` is reported as `gzip`.
    Decoded(Vec<String>),
    /// Could not be decoded (unsupported coding, corrupt data): stored raw, with why.
    Raw {
        /// The Content-Encoding header value, trimmed.
        encoding: String,
        /// Why decoding failed, e.g. `unsupported content-coding "compress"`.
        reason: String,
    },
}

/// A body ready for storage: at most `cap` bytes, decoded when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBody {
    /// The stored bytes: decoded for [`BodyEncoding::Decoded`], as on the wire otherwise.
    pub bytes: Vec<u8>,
    /// How `bytes` relate to the wire bytes.
    pub encoding: BodyEncoding,
    /// `bytes` is only a prefix of the body: the cap was hit, the captured wire bytes were
    /// themselves incomplete, or the stream broke after the cap was filled.
    pub truncated: bool,
    /// The length `bytes` would have had without the cap, when known (unknown when the wire
    /// bytes were incomplete, or when counting would go beyond 64 × cap decoded bytes).
    pub decoded_len: Option<u64>,
}

/// Decodes `raw` (the message body after transfer framing, i.e. de-chunked) according to the
/// Content-Encoding header value `content_encoding`, keeping at most `cap` bytes.
///
/// The header is a comma-separated list of codings in the order they were applied, so they
/// are removed in reverse order; names are case-insensitive, `x-gzip` means `gzip`,
/// `identity` and empty items are ignored. `deflate` is zlib-wrapped per RFC 9110, but raw
/// deflate is accepted too (chosen by sniffing for a zlib header).
///
/// `raw_complete` is false when `raw` was already cut by the capture cap: a decoder running
/// out of input is then expected, and the decoded prefix is returned, marked truncated.
/// Any other failure (unsupported coding, more than 4 stacked codings, corrupt or — with
/// `raw_complete` — truncated data) stores the raw bytes (cut at `cap`) as
/// [`BodyEncoding::Raw`]; the body is never dropped. Once `cap` decoded bytes are kept, a
/// later error only ends the counting of `decoded_len`.
pub fn decode_body(raw: &[u8], content_encoding: Option<&str>, cap: usize, raw_complete: bool) -> DecodedBody {
    let header = content_encoding.unwrap_or("").trim();
    if raw.is_empty() {
        return DecodedBody::stored(raw, cap, raw_complete, BodyEncoding::Identity);
    }
    let codings = match parse_codings(header) {
        Ok(codings) if codings.is_empty() => {
            return DecodedBody::stored(raw, cap, raw_complete, BodyEncoding::Identity);
        }
        Ok(codings) => codings,
        Err(reason) => return DecodedBody::stored(raw, cap, raw_complete, raw_encoding(header, reason)),
    };
    let exhausted = Cell::new(false);
    let source = Source { rest: raw, exhausted: &exhausted };
    let (bytes, end) = match open_layers(source, &codings) {
        Ok(mut reader) => read_bounded(&mut reader, cap),
        Err(error) => (Vec::new(), End::Failed(error)),
    };
    match outcome(end, bytes.len(), raw_complete, exhausted.get()) {
        Ok((truncated, decoded_len)) => DecodedBody {
            bytes,
            encoding: BodyEncoding::Decoded(codings.iter().rev().map(|coding| coding.name().to_owned()).collect()),
            truncated,
            decoded_len,
        },
        Err(error) => DecodedBody::stored(raw, cap, raw_complete, raw_encoding(header, error.to_string())),
    }
}

/// `(truncated, decoded_len)` of a decoded body of which `kept` bytes were kept, or the error
/// that makes it stored raw. `exhausted`: a decoder asked for more than the raw bytes hold.
fn outcome(end: End, kept: usize, raw_complete: bool, exhausted: bool) -> io::Result<(bool, Option<u64>)> {
    let known = |len: u64| raw_complete.then_some(len);
    match end {
        End::Complete => Ok((!raw_complete, known(kept as u64))),
        End::Over(total) => Ok((true, total.and_then(known))),
        End::Failed(error) if !raw_complete && (exhausted || error.kind() == io::ErrorKind::UnexpectedEof) => {
            Ok((true, None))
        }
        End::Failed(error) => Err(error),
    }
}

impl DecodedBody {
    /// `raw` stored as captured (cut at `cap`), under `encoding`.
    fn stored(raw: &[u8], cap: usize, raw_complete: bool, encoding: BodyEncoding) -> Self {
        DecodedBody {
            bytes: raw[..raw.len().min(cap)].to_vec(),
            encoding,
            truncated: !raw_complete || raw.len() > cap,
            decoded_len: raw_complete.then_some(raw.len() as u64),
        }
    }
}

/// [`BodyEncoding::Raw`] for the header value `header`.
fn raw_encoding(header: &str, reason: String) -> BodyEncoding {
    BodyEncoding::Raw { encoding: header.to_owned(), reason }
}

/// A content-coding this module can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The coding named `token` (already trimmed and lowercased), if supported.
    fn parse(token: &str) -> Option<Self> {
        match token {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    /// The registered name of the coding.
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The codings of a Content-Encoding value, in the order applied, without `identity`;
/// or why the body cannot be decoded.
fn parse_codings(header: &str) -> Result<Vec<Coding>, String> {
    let mut codings = Vec::new();
    for token in header.split(',').map(|token| token.trim().to_ascii_lowercase()) {
        if token.is_empty() || token == "identity" {
            continue;
        }
        let coding = Coding::parse(&token).ok_or_else(|| format!("unsupported content-coding {token:?}"))?;
        codings.push(coding);
    }
    if codings.len() > MAX_LAYERS {
        return Err(format!("{} stacked content-codings (at most {MAX_LAYERS} are decoded)", codings.len()));
    }
    Ok(codings)
}

/// The raw body as the innermost reader; records when a decoder asked for more than it has.
struct Source<'a> {
    rest: &'a [u8],
    exhausted: &'a Cell<bool>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Source<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.exhausted.set(true);
        }
        Ok(self.rest)
    }

    fn consume(&mut self, amt: usize) {
        self.rest = self.rest.get(amt..).unwrap_or_default();
    }
}

/// Chains one decoder per coding over `source`, the last applied coding first.
fn open_layers<'a>(source: Source<'a>, codings: &[Coding]) -> io::Result<Box<dyn BufRead + 'a>> {
    let mut reader: Box<dyn BufRead + 'a> = Box::new(source);
    for &coding in codings.iter().rev() {
        let decoder = open_decoder(coding, reader).map_err(|error| label(coding, error))?;
        reader = Box::new(BufReader::with_capacity(LAYER_BUF, Labeled { coding, inner: decoder }));
    }
    Ok(reader)
}

/// A streaming decoder of `coding` reading `input`.
fn open_decoder<'a>(coding: Coding, input: Box<dyn BufRead + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match coding {
        Coding::Gzip => Box::new(MultiGzDecoder::new(input)),
        Coding::Deflate => open_deflate(input)?,
        Coding::Brotli => Box::new(brotli::Decompressor::new(input, LAYER_BUF)),
        Coding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(decoder)
        }
    })
}

/// HTTP `deflate`: zlib when the stream starts with a zlib header, else raw deflate (sent by
/// some servers). Reads the first two bytes of `input` to decide.
fn open_deflate<'a>(mut input: Box<dyn BufRead + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = Vec::with_capacity(2);
    input.by_ref().take(2).read_to_end(&mut head)?;
    let zlib = is_zlib_header(&head);
    let input = io::Cursor::new(head).chain(input);
    Ok(if zlib { Box::new(ZlibDecoder::new(input)) } else { Box::new(DeflateDecoder::new(input)) })
}

/// RFC 1950 header check: method 8 (deflate), window ≤ 32 KiB, check bits valid.
fn is_zlib_header(head: &[u8]) -> bool {
    match *head {
        [cmf, flg] => cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)).is_multiple_of(31),
        _ => false,
    }
}

/// A decoder error, with the coding whose decoder raised it.
#[derive(Debug)]
struct LayerError {
    coding: Coding,
    source: io::Error,
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.coding, self.source)
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Names `coding` in `error`, unless an inner layer already named its own coding.
fn label(coding: Coding, error: io::Error) -> io::Error {
    if error.get_ref().is_some_and(|inner| inner.is::<LayerError>()) {
        return error;
    }
    io::Error::new(error.kind(), LayerError { coding, source: error })
}

/// A decoder whose errors name its coding.
struct Labeled<'a> {
    coding: Coding,
    inner: Box<dyn Read + 'a>,
}

impl Read for Labeled<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|error| label(self.coding, error))
    }
}

/// How reading the decoded stream ended.
enum End {
    /// The stream ended within the cap.
    Complete,
    /// More output than the cap: the total decoded length, if counted to the end.
    Over(Option<u64>),
    /// The decoder failed before the cap was filled.
    Failed(io::Error),
}

/// Reads at most `cap` bytes of `reader`, then counts (and discards) what follows up to
/// `COUNT_FACTOR` × cap in total.
fn read_bounded(reader: &mut dyn Read, cap: usize) -> (Vec<u8>, End) {
    let mut bytes = Vec::new();
    match fill(reader, &mut bytes, cap) {
        Ok(true) => return (bytes, End::Complete),
        Ok(false) => {}
        Err(error) => return (bytes, End::Failed(error)),
    }
    let kept = bytes.len() as u64;
    let budget = (cap as u64).saturating_mul(COUNT_FACTOR).saturating_sub(kept);
    let end = match count_rest(reader, budget) {
        Some(0) => End::Complete,
        rest => End::Over(rest.map(|rest| kept + rest)),
    };
    (bytes, end)
}

/// Appends `reader`'s output to `out` until it holds `cap` bytes (`Ok(false)`) or the stream
/// ends (`Ok(true)`), growing `out` no further than `cap`.
fn fill(reader: &mut dyn Read, out: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    let mut chunk = [0u8; CHUNK];
    while out.len() < cap {
        let want = (cap - out.len()).min(CHUNK);
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if out.len() + n > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(out.len() + n).min(cap);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(false)
}

/// Counts the remaining output of `reader`: `Some(n)` when it ends within `budget` bytes,
/// `None` past that or when it breaks (the kept prefix stays valid).
fn count_rest(reader: &mut dyn Read, budget: u64) -> Option<u64> {
    let mut chunk = [0u8; CHUNK];
    let mut counted = 0u64;
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Some(counted),
            Ok(n) => counted += n as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
        if counted > budget {
            return None;
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
