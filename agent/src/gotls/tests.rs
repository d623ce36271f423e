//! Tests of the Go executable analysis: the version parser, hand-built ELF files (so the
//! pclntab/symtab/RET logic is checked without a Go toolchain), garbage input, and real
//! binaries built with the `go` command (required: CI installs golang-go).

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection};
use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------
// Version strings and build info
// ---------------------------------------------------------------------------------------

fn v(major: u32, minor: u32, patch: u32) -> GoVersion {
    GoVersion { major, minor, patch }
}

#[test]
fn version_parser_accepts_release_and_prerelease_strings() {
    assert_eq!(GoVersion::parse("go1.19.8"), Some(v(1, 19, 8)));
    assert_eq!(GoVersion::parse("go1.21"), Some(v(1, 21, 0)));
    assert_eq!(GoVersion::parse("go1.22rc1"), Some(v(1, 22, 0)));
    assert_eq!(GoVersion::parse("go1.21beta2"), Some(v(1, 21, 0)));
    assert_eq!(GoVersion::parse("go1.21.0 X:loopvar"), Some(v(1, 21, 0)));
    assert_eq!(GoVersion::parse("go1.20.14-bigcorp"), Some(v(1, 20, 14)));
    assert_eq!(GoVersion::parse("devel go1.23-abc123 Tue Jan 1 00:00:00 2024"), Some(v(1, 23, 0)));
    assert_eq!(GoVersion::parse("go1"), Some(v(1, 0, 0)));
    assert_eq!(GoVersion::parse(" go1.18.10\n"), Some(v(1, 18, 10)));
}

#[test]
fn version_parser_rejects_garbage() {
    for text in ["", "go", "1.19.8", "gox.19", "go1.", "go1.x", "go1.19.", "devel +abcdef", "go99999999999.1"] {
        assert_eq!(GoVersion::parse(text), None, "{text:?}");
    }
}

#[test]
fn version_display_and_order() {
    assert_eq!(v(1, 19, 8).to_string(), "go1.19.8");
    assert!(v(1, 19, 8) < v(1, 20, 0));
    assert!(v(1, 9, 9) < v(1, 19, 0));
}

/// A build info blob in the Go ≥ 1.18 inline format.
fn inline_buildinfo(version: &str) -> Vec<u8> {
    let mut blob = BUILDINFO_MAGIC.to_vec();
    blob.extend([8, BUILDINFO_FLAG_INLINE]);
    blob.resize(BUILDINFO_HEADER_LEN, 0);
    for text in [version, "path\tcommand-line-arguments\n"] {
        blob.push(u8::try_from(text.len()).unwrap());
        blob.extend(text.as_bytes());
    }
    blob
}

/// A build info blob in the pre-1.18 pointer format, located at `base`: the string header
/// follows the 32-byte header and the string follows the string header.
fn pointer_buildinfo(version: &str, base: u64, ptr_size: usize, big_endian: bool) -> Vec<u8> {
    let put = |blob: &mut Vec<u8>, value: u64| {
        let bytes = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        let bytes = if big_endian { &bytes[8 - ptr_size..] } else { &bytes[..ptr_size] };
        blob.extend(bytes);
    };
    let mut blob = BUILDINFO_MAGIC.to_vec();
    blob.extend([u8::try_from(ptr_size).unwrap(), u8::from(big_endian)]);
    let string_header = base + 32;
    put(&mut blob, string_header); // version
    put(&mut blob, 0); // module info (ignored)
    blob.resize(32, 0);
    put(&mut blob, string_header + 2 * ptr_size as u64);
    put(&mut blob, version.len() as u64);
    blob.extend(version.as_bytes());
    blob
}

/// `read` closure over a blob loaded at `base`.
fn memory<'a>(blob: &'a [u8], base: u64) -> impl Fn(u64, u64) -> Option<&'a [u8]> {
    move |vaddr, len| {
        let start = usize::try_from(vaddr.checked_sub(base)?).ok()?;
        blob.get(start..start + usize::try_from(len).ok()?)
    }
}

