//! Analysis of Go executables: where to attach uprobes to `crypto/tls.(*Conn).Write` and
//! `crypto/tls.(*Conn).Read`.
//!
//! Go programs do not use OpenSSL, so their TLS plaintext is only visible inside the Go
//! standard library. This module finds, in an x86_64 ELF Go executable:
//!
//! 1. the Go toolchain version, from the `.go.buildinfo` blob (both the Go ≥ 1.18 inline
//!    format and the older pointer format);
//! 2. the address range of the two functions, from the ELF `.symtab` or, when the binary was
//!    built with `-ldflags="-s -w"`, from Go's own function table `.gopclntab`
//!    (Go 1.16/1.17, 1.18/1.19 and 1.20+ layouts);
//! 3. the entry point and every `RET` instruction of each function. Return probes
//!    (uretprobes) are unsafe in Go because goroutine stacks move, so the eBPF side puts a
//!    plain uprobe on every `RET` instead.
//!
//! All addresses handed out are *file offsets*, which is what the kernel's uprobe API takes.
//!
//! The core, [`inspect`], is a pure function of the file's bytes; every offset read from the
//! file is bounds-checked, so garbage input yields an error or `None`, never a panic.
//!
//! Decisions worth knowing:
//! - a file that is not ELF at all (a script, a Mach-O) is [`GoBinaryError::NotElf`];
//! - an ELF that is not a Go program, or a Go program without `crypto/tls`, is `Ok(None)`;
//! - an ELF whose section headers were removed (e.g. by `sstrip`) is searched for the build
//!   info, but its function table cannot be found by name, so it is `Ok(None)` too.

use std::fmt;
use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use object::{Architecture, Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionFlags};

/// Symbol name of the function that encrypts and sends application data.
pub const WRITE_SYMBOL: &str = "crypto/tls.(*Conn).Write";
/// Symbol name of the function that receives and decrypts application data.
pub const READ_SYMBOL: &str = "crypto/tls.(*Conn).Read";

/// Magic at the start of the Go build info blob.
const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Size of the fixed build info header; the inline version string follows it.
const BUILDINFO_HEADER_LEN: usize = 32;
/// Build info flag: pointers are big-endian.
const BUILDINFO_FLAG_BIG_ENDIAN: u8 = 0x1;
/// Build info flag: the version string is inline (Go ≥ 1.18).
const BUILDINFO_FLAG_INLINE: u8 = 0x2;
/// Upper bound for a version string; anything longer is garbage.
const MAX_VERSION_LEN: u64 = 1024;

/// `.gopclntab` magic of Go 1.16 and 1.17.
const PCLNTAB_MAGIC_116: u32 = 0xffff_fffa;
/// `.gopclntab` magic of Go 1.18 and 1.19.
const PCLNTAB_MAGIC_118: u32 = 0xffff_fff0;
/// `.gopclntab` magic of Go 1.20 and later.
const PCLNTAB_MAGIC_120: u32 = 0xffff_fff1;

/// `SHF_ALLOC`: the section occupies memory at run time.
const SHF_ALLOC: u64 = 0x2;

/// Go toolchain version, e.g. `go1.19.8` → `GoVersion { major: 1, minor: 19, patch: 8 }`.
///
/// Pre-releases (`go1.22rc1`, `go1.21beta2`) have patch 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoVersion {
    /// Major version, always 1 so far.
    pub major: u32,
    /// Minor version: the release (19 in go1.19.8).
    pub minor: u32,
    /// Patch release (8 in go1.19.8); 0 for `go1.21` and for release candidates.
    pub patch: u32,
}

impl GoVersion {
    /// Parses a Go version string as stored in the build info: `go1.19.8`, `go1.21`,
    /// `go1.22rc1`, `go1.21.0 X:loopvar`, `devel go1.23-abc123 …`. Returns `None` when the
    /// string does not start with `go<major>`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("devel ").unwrap_or(text).trim_start();
        let rest = text.strip_prefix("go")?;
        let (major, rest) = leading_number(rest)?;
        let Some(rest) = rest.strip_prefix('.') else {
            return Some(Self { major, minor: 0, patch: 0 });
        };
        let (minor, rest) = leading_number(rest)?;
        let patch = match rest.strip_prefix('.') {
            Some(rest) => leading_number(rest)?.0,
            None => 0,
        };
        Some(Self { major, minor, patch })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Splits the leading decimal number off `text`.
fn leading_number(text: &str) -> Option<(u32, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = text.get(..digits)?.parse().ok()?;
    Some((number, text.get(digits..)?))
}

/// Where the function addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    /// The ELF symbol table (`.symtab`).
    Symtab,
    /// Go's function table (`.gopclntab`), used when the binary is stripped.
    Pclntab,
}

