//! Finds functions in an ELF file (shared library or executable) and turns their addresses
//! into the file offsets the kernel's uprobe API takes. One parse per file, for all the
//! functions a probe family needs.

use object::{Object, ObjectSection, ObjectSymbol, ReadRef, SymbolKind};

/// File offsets of the named functions that `data` defines (from `.symtab` or `.dynsym`).
/// Functions it does not define (including imports) are left out. Not an ELF: empty.
/// `data` is the file's bytes, or a [`object::read::ReadCache`] over the open file, which
/// reads only the headers and symbol tables (not a large executable's code and debug info).
pub fn function_offsets<'data, 'n, R: ReadRef<'data>>(data: R, names: &[&'n str]) -> Vec<(&'n str, u64)> {
    let Ok(file) = object::File::parse(data) else { return Vec::new() };
    let mut found: Vec<(&'n str, u64)> = Vec::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        // Versioned dynamic symbols may read `SSL_write@@OPENSSL_3.0.0`.
        let base = name.split('@').next().unwrap_or(name);
        let Some(&wanted) = names.iter().find(|n| **n == base) else { continue };
        if found.iter().any(|(n, _)| *n == wanted) {
            continue;
        }
        let Some(section) = sym.section_index().and_then(|i| file.section_by_index(i).ok()) else { continue };
        let Some((section_offset, _)) = section.file_range() else { continue };
        let Some(offset) = sym.address().checked_sub(section.address()).and_then(|d| d.checked_add(section_offset))
        else {
            continue;
        };
        found.push((wanted, offset));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::function_offsets;

    fn libssl() -> std::path::PathBuf {
        ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .expect("libssl3 is installed (scripts/install-deps.sh)")
    }

    #[test]
    fn finds_openssl_functions_in_libssl_at_their_code() {
        let data = std::fs::read(libssl()).unwrap();
        let names = ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex", "no_such_fn"];
        let found = function_offsets(data.as_slice(), &names);
        assert_eq!(found.len(), 4, "{found:?}");
        for (name, off) in &found {
            let off = *off as usize;
            assert!(off < data.len(), "{name} offset inside the file");
            // x86-64 functions in Debian's build start with endbr64 (CET) or a push/sub.
            assert_ne!(&data[off..off + 4], &[0, 0, 0, 0], "{name} points at code");
        }
        let mut offs: Vec<u64> = found.iter().map(|(_, o)| *o).collect();
        offs.dedup();
        assert_eq!(offs.len(), 4, "distinct functions");
    }

    #[test]
    fn reading_through_a_cache_finds_the_same_offsets() {
        let names = ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"];
        let whole = function_offsets(std::fs::read(libssl()).unwrap().as_slice(), &names);
        let cache = object::read::ReadCache::new(std::fs::File::open(libssl()).unwrap());
        assert_eq!(function_offsets(&cache, &names), whole);
    }

    #[test]
    fn imports_and_non_elf_give_nothing() {
        // curl imports SSL_write from libssl: an undefined symbol is not a place to probe.
        let curl = std::fs::read("/usr/bin/curl").unwrap();
        assert!(function_offsets(curl.as_slice(), &["SSL_write"]).is_empty());
        assert!(function_offsets(&b"#!/bin/sh\necho hi\n"[..], &["SSL_write"]).is_empty());
        assert!(function_offsets(&[][..], &["SSL_write"]).is_empty());
    }
}