#[test]
fn buildinfo_inline_format() {
    let blob = inline_buildinfo("go1.20.3");
    assert_eq!(parse_buildinfo(&blob, |_, _| None).unwrap(), "go1.20.3");
}

#[test]
fn buildinfo_pointer_format_all_widths_and_orders() {
    for (ptr_size, big_endian) in [(8, false), (4, false), (8, true), (4, true)] {
        let base = 0x0050_0000;
        let blob = pointer_buildinfo("go1.16.15", base, ptr_size, big_endian);
        let version = parse_buildinfo(&blob, memory(&blob, base)).unwrap();
        assert_eq!(version, "go1.16.15", "ptr_size {ptr_size}, big endian {big_endian}");
    }
}

#[test]
fn buildinfo_truncated_or_unmapped_is_an_error() {
    let inline = inline_buildinfo("go1.20.3");
    for len in 0..BUILDINFO_HEADER_LEN + 4 {
        assert!(parse_buildinfo(&inline[..len], |_, _| None).is_err(), "inline truncated to {len}");
    }
    let base = 0x1000;
    let pointer = pointer_buildinfo("go1.16.15", base, 8, false);
    assert!(matches!(parse_buildinfo(&pointer, |_, _| None), Err(GoBinaryError::BuildInfo(_))));
    let truncated = &pointer[..pointer.len() - 1];
    assert!(parse_buildinfo(truncated, memory(truncated, base)).is_err());
    let mut huge = pointer.clone();
    huge[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_buildinfo(&huge, memory(&huge, base)).is_err());
}

#[test]
fn uvarint_decoding() {
    assert_eq!(uvarint(&[0x08]), Some((8, 1)));
    assert_eq!(uvarint(&[0xac, 0x02]), Some((300, 2)));
    assert_eq!(uvarint(&[0x80]), None);
    assert_eq!(uvarint(&[0xff; 11]), None);
}

// ---------------------------------------------------------------------------------------
// Hand-built ELF files
// ---------------------------------------------------------------------------------------

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHF_ALLOC_EXEC: u64 = 0x2 | 0x4;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// One section of a hand-built ELF file.
struct Section {
    name: &'static str,
    sh_type: u32,
    flags: u64,
    addr: u64,
    data: Vec<u8>,
    /// Index (1-based, as in the section header table) of the linked section.
    link: u32,
    entsize: u64,
}

impl Section {
    fn alloc(name: &'static str, addr: u64, data: Vec<u8>) -> Self {
        Self { name, sh_type: SHT_PROGBITS, flags: SHF_ALLOC_EXEC, addr, data, link: 0, entsize: 0 }
    }
}

/// A hand-built ELF64 little-endian executable.
struct Elf {
    bytes: Vec<u8>,
    /// File offset of each section's data, in the order given.
    offsets: Vec<u64>,
}