/// Where to put probes for one function, as file offsets (what the kernel's uprobe API
/// takes: `vaddr - section.sh_addr + section.sh_offset` of the section holding the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSites {
    /// File offset of the function's first instruction.
    pub entry: u64,
    /// File offsets of every `RET` instruction in the function, ascending; never empty.
    pub returns: Vec<u64>,
}

/// Everything needed to attach the Go TLS probes to one executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTlsTargets {
    /// Toolchain that built the executable (it decides the calling convention).
    pub version: GoVersion,
    /// Where the function addresses came from.
    pub symbols_from: SymbolSource,
    /// Probe sites of `crypto/tls.(*Conn).Write`.
    pub write: ProbeSites,
    /// Probe sites of `crypto/tls.(*Conn).Read`.
    pub read: ProbeSites,
}

/// Why an executable could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file is not an ELF file (a script, a Mach-O, garbage).
    #[error("not an ELF file")]
    NotElf,
    /// The file starts like an ELF file but its headers are inconsistent.
    #[error("malformed ELF file: {0}")]
    Elf(object::Error),
    /// The Go build info blob is truncated or inconsistent.
    #[error("malformed Go build info: {0}")]
    BuildInfo(&'static str),
    /// The Go build info holds a version string that is not `go1.x[.y]`.
    #[error("unrecognised Go version string {0:?}")]
    Version(String),
    /// `.gopclntab` has a magic number this module does not know (Go older than 1.16).
    #[error("unsupported .gopclntab magic {magic:#010x} (only Go 1.16 and later are supported)")]
    UnsupportedPclntab {
        /// The magic number found.
        magic: u32,
    },
    /// `.gopclntab` is truncated or inconsistent.
    #[error("malformed .gopclntab: {0}")]
    Pclntab(&'static str),
    /// The executable is for an architecture whose instructions cannot be decoded here.
    #[error("unsupported architecture {0} (only x86_64 is supported)")]
    UnsupportedArch(String),
    /// A function's code is not backed by bytes of the file.
    #[error("{function} at {vaddr:#x} (size {size}) is not inside any section or segment of the file")]
    Unmapped {
        /// Symbol name.
        function: &'static str,
        /// Virtual address of the function.
        vaddr: u64,
        /// Size of the function in bytes.
        size: u64,
    },
    /// A function has no `RET` instruction, so its returns cannot be probed.
    #[error("no RET instruction in {function} [{start:#x}, {end:#x})")]
    NoReturn {
        /// Symbol name.
        function: &'static str,
        /// Virtual address of the function.
        start: u64,
        /// Virtual address just past the function.
        end: u64,
    },
}

/// Whether the ELF file behind `data` may be a Go executable: it has Go's build-info or
/// function-table section, or no section headers (only reading it whole can tell then), or
/// it does not parse (then [`inspect`] reports why). Read through an
/// [`object::read::ReadCache`], this touches the headers only, so large executables that are
/// not Go (most of them) are never read whole.
pub fn may_be_go<'data, R: object::ReadRef<'data>>(data: R) -> bool {
    match object::File::parse(data) {
        Ok(f) => {
            f.section_by_name(".go.buildinfo").is_some()
                || f.section_by_name(".gopclntab").is_some()
                || f.sections().next().is_none()
        }
        Err(_) => true,
    }
}

/// Reads `path` and analyses it with [`inspect`].
pub fn inspect_file(path: &Path) -> Result<Option<GoTlsTargets>, GoBinaryError> {
    let data = std::fs::read(path).map_err(|error| GoBinaryError::Io { path: path.to_owned(), error })?;
    inspect(&data)
}

/// Analyses the bytes of an executable.
///
/// Returns `Ok(None)` when the file is an ELF file but not a Go executable, when it does not
/// contain both `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read`, or when it has no
/// section headers (its function table then cannot be located). Returns
/// [`GoBinaryError::NotElf`] for anything that is not ELF.
pub fn inspect(data: &[u8]) -> Result<Option<GoTlsTargets>, GoBinaryError> {
    if !data.starts_with(b"\x7fELF") {
        return Err(GoBinaryError::NotElf);
    }
    let file = object::File::parse(data).map_err(GoBinaryError::Elf)?;
    let image = Image::new(data, &file);
    let Some(version) = go_version(data, &file, &image)? else {
        return Ok(None);
    };
    let Some((symbols_from, [write, read])) = find_functions(&file)? else {
        return Ok(None);
    };
    if file.architecture() != Architecture::X86_64 {
        return Err(GoBinaryError::UnsupportedArch(format!("{:?}", file.architecture())));
    }
    Ok(Some(GoTlsTargets {
        version,
        symbols_from,
        write: probe_sites(&image, WRITE_SYMBOL, write)?,
        read: probe_sites(&image, READ_SYMBOL, read)?,
    }))
}

/// A piece of the file that is mapped at a virtual address.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    vaddr: u64,
    offset: u64,
    size: u64,
}

