//! The local, append-only index of batch members: where each digest went.
//!
//! File: `<index_dir>/s3-<bucket>.index.tsv`, one line per stored object:
//! `<digest>\t<key>\t<offset>\t<length>\n` (decimal offset and length of the object's gzip
//! member in the batch `key`). Lines are written when a batch is sealed, before it is handed
//! to delivery. A digest stored twice has two lines; readers try them in order.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::batch::{Batch, MemberLocation};

/// The index of one bucket.
pub struct MemberIndex {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MemberIndex {
    /// The index file of `bucket` in `dir`.
    pub fn path_for(dir: &Path, bucket: &str) -> PathBuf {
        dir.join(format!("s3-{bucket}.index.tsv"))
    }

    /// Opens (creating `dir` and the file) for appending.
    pub fn open(dir: &Path, bucket: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = Self::path_for(dir, bucket);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, out: BufWriter::with_capacity(256 << 10, f) })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the members of `batch` and flushes them to the file.
    pub fn record(&mut self, batch: &Batch) -> std::io::Result<()> {
        for (digest, offset, length) in &batch.members {
            writeln!(self.out, "{digest}\t{}\t{offset}\t{length}", batch.key)?;
        }
        self.out.flush()
    }

    /// Every place `digest` was stored, oldest first, from the file at `path`.
    pub fn lookup(path: &Path, digest: &str) -> std::io::Result<Vec<MemberLocation>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for line in BufReader::with_capacity(256 << 10, f).lines() {
            let line = line?;
            if !line.starts_with(digest) {
                continue;
            }
            let mut it = line.split('\t');
            if let (Some(d), Some(key), Some(off), Some(len)) = (it.next(), it.next(), it.next(), it.next())
                && d == digest
                && let (Ok(offset), Ok(length)) = (off.parse(), len.parse())
            {
                found.push(MemberLocation { key: key.to_string(), offset, length });
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let d1 = "1".repeat(40);
        let d2 = "2".repeat(40);
        let b = |key: &str, m: Vec<(String, u64, u64)>| Batch { key: key.into(), bytes: Vec::new(), members: m };
        {
            let mut ix = MemberIndex::open(dir.path(), "bk").unwrap();
            ix.record(&b("k1", vec![(d1.clone(), 0, 10), (d2.clone(), 10, 5)])).unwrap();
        }
        let mut ix = MemberIndex::open(dir.path(), "bk").unwrap();
        ix.record(&b("k2", vec![(d1.clone(), 0, 11)])).unwrap();
        let text = std::fs::read_to_string(ix.path()).unwrap();
        assert_eq!(text.lines().next().unwrap(), format!("{d1}\tk1\t0\t10"));
        let got = MemberIndex::lookup(ix.path(), &d1).unwrap();
        assert_eq!(
            got,
            vec![
                MemberLocation { key: "k1".into(), offset: 0, length: 10 },
                MemberLocation { key: "k2".into(), offset: 0, length: 11 }
            ]
        );
        assert_eq!(MemberIndex::lookup(ix.path(), &d2).unwrap().len(), 1);
        assert!(MemberIndex::lookup(ix.path(), &"3".repeat(40)).unwrap().is_empty());
        assert!(MemberIndex::lookup(&dir.path().join("none"), &d1).unwrap().is_empty());
    }
}