/// Lays out an ELF64 LE executable: header, section data (16-aligned), `.shstrtab`, then
/// the section header table (omitted when `section_headers` is false).
fn build_elf(machine: u16, sections: &[Section], section_headers: bool) -> Elf {
    let mut bytes = vec![0u8; 64];
    let mut offsets = Vec::new();
    for section in sections {
        bytes.resize(bytes.len().next_multiple_of(16), 0);
        offsets.push(bytes.len() as u64);
        bytes.extend(&section.data);
    }
    let mut shstrtab = vec![0u8];
    let mut names = Vec::new();
    for name in sections.iter().map(|s| s.name).chain([".shstrtab"]) {
        names.push(u32::try_from(shstrtab.len()).unwrap());
        shstrtab.extend(name.as_bytes());
        shstrtab.push(0);
    }
    let shstrtab_offset = bytes.len() as u64;
    bytes.extend(&shstrtab);
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    let shoff = bytes.len() as u64;
    let shnum = u16::try_from(sections.len() + 2).unwrap();

    bytes.extend([0u8; 64]); // null section header
    for ((section, &offset), &name) in sections.iter().zip(&offsets).zip(&names) {
        let header = section_header(name, section.sh_type, section.flags, section.addr, offset, section);
        bytes.extend(header);
    }
    let strtab = Section { name: "", sh_type: SHT_STRTAB, flags: 0, addr: 0, data: shstrtab, link: 0, entsize: 0 };
    bytes.extend(section_header(names[sections.len()], SHT_STRTAB, 0, 0, shstrtab_offset, &strtab));

    let header = &mut bytes[..64];
    header[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    header[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    header[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    if section_headers {
        header[40..48].copy_from_slice(&shoff.to_le_bytes());
        header[58..60].copy_from_slice(&64u16.to_le_bytes());
        header[60..62].copy_from_slice(&shnum.to_le_bytes());
        header[62..64].copy_from_slice(&(shnum - 1).to_le_bytes());
    }
    Elf { bytes, offsets }
}

fn section_header(name: u32, sh_type: u32, flags: u64, addr: u64, offset: u64, section: &Section) -> Vec<u8> {
    let mut header = Vec::with_capacity(64);
    header.extend(name.to_le_bytes());
    header.extend(sh_type.to_le_bytes());
    header.extend(flags.to_le_bytes());
    header.extend(addr.to_le_bytes());
    header.extend(offset.to_le_bytes());
    header.extend((section.data.len() as u64).to_le_bytes());
    header.extend(section.link.to_le_bytes());
    header.extend(1u32.to_le_bytes()); // sh_info: first global symbol, for .symtab
    header.extend(1u64.to_le_bytes()); // sh_addralign
    header.extend(section.entsize.to_le_bytes());
    header
}

const TEXT: u64 = 0x0040_1000;
const BUILDINFO: u64 = 0x0050_0000;

/// Synthetic code; offsets are relative to [`TEXT`].
///
/// - `main.main` at 0x00;
/// - `Write` at 0x10: `mov eax, 0xc3` (a 0xc3 byte that is not a RET), `je +1`, `ret` at
///   0x17, `ret 8` at 0x18, padding;
/// - `Read` at 0x20: `mov rax, rax`, `ret` at 0x23, two `int3`, then `c2 08`, a `ret 8`
///   cut by the end of the function at 0x28 (the next file byte, 0x00, would complete it);
/// - after the end of the text (0x28): bytes that would be RETs.
fn text_bytes() -> Vec<u8> {
    let mut text = vec![0x90, 0xc3];
    text.resize(0x10, 0xcc);
    text.extend([0xb8, 0xc3, 0x00, 0x00, 0x00, 0x74, 0x01, 0xc3, 0xc2, 0x08, 0x00]);
    text.resize(0x20, 0xcc);
    text.extend([0x48, 0x89, 0xc0, 0xc3, 0xcc, 0xcc, 0xc2, 0x08]);
    text.extend([0x00, 0xc3, 0xc3, 0xc3]);
    text
}

const WRITE_RETS: [u64; 2] = [0x17, 0x18];
const READ_RETS: [u64; 1] = [0x23];
const FUNCS: [(&str, u64); 3] = [("main.main", 0x00), (WRITE_SYMBOL, 0x10), (READ_SYMBOL, 0x20)];
const TEXT_END: u64 = 0x28;

/// A `.gopclntab` with the given layout (Go 1.16 when `magic` is the 1.16 magic, else the
/// 1.18+ layout), pointer size 8, little-endian, for `funcs` (name, offset from `text`).
fn pclntab(magic: u32, text: u64, funcs: &[(&str, u64)], text_end: u64) -> Vec<u8> {
    let old = magic == PCLNTAB_MAGIC_116;
    let header_words: usize = if old { 7 } else { 8 };
    let header_len = 8 + 8 * header_words;
    let field = if old { 8 } else { 4 };
    let put = |out: &mut Vec<u8>, value: u64, size: usize| out.extend(&value.to_le_bytes()[..size]);

    let mut names = Vec::new();
    let mut name_offsets = Vec::new();
    for (name, _) in funcs {
        name_offsets.push(names.len() as u64);
        names.extend(name.as_bytes());
        names.push(0);
    }
    let funcnametab = header_len as u64;
    let functab = (header_len + names.len()).next_multiple_of(8) as u64;
    let functab_len = (funcs.len() + 1) * 2 * field;
    let record_len = 40;

    let mut out = Vec::new();
    put(&mut out, u64::from(magic), 4);
    out.extend([0, 0, 1, 8]);
    let mut words = vec![funcs.len() as u64, 0];
    if !old {
        words.push(text);
    }
    words.extend([funcnametab, funcnametab, funcnametab, funcnametab, functab]);
    for word in words {
        put(&mut out, word, 8);
    }
    out.extend(&names);
    out.resize(functab as usize, 0);
    let entry = |offset: u64| if old { text + offset } else { offset };
    for (i, (_, offset)) in funcs.iter().enumerate() {
        put(&mut out, entry(*offset), field);
        put(&mut out, (functab_len + i * record_len) as u64, field);
    }
    put(&mut out, entry(text_end), field);
    put(&mut out, 0, field);
    for ((_, offset), name_offset) in funcs.iter().zip(&name_offsets) {
        let start = out.len();
        put(&mut out, entry(*offset), field);
        put(&mut out, *name_offset, 4);
        out.resize(start + record_len, 0);
    }
    out
}

/// `.symtab` and `.strtab` data for `syms` (name, vaddr, size), all in section 1.
fn symtab(syms: &[(&str, u64, u64)]) -> (Vec<u8>, Vec<u8>) {
    let mut strtab = vec![0u8];
    let mut table = vec![0u8; 24];
    for (name, value, size) in syms {
        table.extend(u32::try_from(strtab.len()).unwrap().to_le_bytes());
        table.extend([0x12, 0]); // STB_GLOBAL | STT_FUNC
        table.extend(1u16.to_le_bytes());
        table.extend(value.to_le_bytes());
        table.extend(size.to_le_bytes());
        strtab.extend(name.as_bytes());
        strtab.push(0);
    }
    (table, strtab)
}

/// The standard synthetic Go executable: `.text` first, then build info and pclntab.
fn synthetic_go(machine: u16, magic: u32, buildinfo: Vec<u8>) -> Elf {
    let sections = [
        Section::alloc(".text", TEXT, text_bytes()),
        Section::alloc(".go.buildinfo", BUILDINFO, buildinfo),
        Section::alloc(".gopclntab", 0x0060_0000, pclntab(magic, TEXT, &FUNCS, TEXT_END)),
    ];
    build_elf(machine, &sections, true)
}

fn expected_sites(text_offset: u64) -> (ProbeSites, ProbeSites) {
    let write = ProbeSites { entry: text_offset + 0x10, returns: WRITE_RETS.map(|r| text_offset + r).to_vec() };
    let read = ProbeSites { entry: text_offset + 0x20, returns: READ_RETS.map(|r| text_offset + r).to_vec() };
    (write, read)
}

#[test]
fn synthetic_pclntab_all_layouts() {
    for magic in [PCLNTAB_MAGIC_116, PCLNTAB_MAGIC_118, PCLNTAB_MAGIC_120] {
        let elf = synthetic_go(EM_X86_64, magic, inline_buildinfo("go1.20.1"));
        let targets = inspect(&elf.bytes).unwrap().unwrap();
        let (write, read) = expected_sites(elf.offsets[0]);
        assert_eq!(targets.version, v(1, 20, 1));
        assert_eq!(targets.symbols_from, SymbolSource::Pclntab, "magic {magic:#x}");
        assert_eq!(targets.write, write, "magic {magic:#x}");
        assert_eq!(targets.read, read, "magic {magic:#x}");
    }
}

#[test]
fn synthetic_symtab_is_preferred() {
    let (table, strtab) = symtab(&[(WRITE_SYMBOL, TEXT + 0x10, 11), (READ_SYMBOL, TEXT + 0x20, 8)]);
    let sections = [
        Section::alloc(".text", TEXT, text_bytes()),
        Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.19.8")),
        Section { name: ".symtab", sh_type: SHT_SYMTAB, flags: 0, addr: 0, data: table, link: 4, entsize: 24 },
        Section { name: ".strtab", sh_type: SHT_STRTAB, flags: 0, addr: 0, data: strtab, link: 0, entsize: 0 },
    ];
    let elf = build_elf(EM_X86_64, &sections, true);
    let targets = inspect(&elf.bytes).unwrap().unwrap();
    let (write, read) = expected_sites(elf.offsets[0]);
    assert_eq!(targets.symbols_from, SymbolSource::Symtab);
    assert_eq!((targets.write, targets.read), (write, read));
}

#[test]
fn synthetic_pointer_format_buildinfo_resolves_through_sections() {
    let elf = synthetic_go(EM_X86_64, PCLNTAB_MAGIC_116, pointer_buildinfo("go1.16.15", BUILDINFO, 8, false));
    assert_eq!(inspect(&elf.bytes).unwrap().unwrap().version, v(1, 16, 15));
}

#[test]
fn not_go_and_no_tls_give_none() {
    // No build info: not a Go program, whatever else it contains.
    let sections = [
        Section::alloc(".text", TEXT, text_bytes()),
        Section::alloc(".gopclntab", 0x0060_0000, pclntab(PCLNTAB_MAGIC_118, TEXT, &FUNCS, TEXT_END)),
    ];
    assert!(inspect(&build_elf(EM_X86_64, &sections, true).bytes).unwrap().is_none());
    // Go, but without crypto/tls.
    let sections = [
        Section::alloc(".text", TEXT, text_bytes()),
        Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.19.8")),
        Section::alloc(".gopclntab", 0x0060_0000, pclntab(PCLNTAB_MAGIC_118, TEXT, &FUNCS[..2], 0x20)),
    ];
    assert!(inspect(&build_elf(EM_X86_64, &sections, true).bytes).unwrap().is_none());
    // Go without a .gopclntab (nor symbols): nothing to probe.
    let sections = [
        Section::alloc(".text", TEXT, text_bytes()),
        Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.19.8")),
    ];
    assert!(inspect(&build_elf(EM_X86_64, &sections, true).bytes).unwrap().is_none());
}

#[test]
fn no_section_headers_finds_buildinfo_but_gives_none() {
    let elf = build_elf(EM_X86_64, &[Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.21.4"))], false);
    let file = object::File::parse(&*elf.bytes).unwrap();
    let blob = find_buildinfo(&elf.bytes, &file).unwrap().unwrap();
    assert_eq!(parse_buildinfo(blob, |_, _| None).unwrap(), "go1.21.4");
    assert!(inspect(&elf.bytes).unwrap().is_none());
}

#[test]
fn other_architectures_are_unsupported() {
    let elf = synthetic_go(EM_AARCH64, PCLNTAB_MAGIC_118, inline_buildinfo("go1.19.8"));
    assert!(matches!(inspect(&elf.bytes), Err(GoBinaryError::UnsupportedArch(_))));
}

#[test]
fn function_without_ret_is_an_error() {
    let mut text = text_bytes();
    text[0x17] = 0x90;
    text[0x18] = 0x90;
    let sections = [
        Section::alloc(".text", TEXT, text),
        Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.19.8")),
        Section::alloc(".gopclntab", 0x0060_0000, pclntab(PCLNTAB_MAGIC_118, TEXT, &FUNCS, TEXT_END)),
    ];
    let error = inspect(&build_elf(EM_X86_64, &sections, true).bytes).unwrap_err();
    assert!(matches!(error, GoBinaryError::NoReturn { function: WRITE_SYMBOL, .. }), "{error}");
}

#[test]
fn bad_buildinfo_and_version_are_errors() {
    let elf = synthetic_go(EM_X86_64, PCLNTAB_MAGIC_118, inline_buildinfo("gccgo"));
    assert!(matches!(inspect(&elf.bytes), Err(GoBinaryError::Version(text)) if text == "gccgo"));
    let elf = synthetic_go(EM_X86_64, PCLNTAB_MAGIC_118, b"not a build info blob, but long enough".to_vec());
    assert!(matches!(inspect(&elf.bytes), Err(GoBinaryError::BuildInfo(_))));
}

#[test]
fn old_or_unknown_pclntab_magic_is_an_error() {
    let elf = synthetic_go(EM_X86_64, 0xffff_fffb, inline_buildinfo("go1.15.0"));
    assert!(matches!(inspect(&elf.bytes), Err(GoBinaryError::UnsupportedPclntab { magic: 0xffff_fffb })));
}

#[test]
fn truncated_pclntab_is_an_error_never_a_panic() {
    let full = pclntab(PCLNTAB_MAGIC_118, TEXT, &FUNCS, TEXT_END);
    let expected = inspect(&synthetic_go(EM_X86_64, PCLNTAB_MAGIC_118, inline_buildinfo("go1.19.8")).bytes).unwrap();
    for len in 0..full.len() {
        let sections = [
            Section::alloc(".text", TEXT, text_bytes()),
            Section::alloc(".go.buildinfo", BUILDINFO, inline_buildinfo("go1.19.8")),
            Section::alloc(".gopclntab", 0x0060_0000, full[..len].to_vec()),
        ];
        match inspect(&build_elf(EM_X86_64, &sections, true).bytes) {
            Err(GoBinaryError::Pclntab(_)) => {}
            // Only the tail after the last record needed can be cut without harm.
            Ok(found) => assert_eq!(found, expected, "truncated to {len}"),
            Err(other) => panic!("truncated to {len}: unexpected error {other}"),
        }
    }
    // Header only: the function table is missing.
    let header_only = &full[..72];
    assert!(matches!(Pclntab::parse(header_only, false, None), Err(GoBinaryError::Pclntab(_))));
}

#[test]
fn pclntab_with_huge_counts_and_offsets_is_rejected() {
    let full = pclntab(PCLNTAB_MAGIC_118, TEXT, &FUNCS, TEXT_END);
    for (field, value) in [(8, u64::MAX), (8, 1 << 40), (24, u64::MAX), (64, u64::MAX), (64, 1 << 20)] {
        let mut broken = full.clone();
        broken[field..field + 8].copy_from_slice(&value.to_le_bytes());
        let result = Pclntab::parse(&broken, false, None).and_then(|table| table.lookup([WRITE_SYMBOL]));
        assert!(result.is_err(), "field at {field} = {value:#x}");
    }
}

// ---------------------------------------------------------------------------------------
// Garbage
// ---------------------------------------------------------------------------------------

#[test]
fn non_elf_input_is_not_elf() {
    assert!(matches!(inspect(b""), Err(GoBinaryError::NotElf)));
    assert!(matches!(inspect(b"#!/bin/sh\necho hello\n"), Err(GoBinaryError::NotElf)));
    assert!(matches!(inspect(b"\x7fEL"), Err(GoBinaryError::NotElf)));
    assert!(matches!(inspect(b"\x7fELF\x02\x01\x01"), Err(GoBinaryError::Elf(_))));
}

#[test]
fn text_file_is_not_elf_and_missing_file_is_io() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    assert!(matches!(inspect_file(&script), Err(GoBinaryError::NotElf)));
    let missing = dir.path().join("missing");
    let error = inspect_file(&missing).unwrap_err();
    assert!(matches!(error, GoBinaryError::Io { .. }));
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn system_binary_is_not_go() {
    let path = ["/bin/true", "/usr/bin/true"].into_iter().map(Path::new).find(|p| p.exists());
    let path = path.expect("/bin/true or /usr/bin/true should exist");
    assert!(inspect_file(path).unwrap().is_none());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspect(&data);
    }

    #[test]
    fn random_bytes_after_elf_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut data = b"\x7fELF\x02\x01\x01".to_vec();
        data.extend(tail);
        let _ = inspect(&data);
    }

    #[test]
    fn mutated_synthetic_go_binary_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        magic in prop::sample::select(vec![PCLNTAB_MAGIC_116, PCLNTAB_MAGIC_118, PCLNTAB_MAGIC_120]),
    ) {
        let mut bytes = synthetic_go(EM_X86_64, magic, inline_buildinfo("go1.20.1")).bytes;
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = inspect(&bytes);
    }

    #[test]
    fn mutated_pclntab_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let mut table = pclntab(PCLNTAB_MAGIC_120, TEXT, &FUNCS, TEXT_END);
        for (index, value) in edits {
            let at = index.index(table.len());
            table[at] = value;
        }
        if let Ok(parsed) = Pclntab::parse(&table, false, Some(TEXT)) {
            let _ = parsed.lookup([WRITE_SYMBOL, READ_SYMBOL]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real Go binaries
// ---------------------------------------------------------------------------------------

const GO_PROGRAM: &str = r#"package main

import (
	"fmt"
	"net/http"
)

func main() {
	resp, err := http.Get("https://example.com/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}
"#;

/// A `go` command with a private cache, no cgo and no inherited flags.
fn go_command(dir: &Path) -> Command {
    let cache = std::env::temp_dir().join("tapline-gocache");
    let mut command = Command::new("go");
    command
        .current_dir(dir)
        .env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("path"))
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local");
    command
}

/// Runs `command`, failing the test with a clear message when `go` is missing or fails.
fn run(mut command: Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run `go` ({error}): the Go toolchain is required for this test (apt-get install golang-go)")
    });
    assert!(output.status.success(), "{command:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn go_build(dir: &Path, out: &str, ldflags: Option<&str>) -> PathBuf {
    let mut command = go_command(dir);
    command.arg("build").arg("-o").arg(out);
    if let Some(ldflags) = ldflags {
        command.arg(format!("-ldflags={ldflags}"));
    }
    command.arg("main.go");
    run(command);
    dir.join(out)
}

/// `(entry, RETs)` virtual addresses of `symbol` according to `go tool objdump`.
fn objdump(dir: &Path, binary: &Path, symbol: &str) -> (u64, Vec<u64>) {
    let pattern =
        format!("^{}$", symbol.replace('.', "\\.").replace('(', "\\(").replace('*', "\\*").replace(')', "\\)"));
    let mut command = go_command(dir);
    command.args(["tool", "objdump", "-s", &pattern]).arg(binary);
    let listing = run(command);
    let mut addresses = Vec::new();
    let mut rets = Vec::new();
    for line in listing.lines().filter(|line| !line.starts_with("TEXT")) {
        // conn.go:1133  0x5906c0  4c8d642498  LEAQ -0x68(SP), R12
        let fields: Vec<&str> = line.split('\t').map(str::trim).filter(|f| !f.is_empty()).collect();
        let Some(address) = fields.get(1).and_then(|a| a.strip_prefix("0x")) else { continue };
        let address = u64::from_str_radix(address, 16).unwrap();
        addresses.push(address);
        if fields.get(3) == Some(&"RET") {
            rets.push(address);
        }
    }
    assert!(!addresses.is_empty(), "objdump printed nothing for {symbol}:\n{listing}");
    (addresses[0], rets)
}

/// Converts a vaddr to a file offset with the `.text` section header (an oracle
/// independent of [`Image`]).
fn text_offset(data: &[u8], vaddr: u64) -> u64 {
    let file = object::File::parse(data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let (offset, _) = text.file_range().unwrap();
    vaddr - text.address() + offset
}

#[test]
fn real_go_binaries_symtab_and_pclntab() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.go"), GO_PROGRAM).unwrap();
    let mut command = go_command(dir.path());
    command.args(["env", "GOVERSION"]);
    let go_version = GoVersion::parse(&run(command)).expect("`go env GOVERSION` prints a Go version");

    let full_path = go_build(dir.path(), "full", None);
    let stripped_path = go_build(dir.path(), "stripped", Some("-s -w"));
    let full_data = std::fs::read(&full_path).unwrap();
    let stripped_data = std::fs::read(&stripped_path).unwrap();

    let full = inspect_file(&full_path).unwrap().expect("the unstripped binary uses crypto/tls");
    let stripped = inspect_file(&stripped_path).unwrap().expect("the stripped binary uses crypto/tls");
    assert_eq!(full.version, go_version);
    assert_eq!(stripped.version, go_version);
    assert_eq!(full.symbols_from, SymbolSource::Symtab);
    assert_eq!(stripped.symbols_from, SymbolSource::Pclntab);

    for (symbol, full_sites, stripped_sites) in
        [(WRITE_SYMBOL, &full.write, &stripped.write), (READ_SYMBOL, &full.read, &stripped.read)]
    {
        // Unstripped: compare with `go tool objdump`.
        let (entry, rets) = objdump(dir.path(), &full_path, symbol);
        assert_eq!(full_sites.entry, text_offset(&full_data, entry), "{symbol} entry");
        let rets: Vec<u64> = rets.into_iter().map(|ret| text_offset(&full_data, ret)).collect();
        assert_eq!(full_sites.returns, rets, "{symbol} RETs");

        // Stripped: same code, found through .gopclntab.
        assert!(!stripped_sites.returns.is_empty(), "{symbol}");
        assert_eq!(stripped_sites.returns.len(), full_sites.returns.len(), "{symbol} RET count");
        for &ret in &stripped_sites.returns {
            assert_eq!(stripped_data[ret as usize], 0xc3, "{symbol} RET at file offset {ret:#x}");
        }
        let prologue = |data: &[u8], at: u64| data[at as usize..at as usize + 16].to_vec();
        assert_eq!(
            prologue(&stripped_data, stripped_sites.entry),
            prologue(&full_data, full_sites.entry),
            "{symbol} prologue"
        );
    }

    // The .gopclntab of the unstripped binary agrees with its .symtab.
    let file = object::File::parse(&*full_data).unwrap();
    let table_data = file.section_by_name(".gopclntab").unwrap().data().unwrap();
    let table = Pclntab::parse(table_data, false, None).unwrap();
    let [Some(write), Some(read)] = table.lookup([WRITE_SYMBOL, READ_SYMBOL]).unwrap() else {
        panic!("pclntab lacks the TLS functions");
    };
    let [sym_write, sym_read] = symtab_functions(&file).unwrap();
    assert_eq!((write.entry, read.entry), (sym_write.entry, sym_read.entry));
    assert!(write.end >= sym_write.end && read.end >= sym_read.end);

    // Section headers removed (as by sstrip): documented to give None.
    let mut headerless = stripped_data.clone();
    headerless[40..48].fill(0); // e_shoff
    headerless[58..64].fill(0); // e_shentsize, e_shnum, e_shstrndx
    assert!(inspect(&headerless).unwrap().is_none());

    // Only Go executables (or files whose headers cannot tell) are read whole.
    for path in [&full_path, &stripped_path] {
        let cache = object::read::ReadCache::new(std::fs::File::open(path).unwrap());
        assert!(may_be_go(&cache), "{}", path.display());
    }
    assert!(may_be_go(headerless.as_slice()), "no section headers: only a whole read can tell");
    for not_go in ["/usr/bin/curl", "/usr/bin/python3"] {
        let cache = object::read::ReadCache::new(std::fs::File::open(not_go).unwrap());
        assert!(!may_be_go(&cache), "{not_go}");
    }
}