/// Translation from virtual addresses to file bytes, via the sections holding file data
/// or, when the section headers are gone, via the `PT_LOAD` program headers.
struct Image<'data> {
    data: &'data [u8],
    mappings: Vec<Mapping>,
}

impl<'data> Image<'data> {
    fn new(data: &'data [u8], file: &object::File<'data>) -> Self {
        let mut mappings: Vec<Mapping> = file
            .sections()
            .filter(|section| matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & SHF_ALLOC != 0))
            .filter_map(|section| {
                let (offset, size) = section.file_range()?;
                Some(Mapping { vaddr: section.address(), offset, size })
            })
            .collect();
        if mappings.is_empty() {
            mappings = file
                .segments()
                .map(|segment| {
                    let (offset, size) = segment.file_range();
                    Mapping { vaddr: segment.address(), offset, size }
                })
                .collect();
        }
        Self { data, mappings }
    }

    /// File offset of `[vaddr, vaddr + len)`, when one mapping holds all of it.
    fn file_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        let end = vaddr.checked_add(len)?;
        self.mappings.iter().find_map(|m| {
            let m_end = m.vaddr.checked_add(m.size)?;
            (vaddr >= m.vaddr && end <= m_end).then(|| m.offset.checked_add(vaddr - m.vaddr)).flatten()
        })
    }

    /// The file bytes at `[vaddr, vaddr + len)`.
    fn read(&self, vaddr: u64, len: u64) -> Option<&'data [u8]> {
        let start = usize::try_from(self.file_offset(vaddr, len)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }
}

/// The Go version from the build info, or `None` when there is no build info (not Go).
fn go_version(data: &[u8], file: &object::File<'_>, image: &Image<'_>) -> Result<Option<GoVersion>, GoBinaryError> {
    let Some(blob) = find_buildinfo(data, file)? else {
        return Ok(None);
    };
    let text = parse_buildinfo(blob, |vaddr, len| image.read(vaddr, len))?;
    GoVersion::parse(&text).map(Some).ok_or(GoBinaryError::Version(text))
}

/// The build info blob, starting at its magic: the `.go.buildinfo` section or, when the
/// file has no section headers, the first 16-byte-aligned occurrence of the magic.
fn find_buildinfo<'data>(data: &'data [u8], file: &object::File<'data>) -> Result<Option<&'data [u8]>, GoBinaryError> {
    if let Some(section) = file.section_by_name(".go.buildinfo") {
        let blob = section.data().map_err(GoBinaryError::Elf)?;
        if !blob.starts_with(BUILDINFO_MAGIC) {
            return Err(GoBinaryError::BuildInfo("section .go.buildinfo does not start with the magic"));
        }
        return Ok(Some(blob));
    }
    if file.sections().next().is_some() {
        return Ok(None);
    }
    // The Go linker aligns the blob to 16 bytes, and file offsets keep that alignment.
    let found = (0..data.len())
        .step_by(16)
        .find(|&offset| data.get(offset..).is_some_and(|rest| rest.starts_with(BUILDINFO_MAGIC)));
    Ok(found.and_then(|offset| data.get(offset..)))
}

