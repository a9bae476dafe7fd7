//! Where a store's bytes go: key and value bytes per key prefix of the ledger's sled tree, the
//! files in its directory, and what sled adds on top (node headers, fragments, segments not
//! yet reclaimed, snapshots).

use std::path::Path;

use crate::error::StoreError;
use crate::kv::Db;

/// The bytes under one key prefix of the ledger tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixUsage {
    /// The key's first byte.
    pub prefix: u8,
    /// How many keys.
    pub keys: u64,
    /// Their key bytes, prefix included.
    pub key_bytes: u64,
    /// Their value bytes.
    pub value_bytes: u64,
}

impl PrefixUsage {
    /// Key and value bytes together.
    pub fn bytes(&self) -> u64 {
        self.key_bytes + self.value_bytes
    }

    /// What the prefix holds, for people.
    pub fn name(&self) -> &'static str {
        match self.prefix {
            b'r' => "records (inline, or locators into log/)",
            b'x' => "index chunks",
            b'h' => "leaf hashes (inline, or locators into log/)",
            b's' => "segments",
            b'c' => "checkpoints",
            b'm' => "meta (dictionaries, counters)",
            b'a' => "alert history",
            b't' => "Merkle subtree hashes",
            b'i' => "index runs",
            b'n' => "counter deltas",
            b'N' => "counters, merged hours",
            b'U' => "counters, rollups",
            b'k' => "counters, pieces of merged values",
            _ => "other",
        }
    }
}

/// One file (or directory, summed) in the store's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUsage {
    /// Its name in the store's directory.
    pub name: String,
    /// Its length (a directory: the sum of its files' lengths).
    pub len: u64,
    /// Bytes the filesystem allocated for it (sparse files hold less than their length).
    pub allocated: u64,
    /// Whether sled wrote it (`conf`, `db`, `snap.*`, `blobs`).
    pub sled: bool,
}

/// Where a store's bytes go. See [`crate::Ledger::disk_usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Per key prefix of the ledger tree, in prefix order.
    pub prefixes: Vec<PrefixUsage>,
    /// Key and value bytes of sled trees other than the ledger's (sled's default tree).
    pub other_trees: u64,
    /// The files of the store's directory.
    pub files: Vec<FileUsage>,
}

impl DiskUsage {
    /// Key and value bytes in sled, all trees.
    pub fn logical(&self) -> u64 {
        self.prefixes.iter().map(PrefixUsage::bytes).sum::<u64>() + self.other_trees
    }

    /// Bytes of the directory's files (their lengths).
    pub fn total(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// Bytes of files sled wrote.
    pub fn sled_files(&self) -> u64 {
        self.files.iter().filter(|f| f.sled).map(|f| f.len).sum()
    }

    /// Bytes of files beside sled's (e.g. index runs).
    pub fn other_files(&self) -> u64 {
        self.total() - self.sled_files()
    }

    /// What sled's files hold beyond the key and value bytes (may be negative: sled
    /// compresses key prefixes within a node).
    pub fn sled_overhead(&self) -> i64 {
        self.sled_files() as i64 - self.logical() as i64
    }

    /// The usage of one prefix (zero when it holds nothing).
    pub fn prefix(&self, p: u8) -> PrefixUsage {
        self.prefixes
            .iter()
            .find(|u| u.prefix == p)
            .copied()
            .unwrap_or(PrefixUsage {
                prefix: p,
                ..PrefixUsage::default()
            })
    }
}

fn file_usage(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path)?;
    if m.is_dir() {
        let mut sum = (0, 0);
        for e in std::fs::read_dir(path)? {
            let (l, a) = file_usage(&e?.path())?;
            sum.0 += l;
            sum.1 += a;
        }
        Ok(sum)
    } else {
        Ok((m.len(), m.blocks() * 512))
    }
}

/// Scans every key of `db` and lists the files of `dir`. Reads only; costs a full scan.
pub(crate) fn scan(db: &Db, ledger: &str, dir: &Path) -> Result<DiskUsage, StoreError> {
    let mut by_prefix = [PrefixUsage::default(); 256];
    let mut other_trees = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let is_ledger = name.as_ref() == ledger.as_bytes();
        for kv in tree.iter() {
            let (k, v) = kv?;
            if is_ledger {
                let p = k.first().copied().unwrap_or(0);
                let u = &mut by_prefix[usize::from(p)];
                u.prefix = p;
                u.keys += 1;
                u.key_bytes += k.len() as u64;
                u.value_bytes += v.len() as u64;
            } else {
                other_trees += (k.len() + v.len()) as u64;
            }
        }
    }
    let io = |e: std::io::Error| {
        StoreError::Storage(crate::kv::BackendError::io(std::io::Error::other(format!(
            "cannot list {}: {e}",
            dir.display()
        ))))
    };
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let (len, allocated) = file_usage(&e.path()).map_err(io)?;
        files.push(FileUsage {
            sled: crate::kv::is_backend_file(&name),
            name,
            len,
            allocated,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DiskUsage {
        prefixes: by_prefix.into_iter().filter(|u| u.keys > 0).collect(),
        other_trees,
        files,
    })
}