/// Extracts the version string from a build info blob (starting at the magic); `read`
/// resolves virtual addresses for the pre-1.18 pointer format.
fn parse_buildinfo<'a>(blob: &'a [u8], read: impl Fn(u64, u64) -> Option<&'a [u8]>) -> Result<String, GoBinaryError> {
    let header = blob.get(..BUILDINFO_HEADER_LEN).ok_or(GoBinaryError::BuildInfo("truncated header"))?;
    let ptr_size = usize::from(header[14]);
    let flags = header[15];
    let bytes = if flags & BUILDINFO_FLAG_INLINE != 0 {
        let rest = blob.get(BUILDINFO_HEADER_LEN..).ok_or(GoBinaryError::BuildInfo("truncated header"))?;
        inline_string(rest).ok_or(GoBinaryError::BuildInfo("truncated inline version string"))?
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err(GoBinaryError::BuildInfo("pointer size is neither 4 nor 8"));
        }
        let big_endian = flags & BUILDINFO_FLAG_BIG_ENDIAN != 0;
        let string_header =
            read_uint(header, 16, ptr_size, big_endian).ok_or(GoBinaryError::BuildInfo("truncated header"))?;
        pointed_string(string_header, ptr_size, big_endian, &read)?
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| GoBinaryError::BuildInfo("version string is not UTF-8"))
}

/// A uvarint-length-prefixed string at the start of `data`.
fn inline_string(data: &[u8]) -> Option<&[u8]> {
    let (len, used) = uvarint(data)?;
    let start = used;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

/// Decodes a Go/protobuf unsigned varint; returns the value and the number of bytes used.
fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The bytes of the Go string whose `{ptr, len}` header is at virtual address `header_addr`.
fn pointed_string<'a>(
    header_addr: u64,
    ptr_size: usize,
    big_endian: bool,
    read: &impl Fn(u64, u64) -> Option<&'a [u8]>,
) -> Result<&'a [u8], GoBinaryError> {
    let header_len = 2 * ptr_size as u64;
    let header = read(header_addr, header_len).ok_or(GoBinaryError::BuildInfo("version string header is unmapped"))?;
    let data_addr = read_uint(header, 0, ptr_size, big_endian);
    let len = read_uint(header, ptr_size, ptr_size, big_endian);
    let (Some(data_addr), Some(len)) = (data_addr, len) else {
        return Err(GoBinaryError::BuildInfo("truncated version string header"));
    };
    if len > MAX_VERSION_LEN {
        return Err(GoBinaryError::BuildInfo("version string is implausibly long"));
    }
    read(data_addr, len).ok_or(GoBinaryError::BuildInfo("version string is unmapped"))
}

/// Reads an unsigned integer of `size` bytes (1, 2, 4 or 8) at `offset`.
fn read_uint(data: &[u8], offset: usize, size: usize, big_endian: bool) -> Option<u64> {
    let bytes = data.get(offset..offset.checked_add(size)?)?;
    if size == 0 || size > 8 {
        return None;
    }
    let fold = |acc: u64, &byte: &u8| (acc << 8) | u64::from(byte);
    Some(if big_endian { bytes.iter().fold(0, fold) } else { bytes.iter().rev().fold(0, fold) })
}

/// Reads a `u32` at `offset`.
fn read_u32(data: &[u8], offset: usize, big_endian: bool) -> Option<u32> {
    read_uint(data, offset, 4, big_endian).and_then(|value| u32::try_from(value).ok())
}

/// A function's code: `[entry, end)` in virtual addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FuncRange {
    entry: u64,
    end: u64,
}

/// The address ranges of `[Write, Read]`, from `.symtab` if it has both, else from
/// `.gopclntab`; `None` when either function is missing or there is no `.gopclntab`.
fn find_functions(file: &object::File<'_>) -> Result<Option<(SymbolSource, [FuncRange; 2])>, GoBinaryError> {
    if let Some(ranges) = symtab_functions(file) {
        return Ok(Some((SymbolSource::Symtab, ranges)));
    }
    let Some(section) = file.section_by_name(".gopclntab") else {
        return Ok(None);
    };
    let data = section.data().map_err(GoBinaryError::Elf)?;
    let text_start = file.section_by_name(".text").map(|text| text.address());
    let table = Pclntab::parse(data, !file.is_little_endian(), text_start)?;
    match table.lookup([WRITE_SYMBOL, READ_SYMBOL])? {
        [Some(write), Some(read)] => Ok(Some((SymbolSource::Pclntab, [write, read]))),
        _ => Ok(None),
    }
}

/// `[Write, Read]` from the ELF symbol table, when both are there with a size.
fn symtab_functions(file: &object::File<'_>) -> Option<[FuncRange; 2]> {
    let (mut write, mut read) = (None, None);
    for symbol in file.symbols() {
        let slot = match symbol.name() {
            Ok(WRITE_SYMBOL) => &mut write,
            Ok(READ_SYMBOL) => &mut read,
            _ => continue,
        };
        let entry = symbol.address();
        if let Some(end) = entry.checked_add(symbol.size()).filter(|&end| end > entry) {
            *slot = Some(FuncRange { entry, end });
        }
    }
    Some([write?, read?])
}

/// Layout generation of `.gopclntab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PclntabLayout {
    /// Go 1.16/1.17: functab holds pointer-sized absolute entry addresses.
    Go116,
    /// Go 1.18 and later: functab holds `u32` offsets from `textStart`.
    Go118,
}

/// The parts of a parsed `.gopclntab` header needed to look functions up by name.
#[derive(Debug)]
struct Pclntab<'a> {
    data: &'a [u8],
    big_endian: bool,
    layout: PclntabLayout,
    ptr_size: usize,
    nfunc: usize,
    text_start: u64,
    funcnametab: usize,
    functab: usize,
}

impl<'a> Pclntab<'a> {
    /// Parses the header of `data` (the whole `.gopclntab` section). `text_fallback` is the
    /// address of `.text`, used when the header's `textStart` is 0 (a position-independent
    /// executable whose header is only filled in by a dynamic relocation).
    fn parse(data: &'a [u8], big_endian: bool, text_fallback: Option<u64>) -> Result<Self, GoBinaryError> {
        const TRUNCATED: GoBinaryError = GoBinaryError::Pclntab("truncated header");
        let magic = read_u32(data, 0, big_endian).ok_or(TRUNCATED)?;
        let layout = match magic {
            PCLNTAB_MAGIC_116 => PclntabLayout::Go116,
            PCLNTAB_MAGIC_118 | PCLNTAB_MAGIC_120 => PclntabLayout::Go118,
            magic => return Err(GoBinaryError::UnsupportedPclntab { magic }),
        };
        let (pad, min_lc, ptr_size) = match data.get(4..8) {
            Some(&[pad1, pad2, min_lc, ptr_size]) => (pad1 | pad2, min_lc, usize::from(ptr_size)),
            _ => return Err(TRUNCATED),
        };
        if pad != 0 || !matches!(min_lc, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err(GoBinaryError::Pclntab("bad header fields (padding, instruction size or pointer size)"));
        }
        let word = |index: usize| read_uint(data, 8 + index * ptr_size, ptr_size, big_endian).ok_or(TRUNCATED);
        let offset = |index: usize| -> Result<usize, GoBinaryError> {
            let value = usize::try_from(word(index)?).map_err(|_| GoBinaryError::Pclntab("offset overflows"))?;
            if value > data.len() {
                return Err(GoBinaryError::Pclntab("header offset points past the end of the table"));
            }
            Ok(value)
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| GoBinaryError::Pclntab("function count overflows"))?;
        let (text_start, funcnametab, functab) = match layout {
            PclntabLayout::Go116 => (0, offset(2)?, offset(6)?),
            PclntabLayout::Go118 => {
                let text_start = match (word(2)?, text_fallback) {
                    (0, Some(text)) => text,
                    (0, None) => return Err(GoBinaryError::Pclntab("textStart is 0 and there is no .text section")),
                    (text_start, _) => text_start,
                };
                (text_start, offset(3)?, offset(7)?)
            }
        };
        let table = Self { data, big_endian, layout, ptr_size, nfunc, text_start, funcnametab, functab };
        table.check_functab_fits()?;
        Ok(table)
    }

    /// Size of one functab field: pointer-sized before Go 1.18, `u32` since.
    fn field_size(&self) -> usize {
        match self.layout {
            PclntabLayout::Go116 => self.ptr_size,
            PclntabLayout::Go118 => 4,
        }
    }

    /// Rejects an `nfunc` that would make the functab (`nfunc + 1` pairs) overflow the data.
    fn check_functab_fits(&self) -> Result<(), GoBinaryError> {
        let end = self
            .nfunc
            .checked_add(1)
            .and_then(|pairs| pairs.checked_mul(2 * self.field_size()))
            .and_then(|len| len.checked_add(self.functab));
        match end {
            Some(end) if end <= self.data.len() => Ok(()),
            _ => Err(GoBinaryError::Pclntab("function table extends past the end of the section")),
        }
    }

    /// Reads field `field` (0 = entry, 1 = func offset) of functab pair `index`.
    fn functab_field(&self, index: usize, field: usize) -> Result<u64, GoBinaryError> {
        let size = self.field_size();
        let offset = index
            .checked_mul(2)
            .and_then(|pair| pair.checked_add(field))
            .and_then(|slot| slot.checked_mul(size))
            .and_then(|rel| rel.checked_add(self.functab));
        offset
            .and_then(|offset| read_uint(self.data, offset, size, self.big_endian))
            .ok_or(GoBinaryError::Pclntab("truncated function table"))
    }

    /// Entry address of functab pair `index` (index `nfunc` is the end of the text).
    fn entry(&self, index: usize) -> Result<u64, GoBinaryError> {
        let raw = self.functab_field(index, 0)?;
        match self.layout {
            PclntabLayout::Go116 => Ok(raw),
            PclntabLayout::Go118 => {
                self.text_start.checked_add(raw).ok_or(GoBinaryError::Pclntab("entry address overflows"))
            }
        }
    }

    /// Offset, within `data`, of the `_func` record of function `index`.
    fn func_record(&self, index: usize) -> Result<usize, GoBinaryError> {
        let funcoff = usize::try_from(self.functab_field(index, 1)?).ok();
        funcoff
            .and_then(|funcoff| funcoff.checked_add(self.functab))
            .filter(|&offset| offset < self.data.len())
            .ok_or(GoBinaryError::Pclntab("function record offset points past the end of the table"))
    }

    /// Whether function `index` is named `name`; checks its `_func` entry field against the
    /// functab on the way, to catch garbage early.
    fn has_name(&self, index: usize, name: &str) -> Result<bool, GoBinaryError> {
        let record = self.func_record(index)?;
        // `_func` starts with the same entry field as the functab: a pointer before Go 1.18,
        // a u32 offset from textStart since.
        let entry_size = self.field_size();
        let record_entry = read_uint(self.data, record, entry_size, self.big_endian);
        let name_off = record.checked_add(entry_size).and_then(|at| read_u32(self.data, at, self.big_endian));
        let (Some(record_entry), Some(name_off)) = (record_entry, name_off) else {
            return Err(GoBinaryError::Pclntab("truncated function record"));
        };
        if record_entry != self.functab_field(index, 0)? {
            return Err(GoBinaryError::Pclntab("function record disagrees with the function table"));
        }
        // nameOff is an int32 in Go; a negative one is garbage.
        let name_start = usize::try_from(i32::from_ne_bytes(name_off.to_ne_bytes()))
            .ok()
            .and_then(|name_off| name_off.checked_add(self.funcnametab))
            .ok_or(GoBinaryError::Pclntab("function name offset is out of range"))?;
        let stored =
            self.data.get(name_start..).ok_or(GoBinaryError::Pclntab("function name offset is out of range"))?;
        Ok(stored.starts_with(name.as_bytes()) && stored.get(name.len()) == Some(&0))
    }

    /// The address ranges of the functions called `names`; the end of a function is the
    /// entry of the next one in the table.
    fn lookup<const N: usize>(&self, names: [&str; N]) -> Result<[Option<FuncRange>; N], GoBinaryError> {
        let mut found = [None; N];
        for index in 0..self.nfunc {
            for (slot, name) in found.iter_mut().zip(names) {
                if slot.is_none() && self.has_name(index, name)? {
                    let (entry, end) = (self.entry(index)?, self.entry(index + 1)?);
                    if end <= entry {
                        return Err(GoBinaryError::Pclntab("function table is not sorted by address"));
                    }
                    *slot = Some(FuncRange { entry, end });
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        Ok(found)
    }
}

/// File offsets of the entry and of every `RET` of `function`.
fn probe_sites(image: &Image<'_>, function: &'static str, range: FuncRange) -> Result<ProbeSites, GoBinaryError> {
    let size = range.end.saturating_sub(range.entry);
    let unmapped = || GoBinaryError::Unmapped { function, vaddr: range.entry, size };
    let code = image.read(range.entry, size).ok_or_else(unmapped)?;
    let entry = image.file_offset(range.entry, size).ok_or_else(unmapped)?;
    let returns: Vec<u64> = ret_addresses(code, range.entry).into_iter().map(|ip| entry + (ip - range.entry)).collect();
    if returns.is_empty() {
        return Err(GoBinaryError::NoReturn { function, start: range.entry, end: range.end });
    }
    Ok(ProbeSites { entry, returns })
}

/// Virtual addresses of the `RET` instructions in `code`, which starts at `ip`. Only
/// instructions lying entirely inside `code` count.
fn ret_addresses(code: &[u8], ip: u64) -> Vec<u64> {
    let end = ip.saturating_add(code.len() as u64);
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut rets = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.mnemonic() == Mnemonic::Ret && instruction.next_ip() <= end {
            rets.push(instruction.ip());
        }
    }
    rets
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
