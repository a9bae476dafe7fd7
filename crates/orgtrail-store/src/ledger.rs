//! The sled-backed ledger: open, prepare (any thread), append (the writer thread), read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use orgtrail_core::{AccountId, CloudTrailEvent, MAX_EVENT_BYTES, Timestamp};
use orgtrail_crypto::blind::BLIND_LEN;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::keyring::WRAPPED_LEN;
use orgtrail_crypto::{BlindIndexer, DataKey, KeyProvider, NONCE_LEN, WrappedKey};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::format::{
    self, CHECKPOINT, CHUNK, FORMAT_VERSION, RECORDS, Reader, SEGMENT, key, meta_key,
};
use crate::index::{Blind, BlindMap, Index};
use crate::query::{Attr, Cursor, Page, Query, StoredEvent};
use crate::tree::{HASHES, StoreSubtrees, TreeState, event_leaf};
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::merkle::{self, Frontier, Hash, Subtrees};
use orgtrail_crypto::signing::SigningKey;

/// How often a faulted writer tries to reopen the store.
const RECOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long closing waits for the writer to finish what is queued.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The default free-space reserve: room for sled's own log and snapshot writes and several
/// group commits, small enough for a demo on a nearly full disk.
pub const DEFAULT_RESERVE: u64 = 128 << 20;

/// Whether the ledger is taking appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends are taken.
    Ready,
    /// The data directory's filesystem is below the reserve: appends are refused until space
    /// returns. Reads go on.
    DiskFull { free: u64, reserve: u64 },
    /// A write failed; the ledger is reopening and reconciling its files (it retries by
    /// itself). Appends are refused meanwhile.
    Faulted { reason: String },
}

/// Tuning of the ledger. The defaults suit production.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Records one data key seals at most (random nonces stay far below 2^32 per key).
    pub segment_max_records: u64,
    /// Records per sled value (a lookup reads one block per event it returns).
    pub block_records: usize,
    /// Events sampled before a zstd dictionary is trained for this store.
    pub dict_train_after: usize,
    /// Most events the writer commits in one group (one sled batch, one flush).
    pub max_group_events: usize,
    /// sled's page cache.
    pub cache_bytes: u64,
    /// zstd level.
    pub zstd_level: i32,
    /// Signs checkpoints. Without it the ledger writes none.
    pub signer: Option<Arc<SigningKey>>,
    /// A checkpoint after at most this many new records...
    pub checkpoint_records: u64,
    /// ...or, when records arrive, once the last checkpoint is older than this.
    pub checkpoint_interval: std::time::Duration,
    /// Open for reading only: no writer thread, no checkpoint on close, and an error instead of
    /// a new store when there is none.
    pub read_only: bool,
    /// Free space (bytes) kept on the data directory's filesystem. A group commit that would
    /// start below it is refused with [`StoreError::DiskFull`] and nothing is written; appends
    /// resume by themselves once space returns.
    pub reserve_bytes: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            segment_max_records: 1 << 20,
            block_records: 8,
            dict_train_after: 4000,
            max_group_events: 2048,
            cache_bytes: 256 << 20,
            zstd_level: 3,
            signer: None,
            checkpoint_records: 100_000,
            checkpoint_interval: std::time::Duration::from_secs(60),
            read_only: false,
            reserve_bytes: DEFAULT_RESERVE,
        }
    }
}

/// An event ready to append: compressed, its blind index values and hashes computed. Produced
/// by [`Preparer::prepare`] on any thread, so the writer thread only seals and writes.
pub struct Prepared {
    account: AccountId,
    event_id: String,
    time: i64,
    dedup: Blind,
    hash: [u8; 32],
    postings: Vec<Blind>,
    compressed: Vec<u8>,
    dict_id: u32,
    sample: Option<Vec<u8>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("account", &self.account)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// What happened to one event of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored at this sequence number.
    Stored(u64),
    /// Already stored with the same bytes, at this sequence number.
    Duplicate(u64),
    /// Its (account, eventID) is already stored with different bytes; kept out.
    Conflict(u64),
}

/// The outcome of one append, in the order of the events given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub results: Vec<Appended>,
}

impl AppendOutcome {
    pub fn stored(&self) -> usize {
        self.count(|a| matches!(a, Appended::Stored(_)))
    }
    pub fn duplicates(&self) -> usize {
        self.count(|a| matches!(a, Appended::Duplicate(_)))
    }
    pub fn conflicts(&self) -> usize {
        self.count(|a| matches!(a, Appended::Conflict(_)))
    }
    fn count(&self, f: impl Fn(&Appended) -> bool) -> usize {
        self.results.iter().filter(|a| f(a)).count()
    }
}

/// Counts of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub segments: u64,
    pub accounts: usize,
}

struct SegmentInfo {
    account: AccountId,
    wrapped: WrappedKey,
}

struct Dicts {
    current: u32,
    raw: HashMap<u32, Arc<Vec<u8>>>,
    decoders: HashMap<u32, Arc<zstd::dict::DecoderDictionary<'static>>>,
}

struct Shared {
    /// The checkpoint origin line: `orgtrail/<store id>`.
    origin: String,
    /// Unique per opened ledger in this process (never reused, unlike an address).
    instance: u64,
    path: PathBuf,
    /// The open sled database; `None` while the writer reopens it after a write failure (sled
    /// keeps failing every operation once one of its writes has failed).
    files: RwLock<Option<Files>>,
    health: Mutex<Health>,
    provider: Arc<dyn KeyProvider>,
    blinder: BlindIndexer,
    index: RwLock<Index>,
    segments: RwLock<HashMap<u64, SegmentInfo>>,
    keys: Mutex<HashMap<u64, Arc<DataKey>>>,
    dicts: RwLock<Dicts>,
    dict_version: AtomicU32,
    cfg: LedgerConfig,
}

#[derive(Clone)]
struct Files {
    db: sled::Db,
    tree: sled::Tree,
}

impl Shared {
    fn files(&self) -> Result<Files, StoreError> {
        let g = self.files.read().map_err(|_| StoreError::WriterGone)?;
        g.clone().ok_or_else(|| StoreError::Recovering {
            reason: self.fault_reason(),
        })
    }
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.files()?.tree)
    }
    fn fault_reason(&self) -> String {
        match self.health.lock().map(|h| h.clone()) {
            Ok(Health::Faulted { reason }) => reason,
            _ => "reopening the store".into(),
        }
    }
    fn set_health(&self, h: Health) {
        if let Ok(mut g) = self.health.lock() {
            *g = h;
        }
    }
    /// Bytes free for this process on the data directory's filesystem.
    fn free_bytes(&self) -> Result<u64, StoreError> {
        free_bytes(&self.path)
    }
    /// Refuses when the filesystem is below the reserve.
    fn check_space(&self) -> Result<(), StoreError> {
        let reserve = self.cfg.reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < reserve {
            return Err(StoreError::DiskFull {
                path: self.path.display().to_string(),
                free,
                reserve,
            });
        }
        Ok(())
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        StoreError::Sled(sled::Error::Io(std::io::Error::other(format!(
            "cannot read free space of {}: {e}",
            path.display()
        ))))
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

struct Job {
    events: Vec<Prepared>,
    /// Write a checkpoint with this group even if none is due.
    checkpoint: bool,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The append-only ledger. Cheap to share (`Arc`); appends go through one writer thread that
/// commits in groups and answers only after the group is durable.
pub struct Ledger {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Receives once the writer thread has finished.
    writer: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// Opens the sled database of a store.
///
/// sled takes an exclusive lock on its files, and a sled instance just dropped in this process
/// can keep it for a moment while its I/O threads finish (sled's own tests wait for it). So a
/// lock held elsewhere is waited for, up to 3 seconds, before the store is reported as in use.
pub fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut wait = std::time::Duration::from_millis(5);
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: dir.display().to_string(),
                    });
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn be_u64(v: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("meta value is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(a))
}

fn record_aad(segment: u64, seq: u64, account: &AccountId, dict: u32) -> [u8; 47] {
    let mut aad = [0u8; 47];
    aad[..15].copy_from_slice(b"orgtrail/rec/v1");
    aad[15..23].copy_from_slice(&segment.to_be_bytes());
    aad[23..31].copy_from_slice(&seq.to_be_bytes());
    aad[31..43].copy_from_slice(account.as_str().as_bytes());
    aad[43..47].copy_from_slice(&dict.to_be_bytes());
    aad
}

fn segment_context(segment: u64, account: &AccountId) -> Vec<u8> {
    let mut c = b"segment/".to_vec();
    c.extend_from_slice(&segment.to_be_bytes());
    c.extend_from_slice(account.as_str().as_bytes());
    c
}

const BLIND_KEY_CONTEXT: &[u8] = b"blind-index-key";

fn encode_segment(account: &AccountId, day: i64, created: i64, wrapped: &WrappedKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 12 + 16 + WRAPPED_LEN);
    v.push(1);
    v.extend_from_slice(account.as_str().as_bytes());
    v.extend_from_slice(&day.to_be_bytes());
    v.extend_from_slice(&created.to_be_bytes());
    v.extend_from_slice(&wrapped.to_bytes());
    v
}

pub(crate) fn decode_segment(v: &[u8]) -> Result<(AccountId, i64, i64, WrappedKey), StoreError> {
    let mut r = Reader::new(v, "segment");
    if r.u8()? != 1 {
        return Err(StoreError::Corrupt("unknown segment version".into()));
    }
    let acct = std::str::from_utf8(r.take(12)?)
        .ok()
        .and_then(|s| s.parse::<AccountId>().ok())
        .ok_or_else(|| StoreError::Corrupt("segment account".into()))?;
    let day = r.i64()?;
    let created = r.i64()?;
    let wrapped = WrappedKey::from_bytes(r.take(WRAPPED_LEN)?)?;
    Ok((acct, day, created, wrapped))
}

/// The in-memory state of a store, read from its files up to sequence number `end`.
struct Loaded {
    segments: HashMap<u64, SegmentInfo>,
    dicts: Dicts,
    index: Index,
    next_seq: u64,
}

fn load(tree: &sled::Tree, provider: &dyn KeyProvider, end: u64) -> Result<Loaded, StoreError> {
    // Segments.
    let mut segments = HashMap::new();
    for kv in tree.scan_prefix([SEGMENT]) {
        let (k, v) = kv?;
        let id = be_u64(&k[1..])?;
        let (account, _, _, wrapped) = decode_segment(&v)?;
        segments.insert(id, SegmentInfo { account, wrapped });
    }
    // Check the keyring opens the newest segment, before anything else happens.
    if let Some((id, s)) = segments.iter().max_by_key(|(id, _)| **id) {
        provider.unwrap(&s.wrapped, &segment_context(*id, &s.account))?;
    }

    // Dictionaries.
    let mut dicts = Dicts {
        current: 0,
        raw: HashMap::new(),
        decoders: HashMap::new(),
    };
    for kv in tree.scan_prefix(meta_key("dict/")) {
        let (k, v) = kv?;
        let id_bytes: [u8; 4] = k[6..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("dictionary key".into()))?;
        let id = u32::from_be_bytes(id_bytes);
        let plain = open_dict(provider, id, &v)?;
        dicts
            .decoders
            .insert(id, Arc::new(zstd::dict::DecoderDictionary::copy(&plain)));
        dicts.raw.insert(id, Arc::new(plain));
        dicts.current = dicts.current.max(id);
    }

    // Index chunks, up to the end of the whole log (a read-only open leaves a torn tail be).
    let next_seq = end + 1;
    let mut index = Index::default();
    for (_, s) in segments.iter() {
        index.accounts.insert(s.account);
    }
    for kv in tree.range(key_bytes(CHUNK, 0)..=key_bytes(CHUNK, end)) {
        let (_, v) = kv?;
        load_chunk(&v, &mut index)?;
    }
    if index.times.len() as u64 + 1 != next_seq {
        return Err(StoreError::Corrupt(format!(
            "index chunks hold {} events but the log's next sequence number is {next_seq}",
            index.times.len()
        )));
    }
    // The Merkle log, from the stored leaf hashes.
    for kv in tree.range(key_bytes(HASHES, 0)..=key_bytes(HASHES, end)) {
        let (k, v) = kv?;
        let first = be_u64(&k[1..])?;
        if first != index.tree.size() + 1 {
            return Err(StoreError::Corrupt(format!(
                "leaf hashes of group {first} do not follow leaf {}",
                index.tree.size()
            )));
        }
        let mut r = Reader::new(&v, "leaf hashes");
        while !r.done() {
            index.tree.push(r.array()?);
        }
    }
    if index.tree.size() + 1 != next_seq {
        return Err(StoreError::Corrupt(format!(
            "the Merkle log holds {} leaves but the log's next sequence number is {next_seq}",
            index.tree.size()
        )));
    }
    Ok(Loaded {
        segments,
        dicts,
        index,
        next_seq,
    })
}

impl Ledger {
    /// Opens (or creates) the store in `dir` with keys from `provider`. Cuts a torn tail that
    /// an interrupted write left (see the `recover` module; a read-only open skips it without
    /// writing), reads every index chunk to rebuild the in-memory index, and checks that the key
    /// provider can open the store before anything is written.
    pub fn open(
        dir: &Path,
        provider: Arc<dyn KeyProvider>,
        cfg: LedgerConfig,
    ) -> Result<Self, StoreError> {
        let path_s = dir.display().to_string();
        if cfg.read_only && !dir.join("conf").exists() {
            return Err(StoreError::NoStore { path: path_s });
        }
        crate::recover::remove_unfinished_snapshots(dir)?;
        let db = open_sled(dir, cfg.cache_bytes)?;
        let tree = db.open_tree("ledger")?;
        // Format.
        match tree.get(meta_key("format"))? {
            Some(v) => {
                let found = u32::try_from(be_u64(&v)?).unwrap_or(u32::MAX);
                if found != FORMAT_VERSION {
                    return Err(StoreError::Format {
                        path: path_s,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
            None => {
                if tree.iter().next().is_some() {
                    return Err(StoreError::Corrupt("store has data but no format".into()));
                }
            }
        }
        // The blind index key: wrapped by the master key, created with the store.
        let blind_key: Zeroizing<[u8; 32]> = match tree.get(meta_key("blind_key"))? {
            Some(w) => provider.unwrap(&WrappedKey::from_bytes(&w)?, BLIND_KEY_CONTEXT)?,
            None if cfg.read_only => return Err(StoreError::NoStore { path: path_s }),
            None => {
                let k = BlindIndexer::generate_key()?;
                let wrapped = provider.wrap(&k, BLIND_KEY_CONTEXT)?;
                let mut b = sled::Batch::default();
                b.insert(
                    meta_key("format"),
                    u64::from(FORMAT_VERSION).to_be_bytes().to_vec(),
                );
                b.insert(meta_key("blind_key"), wrapped.to_bytes());
                let mut id = [0u8; 16];
                orgtrail_crypto::random_bytes(&mut id)?;
                let id_hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                b.insert(meta_key("store_id"), id_hex.into_bytes());
                tree.apply_batch(b)?;
                db.flush()?;
                k
            }
        };
        let blinder = BlindIndexer::new(&blind_key);
        let plan = crate::recover::plan(&tree)?;
        if !cfg.read_only {
            crate::recover::apply(&tree, &db, &plan)?;
        }
        let loaded = load(&tree, provider.as_ref(), plan.end)?;
        let origin = match tree.get(meta_key("store_id"))? {
            Some(id) => format!("orgtrail/{}", String::from_utf8_lossy(&id)),
            None => return Err(StoreError::Corrupt("store has no id".into())),
        };

        let dict_version = AtomicU32::new(loaded.dicts.current);
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let read_only = cfg.read_only;
        let next_seq = loaded.next_seq;
        let shared = Arc::new(Shared {
            origin,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            path: dir.to_owned(),
            files: RwLock::new(Some(Files { db, tree })),
            health: Mutex::new(Health::Ready),
            provider,
            blinder,
            index: RwLock::new(loaded.index),
            segments: RwLock::new(loaded.segments),
            keys: Mutex::new(HashMap::new()),
            dicts: RwLock::new(loaded.dicts),
            dict_version,
            cfg,
        });
        if read_only {
            return Ok(Ledger {
                shared,
                tx: Mutex::new(None),
                writer: Mutex::new(None),
            });
        }
        // A few batches wait for the writer (it commits whatever is queued as one group):
        // enough to keep it busy, few enough that queued events do not pile up in memory.
        let (tx, rx) = mpsc::channel::<Job>(8);
        let writer_shared = shared.clone();
        let mut state = WriterState::load(&writer_shared, next_seq)?;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("orgtrail-ledger-writer".into())
            .spawn(move || {
                state.run(&writer_shared, rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Ledger {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(done_rx)),
        })
    }

    /// Whether appends are taken now. A disk-full state is checked again against the
    /// filesystem, so readiness returns as soon as space does.
    pub fn health(&self) -> Health {
        let h = self
            .shared
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or(Health::Faulted {
                reason: "the ledger's state lock is poisoned".into(),
            });
        if let Health::DiskFull { .. } = h {
            match self.shared.check_space() {
                Ok(()) => return Health::Ready,
                Err(StoreError::DiskFull { free, reserve, .. }) => {
                    return Health::DiskFull { free, reserve };
                }
                Err(_) => {}
            }
        }
        h
    }

    /// A per-thread preparer (it owns a zstd compressor).
    pub fn preparer(&self) -> Preparer {
        Preparer {
            shared: self.shared.clone(),
            dict_id: u32::MAX,
            compressor: None,
            cache: (0..Attr::COUNT).map(|_| HashMap::new()).collect(),
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.tx
            .lock()
            .map_err(|_| StoreError::WriterGone)?
            .clone()
            .ok_or(StoreError::WriterGone)
    }

    /// Appends events; answers once they are durable. For async callers.
    pub async fn append(&self, events: Vec<Prepared>) -> Result<AppendOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Job {
                events,
                checkpoint: false,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues an append from a thread that is not running an async runtime, without waiting
    /// for it: the receiver answers once the events are durable. Lets a bulk importer keep
    /// preparing the next batch while the writer commits this one.
    pub fn submit_blocking(
        &self,
        events: Vec<Prepared>,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        self.submit_job_blocking(events, false)
    }

    fn submit_job_blocking(
        &self,
        events: Vec<Prepared>,
        checkpoint: bool,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .blocking_send(Job {
                events,
                checkpoint,
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Appends events from a thread that is not running an async runtime.
    pub fn append_blocking(&self, events: Vec<Prepared>) -> Result<AppendOutcome, StoreError> {
        self.submit_blocking(events)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Stops the writer after the appends already queued, and flushes.
    pub fn close(&self) -> Result<(), StoreError> {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let done = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(done) = done
            && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done.recv_timeout(CLOSE_TIMEOUT)
        {
            // A write stuck in the filesystem (a full or failing disk) must not hold shutdown:
            // everything acknowledged is already durable, and the next open cuts any torn tail.
            tracing::error!(
                seconds = CLOSE_TIMEOUT.as_secs(),
                "the ledger writer did not finish in time (a write is stuck); closing without it"
            );
            return Ok(());
        }
        if let Ok(files) = self.shared.files() {
            files.db.flush()?;
        }
        Ok(())
    }

    /// The checkpoint origin of this store: `orgtrail/<store id>`.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    fn tree_state(&self) -> Result<TreeState, StoreError> {
        Ok(self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .tree
            .clone())
    }

    /// The number of leaves of the Merkle log (= events stored) and its root.
    pub fn tree_head(&self) -> Result<(u64, Hash), StoreError> {
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        Ok((idx.tree.size(), idx.tree.frontier.root()))
    }

    /// The root of the log when it held `size` events.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let state = self.tree_state()?;
        if size > state.size() {
            return Err(StoreError::Corrupt(format!(
                "the log holds {} events, fewer than {size}",
                state.size()
            )));
        }
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        StoreSubtrees::new(&state, &self.shared.tree()?).subtree(0, size)
    }

    /// The inclusion proof of the event at `seq` in the log of `size` events.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let state = self.tree_state()?;
        if size > state.size() || seq == 0 || seq > size {
            return Err(StoreError::Corrupt(format!(
                "no event {seq} in a log of {size} (it holds {})",
                state.size()
            )));
        }
        merkle::inclusion_proof(
            &mut StoreSubtrees::new(&state, &self.shared.tree()?),
            seq - 1,
            size,
        )
        .map_err(proof_error)
    }

    /// The consistency proof between the log at `first` and at `second` events.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StoreError> {
        let state = self.tree_state()?;
        if second > state.size() {
            return Err(StoreError::Corrupt(format!(
                "the log holds {} events, fewer than {second}",
                state.size()
            )));
        }
        merkle::consistency_proof(
            &mut StoreSubtrees::new(&state, &self.shared.tree()?),
            first,
            second,
        )
        .map_err(proof_error)
    }

    /// The stored leaf hash of the event at `seq`.
    pub fn leaf(&self, seq: u64) -> Result<Hash, StoreError> {
        crate::tree::read_leaves(&self.shared.tree()?, seq, 1)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("leaf hash {seq} is missing")))
    }

    /// Stored checkpoints, oldest first: (tree size, signed note).
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.shared.tree()?.scan_prefix([CHECKPOINT]) {
            let (k, v) = kv?;
            out.push((be_u64(&k[1..])?, String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    /// The newest stored checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.shared.tree()?.scan_prefix([CHECKPOINT]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((
                    be_u64(&k[1..])?,
                    String::from_utf8_lossy(&v).into_owned(),
                )))
            }
            None => Ok(None),
        }
    }

    /// Makes the writer sign a checkpoint of everything stored so far (if anything is new since
    /// the last one), then returns the newest checkpoint. Needs a signer in the config.
    pub fn checkpoint_now_blocking(&self) -> Result<Option<(u64, String)>, StoreError> {
        if self.shared.cfg.signer.is_none() {
            return Err(StoreError::NoSigner);
        }
        self.submit_job_blocking(Vec::new(), true)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)??;
        self.latest_checkpoint()
    }

    /// Every stored leaf hash, in order.
    pub(crate) fn all_leaves(&self) -> Result<Vec<Hash>, StoreError> {
        let n = self.stats().events;
        if n == 0 {
            return Ok(Vec::new());
        }
        crate::tree::read_leaves(&self.shared.tree()?, 1, n)
    }

    /// Record blocks must cover sequence numbers 1..=n exactly, in order.
    pub(crate) fn record_layout_problems(&self, n: u64) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut expected = 1u64;
        for kv in self.shared.tree()?.scan_prefix([RECORDS]) {
            let (k, v) = kv?;
            let first = be_u64(&k[1..])?;
            let mut r = Reader::new(&v, "record block");
            let _version = r.u8()?;
            let count = u64::from(r.u16()?);
            if first > n {
                problems.push(format!(
                    "records {first}..{} lie beyond the log's {n} events: they were inserted",
                    first + count - 1
                ));
            } else if first > expected {
                problems.push(format!("records {expected}..{} are missing", first - 1));
            } else if first < expected {
                problems.push(format!(
                    "records at {first} overlap records before {expected}: they were inserted"
                ));
            }
            expected = expected.max(first + count);
        }
        if expected <= n {
            problems.push(format!("records {expected}..{n} are missing"));
        }
        Ok(problems)
    }

    /// Checks that the dedup, time and attribute indexes hold the record at `seq` as they must.
    pub(crate) fn index_problems(
        &self,
        seq: u64,
        event: &CloudTrailEvent,
        account: AccountId,
        cache: &mut HashMap<(Attr, String), Blind>,
        expected_postings: &mut u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let f = event.fields();
        let b = &self.shared.blinder;
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        let dedup = dedup_blind(b, &account, &f.event_id);
        let h = sha256(event.bytes());
        match idx.dedup.get(&dedup) {
            Some((s, h8)) if *s == seq && h8[..] == h[..8] => {}
            _ => problems.push(format!(
                "record {seq}: its dedup entry is missing or points elsewhere"
            )),
        }
        if idx.time_of(seq) != Some(f.event_time.millis()) {
            problems.push(format!(
                "record {seq}: the time index disagrees with its eventTime"
            ));
        }
        let mut seen: Vec<Blind> = Vec::new();
        for (attr, value) in attribute_values(f, &account) {
            let p = if cacheable(attr) {
                if cache.len() > BLIND_CACHE_MAX {
                    cache.clear();
                }
                *cache
                    .entry((attr, value.to_owned()))
                    .or_insert_with(|| b.blind(attr.tag(), value.as_bytes()))
            } else {
                b.blind(attr.tag(), value.as_bytes())
            };
            if seen.contains(&p) {
                continue;
            }
            seen.push(p);
            let present = idx.postings.get(&p).is_some_and(|l| l.contains(seq));
            if !present {
                problems.push(format!("record {seq}: missing from the {attr:?} index"));
            }
        }
        *expected_postings += seen.len() as u64;
        Ok(problems)
    }

    /// Entries in the attribute index.
    pub(crate) fn posting_count(&self) -> Result<u64, StoreError> {
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        Ok(idx
            .postings
            .values()
            .map(crate::postings::Postings::len)
            .sum())
    }

    /// Counts.
    pub fn stats(&self) -> Stats {
        let (events, accounts) = self
            .shared
            .index
            .read()
            .map(|i| (i.times.len() as u64, i.accounts.len()))
            .unwrap_or((0, 0));
        let segments = self
            .shared
            .segments
            .read()
            .map(|s| s.len() as u64)
            .unwrap_or(0);
        Stats {
            events,
            segments,
            accounts,
        }
    }

    /// Runs a query: newest first, one page. Blocking (reads sled); async callers use
    /// `spawn_blocking`.
    pub fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = q.page_size();
        let after = q.page_token.as_deref().map(Cursor::decode).transpose()?;
        let hits = self.select(q, after, limit + 1)?;
        let more = hits.len() > limit;
        let mut events = Vec::with_capacity(limit.min(hits.len()));
        for &(_, seq) in hits.iter().take(limit) {
            events.push(self.read(seq)?);
        }
        Ok(Page::new(events, more))
    }

    /// Counts the events matching `q` (paging aside), grouped. Reads and opens every matching
    /// event: about a microsecond or two each. Blocking.
    pub fn count(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        self.count_at_most(q, by, max_groups, usize::MAX)
    }

    /// Like [`Ledger::count`], decrypting at most `max_events` matching events, the newest:
    /// past that the counts cover only those, and `limit_hit` says so.
    pub fn count_at_most(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
        max_events: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        let mut hits = self.select(q, None, max_events.saturating_add(1))?;
        let limit_hit = hits.len() > max_events;
        hits.truncate(max_events);
        let mut c = crate::query::Counter::default();
        for &(_, seq) in &hits {
            let e = self.read(seq)?;
            let ev = orgtrail_core::CloudTrailEvent::parse(e.bytes).map_err(|err| {
                StoreError::Corrupt(format!("record {seq} no longer parses: {err}"))
            })?;
            c.add(by, &ev, &e.account);
        }
        let mut counts = c.finish(max_groups);
        counts.limit_hit = limit_hit;
        Ok(counts)
    }

    /// The (time, seq) of up to `limit` events matching `q`, newest first, after `after`.
    fn select(
        &self,
        q: &Query,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let start = q.start.map_or(i64::MIN, Timestamp::millis);
        let end = q.end.map_or(i64::MAX, Timestamp::millis);
        let hits = {
            let idx = self
                .shared
                .index
                .read()
                .map_err(|_| StoreError::WriterGone)?;
            use crate::postings::Postings;
            let empty = Postings::default();
            let mut lists: Vec<&Postings> = Vec::with_capacity(q.filters.len() + 2);
            for (attr, value) in &q.filters {
                let b = self.shared.blinder.blind(attr.tag(), value.as_bytes());
                lists.push(idx.postings.get(&b).unwrap_or(&empty));
            }
            let mut id_seqs: Vec<u64> = Vec::new();
            if let Some(id) = &q.event_id {
                let accounts: Vec<AccountId> = idx.accounts.iter().copied().collect();
                for a in accounts {
                    let b = dedup_blind(&self.shared.blinder, &a, id);
                    if let Some((seq, _)) = idx.dedup.get(&b) {
                        id_seqs.push(*seq);
                    }
                }
                id_seqs.sort_unstable();
            }
            id_seqs.dedup();
            let id_list = Postings::from_sorted(id_seqs);
            if q.event_id.is_some() {
                lists.push(&id_list);
            }
            // Any of the allowed accounts: the union of their postings.
            let allowed = if q.accounts.is_empty() {
                None
            } else {
                let of: Vec<&Postings> = q
                    .accounts
                    .iter()
                    .filter_map(|a| {
                        let b = self
                            .shared
                            .blinder
                            .blind(Attr::Account.tag(), a.as_str().as_bytes());
                        idx.postings.get(&b)
                    })
                    .collect();
                Some(if of.is_empty() {
                    Postings::default()
                } else {
                    Postings::union(&of)
                })
            };
            if let Some(a) = &allowed {
                lists.push(a);
            }
            idx.select(&lists, start, end, after, limit)
        };
        Ok(hits)
    }

    /// The event with this eventID in this account, if stored.
    pub fn get(
        &self,
        account: &AccountId,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let seq = {
            let idx = self
                .shared
                .index
                .read()
                .map_err(|_| StoreError::WriterGone)?;
            let b = dedup_blind(&self.shared.blinder, account, event_id);
            idx.dedup.get(&b).map(|(s, _)| *s)
        };
        seq.map(|s| self.read(s)).transpose()
    }

    /// Reads and opens the record at `seq`.
    pub fn read(&self, seq: u64) -> Result<StoredEvent, StoreError> {
        let sh = &self.shared;
        let (block_key, block) = sh
            .tree()?
            .range(key(RECORDS, 0)..=key(RECORDS, seq))
            .next_back()
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))??;
        if block_key.first() != Some(&RECORDS) {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let first = be_u64(&block_key[1..])?;
        let mut r = Reader::new(&block, "record block");
        if r.u8()? != 1 {
            return Err(StoreError::Corrupt(format!(
                "record block {first}: unknown version"
            )));
        }
        let count = u64::from(r.u16()?);
        if seq >= first + count {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let mut rec = None;
        for i in 0..count {
            let segment = r.u64()?;
            let dict = r.u32()?;
            let nonce: [u8; NONCE_LEN] = r.array()?;
            let len = r.u32()? as usize;
            let ct = r.take(len)?;
            if first + i == seq {
                rec = Some((segment, dict, nonce, ct));
                break;
            }
        }
        let (segment, dict, nonce, ct) =
            rec.ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))?;
        let (account, key) = self.segment_key(segment)?;
        let compressed = key
            .open(&nonce, &record_aad(segment, seq, &account, dict), ct)
            .map_err(|source| StoreError::RecordOpen { seq, source })?;
        let bytes = self.decompress(dict, &compressed)?;
        let time = sh
            .index
            .read()
            .ok()
            .and_then(|i| i.time_of(seq))
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} has no index entry")))?;
        Ok(StoredEvent {
            seq,
            account,
            time: Timestamp(time),
            bytes,
        })
    }

    /// Calls `f` with every record in `first..=last`, in order, reading each block once: the
    /// record's (account, bytes), or why it could not be read. Blocks that are missing or out of
    /// place are reported by `record_layout_problems`, not here.
    pub(crate) fn for_each_record(
        &self,
        first: u64,
        last: u64,
        mut f: impl FnMut(u64, Result<(AccountId, Vec<u8>), StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sh = &self.shared;
        let tree = sh.tree()?;
        let start = match tree
            .range(key(RECORDS, 0)..=key(RECORDS, first))
            .next_back()
        {
            Some(kv) => kv?.0.to_vec(),
            None => key(RECORDS, first).to_vec(),
        };
        let mut next = first;
        for kv in tree.range(start..key(RECORDS, last.saturating_add(1)).to_vec()) {
            let (k, block) = kv?;
            let block_first = be_u64(&k[1..])?;
            let mut r = Reader::new(&block, "record block");
            if r.u8()? != 1 {
                continue;
            }
            let count = u64::from(r.u16()?);
            for i in 0..count {
                let seq = block_first + i;
                let segment = r.u64()?;
                let dict = r.u32()?;
                let nonce: [u8; NONCE_LEN] = r.array()?;
                let len = r.u32()? as usize;
                let ct = r.take(len)?;
                if seq < next || seq > last {
                    continue;
                }
                while next < seq {
                    f(
                        next,
                        Err(StoreError::Corrupt(format!("record {next} is missing"))),
                    )?;
                    next += 1;
                }
                let opened = self.segment_key(segment).and_then(|(account, key)| {
                    let compressed = key
                        .open(&nonce, &record_aad(segment, seq, &account, dict), ct)
                        .map_err(|source| StoreError::RecordOpen { seq, source })?;
                    Ok((account, self.decompress(dict, &compressed)?))
                });
                f(seq, opened)?;
                next = seq + 1;
            }
        }
        while next <= last {
            f(
                next,
                Err(StoreError::Corrupt(format!("record {next} is missing"))),
            )?;
            next += 1;
        }
        Ok(())
    }

    fn segment_key(&self, segment: u64) -> Result<(AccountId, Arc<DataKey>), StoreError> {
        let sh = &self.shared;
        let account = sh
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .get(&segment)
            .map(|s| s.account)
            .ok_or_else(|| StoreError::Corrupt(format!("segment {segment} is missing")))?;
        if let Some(k) = sh.keys.lock().ok().and_then(|k| k.get(&segment).cloned()) {
            return Ok((account, k));
        }
        let wrapped = sh
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .get(&segment)
            .map(|s| s.wrapped.clone())
            .ok_or_else(|| StoreError::Corrupt(format!("segment {segment} is missing")))?;
        let key = Arc::new(
            sh.provider
                .decrypt_data_key(&wrapped, &segment_context(segment, &account))?,
        );
        if let Ok(mut keys) = sh.keys.lock() {
            keys.insert(segment, key.clone());
        }
        Ok((account, key))
    }

    fn decompress(&self, dict: u32, data: &[u8]) -> Result<Vec<u8>, StoreError> {
        let err = |e: std::io::Error| StoreError::Compression(e.to_string());
        let store_id = self.shared.instance;
        DCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            let fresh = !matches!(&*slot, Some((s, d, _)) if *s == store_id && *d == dict);
            if fresh {
                let dec = if dict == 0 {
                    zstd::bulk::Decompressor::new()
                } else {
                    let raw = self
                        .shared
                        .dicts
                        .read()
                        .map_err(|_| StoreError::WriterGone)?
                        .raw
                        .get(&dict)
                        .cloned()
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("zstd dictionary {dict} is missing"))
                        })?;
                    zstd::bulk::Decompressor::with_dictionary(&raw)
                }
                .map_err(err)?;
                *slot = Some((store_id, dict, dec));
            }
            match slot.as_mut() {
                Some((_, _, dec)) => dec.decompress(data, MAX_EVENT_BYTES).map_err(err),
                None => Err(StoreError::Compression("no decompressor".into())),
            }
        })
    }

    /// Rewraps every stored data key (and the blind index key) under the provider's current
    /// master key version. Ciphertext is not touched. Returns how many keys were rewrapped.
    pub fn rewrap(&self) -> Result<usize, StoreError> {
        let sh = &self.shared;
        let current = sh.provider.current_version();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        let mut updated = Vec::new();
        for kv in sh.tree()?.scan_prefix([SEGMENT]) {
            let (k, v) = kv?;
            let id = be_u64(&k[1..])?;
            let (account, day, created, wrapped) = decode_segment(&v)?;
            if wrapped.master_version == current {
                continue;
            }
            let new = sh
                .provider
                .rewrap(&wrapped, &segment_context(id, &account))?;
            batch.insert(&k[..], encode_segment(&account, day, created, &new));
            updated.push((id, account, new));
            n += 1;
        }
        for kv in sh.tree()?.scan_prefix(meta_key("dict/")) {
            let (k, v) = kv?;
            if v.len() < WRAPPED_LEN {
                return Err(StoreError::Corrupt("dictionary value too short".into()));
            }
            let wrapped = WrappedKey::from_bytes(&v[..WRAPPED_LEN])?;
            if wrapped.master_version == current {
                continue;
            }
            let id_bytes: [u8; 4] = k[6..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("dictionary key".into()))?;
            let new = sh
                .provider
                .rewrap(&wrapped, &dict_context(u32::from_be_bytes(id_bytes)))?;
            let mut nv = new.to_bytes();
            nv.extend_from_slice(&v[WRAPPED_LEN..]);
            batch.insert(&k[..], nv);
            n += 1;
        }
        if let Some(w) = sh.tree()?.get(meta_key("blind_key"))? {
            let wrapped = WrappedKey::from_bytes(&w)?;
            if wrapped.master_version != current {
                let new = sh.provider.rewrap(&wrapped, BLIND_KEY_CONTEXT)?;
                batch.insert(meta_key("blind_key"), new.to_bytes());
                n += 1;
            }
        }
        let files = sh.files()?;
        files.tree.apply_batch(batch)?;
        files.db.flush()?;
        if let Ok(mut segs) = sh.segments.write() {
            for (id, account, wrapped) in updated {
                segs.insert(id, SegmentInfo { account, wrapped });
            }
        }
        Ok(n)
    }

    /// The master key versions the store's wrapped keys are under, with how many keys each.
    pub fn key_versions(&self) -> Result<Vec<(u32, usize)>, StoreError> {
        let mut m: HashMap<u32, usize> = HashMap::new();
        for s in self
            .shared
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .values()
        {
            *m.entry(s.wrapped.master_version).or_default() += 1;
        }
        if let Some(w) = self.shared.tree()?.get(meta_key("blind_key"))? {
            *m.entry(WrappedKey::from_bytes(&w)?.master_version)
                .or_default() += 1;
        }
        for kv in self.shared.tree()?.scan_prefix(meta_key("dict/")) {
            let (_, v) = kv?;
            let w = v
                .get(..WRAPPED_LEN)
                .ok_or_else(|| StoreError::Corrupt("dictionary value too short".into()))?;
            *m.entry(WrappedKey::from_bytes(w)?.master_version)
                .or_default() += 1;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Stored checkpoints with `from <= size <= to`, at most `limit`, oldest first (or newest
    /// first with `newest_first`). One range read: the collector answers checkpoint requests and
    /// pages through them with it without scanning them all.
    pub fn checkpoints_between(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let tree = self.shared.tree()?;
        let range = tree.range(key(CHECKPOINT, from)..=key(CHECKPOINT, to));
        let mut out = Vec::new();
        let mut push = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(), StoreError> {
            let (k, v) = kv?;
            out.push((be_u64(&k[1..])?, String::from_utf8_lossy(&v).into_owned()));
            Ok(())
        };
        if newest_first {
            range.rev().take(limit).try_for_each(&mut push)?;
        } else {
            range.take(limit).try_for_each(&mut push)?;
        }
        Ok(out)
    }

    /// `count` stored leaf hashes from sequence number `first` (1-based), in order.
    pub fn leaves(&self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        crate::tree::read_leaves(&self.shared.tree()?, first, count)
    }
}

impl crate::EventStore for Ledger {
    fn append_events(
        &self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<AppendOutcome, StoreError> {
        let mut p = self.preparer();
        let prepared = events
            .iter()
            .map(|(e, a)| p.prepare(e, *a))
            .collect::<Result<Vec<_>, _>>()?;
        self.append_blocking(prepared)
    }

    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        Ledger::query(self, q)
    }

    fn count(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        Ledger::count(self, q, by, max_groups)
    }

    fn get(&self, account: &AccountId, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        Ledger::get(self, account, event_id)
    }

    fn stats(&self) -> Stats {
        Ledger::stats(self)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

thread_local! {
    /// A zstd decompression context per reading thread, kept for one (store, dictionary):
    /// creating one per record (and loading the dictionary into it) dominated lookups.
    static DCTX: std::cell::RefCell<Option<(u64, u32, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The (attribute, value) pairs an event is indexed under.
fn attribute_values<'a>(
    f: &'a orgtrail_core::EventFields,
    account: &'a AccountId,
) -> Vec<(Attr, &'a str)> {
    let mut v = Vec::with_capacity(12);
    v.push((Attr::Account, account.as_str()));
    if let Some(r) = &f.aws_region {
        v.push((Attr::Region, r.as_str()));
    }
    v.push((Attr::EventName, f.event_name.as_str()));
    v.push((Attr::EventSource, f.event_source.as_str()));
    if let Some(ro) = f.read_only {
        v.push((Attr::ReadOnly, if ro { "true" } else { "false" }));
    }
    if let Some(u) = f.username() {
        v.push((Attr::Username, u));
    }
    if let Some(k) = f
        .user_identity
        .as_ref()
        .and_then(|u| u.access_key_id.as_deref())
    {
        v.push((Attr::AccessKeyId, k));
    }
    if let Some(e) = &f.error_code {
        v.push((Attr::ErrorCode, e.as_str()));
    }
    for n in &f.resource_names {
        v.push((Attr::ResourceName, n.as_str()));
    }
    for t in f.resource_types() {
        v.push((Attr::ResourceType, t));
    }
    v
}

fn proof_error(e: merkle::ProofError<StoreError>) -> StoreError {
    match e {
        merkle::ProofError::Source(e) => e,
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn dedup_blind(b: &BlindIndexer, account: &AccountId, event_id: &str) -> Blind {
    let mut v = Vec::with_capacity(13 + event_id.len());
    v.extend_from_slice(account.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(event_id.as_bytes());
    b.blind(b"dedup", &v)
}

pub(crate) fn load_chunk(v: &[u8], index: &mut Index) -> Result<(), StoreError> {
    let mut r = Reader::new(v, "index chunk");
    if r.u8()? != 1 {
        return Err(StoreError::Corrupt("unknown index chunk version".into()));
    }
    let first = r.u64()?;
    let count = r.u32()? as u64;
    if first != index.times.len() as u64 + 1 {
        return Err(StoreError::Corrupt(format!(
            "index chunk at {first} does not follow {}",
            index.times.len()
        )));
    }
    for i in 0..count {
        let time = r.i64()?;
        let dedup: Blind = r.array()?;
        let hash8: [u8; 8] = r.array()?;
        index.publish(first + i, time, dedup, hash8);
    }
    let nacc = r.u16()?;
    for _ in 0..nacc {
        let a = std::str::from_utf8(r.take(12)?)
            .ok()
            .and_then(|s| s.parse::<AccountId>().ok())
            .ok_or_else(|| StoreError::Corrupt("index chunk account".into()))?;
        index.accounts.insert(a);
    }
    let nvals = r.u32()?;
    for _ in 0..nvals {
        let blind: Blind = r.array()?;
        let k = r.varint()?;
        let mut local = 0u64;
        for i in 0..k {
            let gap = r.varint()?;
            local = if i == 0 {
                gap
            } else {
                local.saturating_add(gap)
            };
            if local >= count {
                return Err(StoreError::Corrupt(
                    "index chunk posting out of range".into(),
                ));
            }
            index.post(blind, first + local);
        }
    }
    if !r.done() {
        return Err(StoreError::Corrupt("index chunk has trailing bytes".into()));
    }
    Ok(())
}

/// Prepares events for appending on the caller's thread.
pub struct Preparer {
    shared: Arc<Shared>,
    dict_id: u32,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Blind values of low-cardinality attributes (account, region, eventName, ...), which
    /// repeat in nearly every event: computing each HMAC once per thread is enough.
    cache: Vec<HashMap<String, Blind>>,
}

/// Attributes whose values repeat enough to cache their blind values.
fn cacheable(attr: Attr) -> bool {
    matches!(
        attr,
        Attr::Account
            | Attr::Region
            | Attr::EventName
            | Attr::EventSource
            | Attr::ReadOnly
            | Attr::ErrorCode
            | Attr::ResourceType
    )
}

const BLIND_CACHE_MAX: usize = 50_000;

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("dict_id", &self.dict_id)
            .finish_non_exhaustive()
    }
}

impl Preparer {
    /// Compresses the event and computes its blind index values, for `account` (the account
    /// the collector decided the event belongs to).
    pub fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<Prepared, StoreError> {
        let sh = &self.shared;
        let current = sh.dict_version.load(Ordering::Acquire);
        if self.compressor.is_none() || current != self.dict_id {
            let c = if current == 0 {
                zstd::bulk::Compressor::new(sh.cfg.zstd_level)
            } else {
                let raw = sh
                    .dicts
                    .read()
                    .map_err(|_| StoreError::WriterGone)?
                    .raw
                    .get(&current)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("current dictionary missing".into()))?;
                zstd::bulk::Compressor::with_dictionary(sh.cfg.zstd_level, &raw)
            }
            .map_err(|e| StoreError::Compression(e.to_string()))?;
            self.compressor = Some(c);
            self.dict_id = current;
        }
        let bytes = event.bytes();
        let mut compressed = match self.compressor.as_mut() {
            Some(c) => c
                .compress(bytes)
                .map_err(|e| StoreError::Compression(e.to_string()))?,
            None => return Err(StoreError::Compression("no compressor".into())),
        };
        // zstd sizes its output for the worst case (about the input's size); a prepared event
        // waits in the writer's queue, so it keeps only what it needs.
        compressed.shrink_to_fit();
        let f = event.fields();
        let b = &sh.blinder;
        let cache = &mut self.cache;
        let mut postings: Vec<Blind> = Vec::with_capacity(12);
        for (attr, value) in attribute_values(f, &account) {
            let v = if cacheable(attr) {
                let map = &mut cache[attr.index()];
                match map.get(value) {
                    Some(v) => *v,
                    None => {
                        let v = b.blind(attr.tag(), value.as_bytes());
                        if map.len() >= BLIND_CACHE_MAX {
                            map.clear();
                        }
                        map.insert(value.to_owned(), v);
                        v
                    }
                }
            } else {
                b.blind(attr.tag(), value.as_bytes())
            };
            if !postings.contains(&v) {
                postings.push(v);
            }
        }
        postings.shrink_to_fit();
        let hash = sha256(bytes);
        Ok(Prepared {
            account,
            time: f.event_time.millis(),
            dedup: dedup_blind(b, &account, &f.event_id),
            hash,
            postings,
            compressed,
            dict_id: self.dict_id,
            sample: (self.dict_id == 0).then(|| bytes.to_vec()),
            event_id: f.event_id.clone(),
        })
    }
}

/// (seq, eventTime, dedup blind, hash prefix, account, postings, leaf hash) of an event stored by a group.
type StoredEntry = (u64, i64, Blind, [u8; 8], AccountId, Vec<Blind>, Hash);

struct OpenSegment {
    id: u64,
    day: i64,
    count: u64,
    key: Arc<DataKey>,
}

struct WriterState {
    next_seq: u64,
    next_segment: u64,
    open: HashMap<AccountId, OpenSegment>,
    samples: Vec<Vec<u8>>,
    dict_failed: bool,
    /// A dictionary being trained on another thread.
    training: Option<std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>>,
    /// A trained dictionary not yet stored.
    pending_dict: Option<Vec<u8>>,
    /// The writer's copy of the Merkle frontier (the published one lags until a flush).
    frontier: Frontier,
    last_checkpoint_size: u64,
    last_checkpoint_at: std::time::Instant,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl WriterState {
    fn load(sh: &Shared, next_seq: u64) -> Result<Self, StoreError> {
        let next_segment = match sh.tree()?.get(meta_key("next_segment"))? {
            Some(v) => be_u64(&v)?,
            None => 1,
        };
        let frontier = sh
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .tree
            .frontier
            .clone();
        let last_checkpoint_size = match sh.tree()?.scan_prefix([CHECKPOINT]).next_back() {
            Some(kv) => be_u64(&kv?.0[1..])?,
            None => 0,
        };
        Ok(WriterState {
            next_seq,
            next_segment,
            open: HashMap::new(),
            samples: Vec::new(),
            dict_failed: false,
            training: None,
            pending_dict: None,
            frontier,
            last_checkpoint_size,
            last_checkpoint_at: std::time::Instant::now(),
        })
    }

    fn run(&mut self, sh: &Shared, mut rx: mpsc::Receiver<Job>) {
        let mut broken: Option<String> = None;
        loop {
            if let Some(reason) = broken.take() {
                // A write failed: sled fails every later operation, so the files are reopened
                // and reconciled (once the disk has room again). Until then every append is
                // answered at once with a retryable error, and reads wait for the reopen.
                match self.recover(sh) {
                    Ok(()) => {
                        tracing::info!("the store reopened after a write failure; appends resume");
                        sh.set_health(Health::Ready);
                    }
                    Err(e) => {
                        let reason = if matches!(e, StoreError::DiskFull { .. }) {
                            format!("{reason}; waiting for free space ({e})")
                        } else {
                            format!("{reason}; reopening failed: {e}")
                        };
                        sh.set_health(Health::Faulted {
                            reason: reason.clone(),
                        });
                        loop {
                            match rx.try_recv() {
                                Ok(job) => {
                                    let _ = job.reply.send(Err(StoreError::Recovering {
                                        reason: reason.clone(),
                                    }));
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => return,
                            }
                        }
                        std::thread::sleep(RECOVERY_POLL);
                        broken = Some(reason);
                        continue;
                    }
                }
            }
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut jobs = vec![first];
            let mut n: usize = jobs[0].events.len();
            while n < sh.cfg.max_group_events {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.events.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            // Below the reserve nothing is written: sled must never meet a full disk.
            match sh.check_space() {
                Ok(()) => {
                    let was_full = matches!(
                        sh.health.lock().map(|h| h.clone()),
                        Ok(Health::DiskFull { .. })
                    );
                    if was_full {
                        tracing::info!("free space is above the reserve again; appends resume");
                        sh.set_health(Health::Ready);
                    }
                }
                Err(e) => {
                    if let StoreError::DiskFull { free, reserve, .. } = &e {
                        let was_full = matches!(
                            sh.health.lock().map(|h| h.clone()),
                            Ok(Health::DiskFull { .. })
                        );
                        if !was_full {
                            tracing::error!(free, reserve, path = %sh.path.display(), "disk full: the data directory is below its free-space reserve; refusing appends until space returns");
                        }
                        sh.set_health(Health::DiskFull {
                            free: *free,
                            reserve: *reserve,
                        });
                    }
                    for job in jobs {
                        let _ = job.reply.send(Err(match &e {
                            StoreError::DiskFull {
                                path,
                                free,
                                reserve,
                            } => StoreError::DiskFull {
                                path: path.clone(),
                                free: *free,
                                reserve: *reserve,
                            },
                            other => StoreError::Recovering {
                                reason: other.to_string(),
                            },
                        }));
                    }
                    continue;
                }
            }
            match self.commit(sh, &mut jobs) {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = n, "ledger group commit failed; nothing of it was acknowledged");
                    let write_failed = matches!(e, StoreError::Write { .. } | StoreError::Sled(_));
                    let reason = e.to_string();
                    for job in jobs {
                        let _ = job.reply.send(Err(match &e {
                            StoreError::Write { .. } | StoreError::Sled(_) => {
                                StoreError::Recovering {
                                    reason: reason.clone(),
                                }
                            }
                            other => StoreError::Unavailable {
                                reason: format!("the group could not be stored: {other}"),
                            },
                        }));
                    }
                    if write_failed {
                        sh.set_health(Health::Faulted {
                            reason: reason.clone(),
                        });
                        broken = Some(reason);
                    }
                }
            }
        }
        if broken.is_some() {
            return;
        }
        // Clean shutdown: a checkpoint covering everything, if there is anything new.
        let Ok(files) = sh.files() else {
            return;
        };
        if sh.cfg.signer.is_some() && self.frontier.size() > self.last_checkpoint_size {
            let mut batch = sled::Batch::default();
            self.checkpoint(sh, &self.frontier.clone(), &mut batch);
            if let Err(e) = files
                .tree
                .apply_batch(batch)
                .and_then(|()| files.db.flush().map(|_| ()))
            {
                tracing::error!(error = %e, "writing the shutdown checkpoint failed");
            }
        }
        // Everything acknowledged was flushed with its group; a failure here loses nothing
        // acknowledged, but it is said.
        if let Err(e) = files.db.flush() {
            tracing::error!(error = %e, "the final flush at close failed");
        }
    }

    /// Reopens the store's files after a failed write, cuts the torn tail the failure left,
    /// reloads the in-memory state from what is durable, and starts over from there.
    fn recover(&mut self, sh: &Shared) -> Result<(), StoreError> {
        // Let go of the failed database first: its file lock must be released to reopen it.
        if let Ok(mut g) = sh.files.write() {
            *g = None;
        }
        sh.check_space()?;
        crate::recover::remove_unfinished_snapshots(&sh.path)?;
        let db = open_sled(&sh.path, sh.cfg.cache_bytes)?;
        let tree = db.open_tree("ledger")?;
        let plan = crate::recover::plan(&tree)?;
        crate::recover::apply(&tree, &db, &plan)?;
        let loaded = load(&tree, sh.provider.as_ref(), plan.end)?;
        *sh.index.write().map_err(|_| StoreError::WriterGone)? = loaded.index;
        *sh.segments.write().map_err(|_| StoreError::WriterGone)? = loaded.segments;
        sh.dict_version
            .store(loaded.dicts.current, Ordering::Release);
        *sh.dicts.write().map_err(|_| StoreError::WriterGone)? = loaded.dicts;
        *sh.files.write().map_err(|_| StoreError::WriterGone)? = Some(Files { db, tree });
        *self = WriterState::load(sh, loaded.next_seq)?;
        Ok(())
    }

    /// Adds a signed checkpoint of `frontier` to `batch`.
    fn checkpoint(&mut self, sh: &Shared, frontier: &Frontier, batch: &mut sled::Batch) {
        let Some(signer) = &sh.cfg.signer else {
            return;
        };
        let cp = Checkpoint {
            origin: sh.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            time_ms: now_ms(),
        };
        batch.insert(
            &key_bytes(CHECKPOINT, cp.size)[..],
            cp.sign(signer).into_bytes(),
        );
        self.last_checkpoint_size = cp.size;
        self.last_checkpoint_at = std::time::Instant::now();
    }

    fn segment_for(
        &mut self,
        sh: &Shared,
        account: AccountId,
        batch: &mut sled::Batch,
        new_segments: &mut Vec<(u64, SegmentInfo, Arc<DataKey>)>,
    ) -> Result<(u64, Arc<DataKey>), StoreError> {
        let now = now_ms();
        let day = now.div_euclid(86_400_000);
        if let Some(s) = self.open.get_mut(&account)
            && s.day == day
            && s.count < sh.cfg.segment_max_records
        {
            s.count += 1;
            return Ok((s.id, s.key.clone()));
        }
        let id = self.next_segment;
        self.next_segment += 1;
        let (key, wrapped) = sh
            .provider
            .generate_data_key(&segment_context(id, &account))?;
        let key = Arc::new(key);
        batch.insert(
            &key_bytes(SEGMENT, id)[..],
            encode_segment(&account, day, now, &wrapped),
        );
        new_segments.push((id, SegmentInfo { account, wrapped }, key.clone()));
        self.open.insert(
            account,
            OpenSegment {
                id,
                day,
                count: 1,
                key: key.clone(),
            },
        );
        Ok((id, key))
    }

    fn commit(&mut self, sh: &Shared, jobs: &mut [Job]) -> Result<Vec<AppendOutcome>, StoreError> {
        let saved_seq = self.next_seq;
        let saved_segment = self.next_segment;
        let saved_cp = (self.last_checkpoint_size, self.last_checkpoint_at);
        let saved_open: Vec<(AccountId, u64, u64)> =
            self.open.iter().map(|(a, s)| (*a, s.id, s.count)).collect();
        let r = self.commit_inner(sh, jobs);
        if r.is_err() {
            // Nothing was published; forget what this group reserved.
            self.next_seq = saved_seq;
            self.next_segment = saved_segment;
            (self.last_checkpoint_size, self.last_checkpoint_at) = saved_cp;
            self.open.retain(|a, s| {
                saved_open
                    .iter()
                    .find(|(b, id, _)| b == a && *id == s.id)
                    .map(|(_, _, c)| s.count = *c)
                    .is_some()
            });
        }
        r
    }

    fn commit_inner(
        &mut self,
        sh: &Shared,
        jobs: &mut [Job],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let first_seq = self.next_seq;
        let mut batch = sled::Batch::default();
        let mut new_segments = Vec::new();
        let mut pending: BlindMap<(u64, [u8; 8])> = BlindMap::default();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut stored: Vec<StoredEntry> = Vec::new();
        let mut block: Vec<u8> = Vec::new();
        let mut block_first = first_seq;
        let mut block_count: u16 = 0;
        {
            let idx = sh.index.read().map_err(|_| StoreError::WriterGone)?;
            for job in jobs.iter_mut() {
                let mut results = Vec::with_capacity(job.events.len());
                for ev in job.events.drain(..) {
                    let mut h8 = [0u8; 8];
                    h8.copy_from_slice(&ev.hash[..8]);
                    let existing = pending.get(&ev.dedup).or_else(|| idx.dedup.get(&ev.dedup));
                    if let Some(&(seq, other)) = existing {
                        if other == h8 {
                            results.push(Appended::Duplicate(seq));
                        } else {
                            tracing::warn!(account = %ev.account, seq, "eventID already stored with different bytes; kept out (conflict)");
                            results.push(Appended::Conflict(seq));
                        }
                        continue;
                    }
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let (segment, key) =
                        self.segment_for(sh, ev.account, &mut batch, &mut new_segments)?;
                    if block_count == 0 {
                        block.clear();
                        block.push(1);
                        block.extend_from_slice(&[0, 0]);
                        block_first = seq;
                    }
                    block.extend_from_slice(&segment.to_be_bytes());
                    block.extend_from_slice(&ev.dict_id.to_be_bytes());
                    let len_at = block.len() + NONCE_LEN;
                    block.extend_from_slice(&[0u8; NONCE_LEN + 4]);
                    let body_at = block.len();
                    let nonce = key.seal_into(
                        &record_aad(segment, seq, &ev.account, ev.dict_id),
                        &ev.compressed,
                        &mut block,
                    )?;
                    let body_len = u32::try_from(block.len() - body_at)
                        .map_err(|_| StoreError::Compression("record too large".into()))?;
                    block[len_at - NONCE_LEN..len_at].copy_from_slice(&nonce);
                    block[len_at..len_at + 4].copy_from_slice(&body_len.to_be_bytes());
                    block_count += 1;
                    if usize::from(block_count) >= sh.cfg.block_records {
                        block[1..3].copy_from_slice(&block_count.to_be_bytes());
                        batch.insert(&key_bytes(RECORDS, block_first)[..], block.clone());
                        block_count = 0;
                    }
                    if let Some(s) = ev.sample
                        && self.training.is_none()
                        && self.pending_dict.is_none()
                        && self.samples.len() < sh.cfg.dict_train_after
                    {
                        self.samples.push(s);
                    }
                    pending.insert(ev.dedup, (seq, h8));
                    let leaf = event_leaf(seq, ev.account.as_str(), &ev.event_id, &ev.hash);
                    stored.push((seq, ev.time, ev.dedup, h8, ev.account, ev.postings, leaf));
                    results.push(Appended::Stored(seq));
                }
                outcomes.push(AppendOutcome { results });
            }
        }
        if block_count > 0 {
            block[1..3].copy_from_slice(&block_count.to_be_bytes());
            batch.insert(&key_bytes(RECORDS, block_first)[..], block);
        }
        // The index chunk of this group.
        if !stored.is_empty() {
            let mut chunk = Vec::with_capacity(16 + stored.len() * 64);
            chunk.push(1);
            chunk.extend_from_slice(&first_seq.to_be_bytes());
            chunk.extend_from_slice(&(stored.len() as u32).to_be_bytes());
            let mut accounts: Vec<AccountId> = Vec::new();
            let mut values: BlindMap<Vec<u32>> = BlindMap::default();
            for (i, (_, time, dedup, h8, account, postings, _)) in stored.iter().enumerate() {
                chunk.extend_from_slice(&time.to_be_bytes());
                chunk.extend_from_slice(dedup);
                chunk.extend_from_slice(h8);
                if !accounts.contains(account) {
                    accounts.push(*account);
                }
                for p in postings {
                    values.entry(*p).or_default().push(i as u32);
                }
            }
            chunk.extend_from_slice(&(accounts.len() as u16).to_be_bytes());
            for a in &accounts {
                chunk.extend_from_slice(a.as_str().as_bytes());
            }
            chunk.extend_from_slice(&(values.len() as u32).to_be_bytes());
            let mut sorted: Vec<_> = values.into_iter().collect();
            sorted.sort_unstable_by_key(|a| a.0);
            for (blind, locals) in &sorted {
                chunk.extend_from_slice(blind);
                format::put_varint(&mut chunk, locals.len() as u64);
                // Positions ascend: store the gaps, mostly one byte each.
                let mut prev = 0u32;
                for (i, l) in locals.iter().enumerate() {
                    let gap = if i == 0 { *l } else { l - prev };
                    format::put_varint(&mut chunk, u64::from(gap));
                    prev = *l;
                }
            }
            batch.insert(&key_bytes(CHUNK, first_seq)[..], chunk);
        }
        // The group's leaf hashes, and a checkpoint when one is due.
        let mut frontier = self.frontier.clone();
        let mut completed: Vec<(u32, Hash)> = Vec::new();
        let group_leaves: Vec<Hash> = stored.iter().map(|e| e.6).collect();
        if !stored.is_empty() {
            let mut bytes = Vec::with_capacity(stored.len() * 32);
            for leaf in &group_leaves {
                bytes.extend_from_slice(leaf);
                frontier.push_capturing(*leaf, |height, h| {
                    if height >= 8 {
                        completed.push((height, *h));
                    }
                });
            }
            batch.insert(&key_bytes(HASHES, first_seq)[..], bytes);
        }
        let forced = jobs.iter().any(|j| j.checkpoint);
        let new = frontier.size().saturating_sub(self.last_checkpoint_size);
        let due = new >= sh.cfg.checkpoint_records
            || (new > 0 && self.last_checkpoint_at.elapsed() >= sh.cfg.checkpoint_interval)
            || (forced && new > 0);
        if due {
            self.checkpoint(sh, &frontier, &mut batch);
        }
        batch.insert(meta_key("next_seq"), self.next_seq.to_be_bytes().to_vec());
        batch.insert(
            meta_key("next_segment"),
            self.next_segment.to_be_bytes().to_vec(),
        );
        // A dictionary, once enough samples are in. Training takes a second or so, so it runs
        // on a thread of its own; the dictionary is stored with the first group after it is done.
        let mut new_dict = None;
        if !self.dict_failed
            && self.training.is_none()
            && self.pending_dict.is_none()
            && sh.dict_version.load(Ordering::Acquire) == 0
            && self.samples.len() >= sh.cfg.dict_train_after
        {
            let samples = std::mem::take(&mut self.samples);
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("orgtrail-zstd-dict".into())
                .spawn(move || {
                    let _ = tx.send(zstd::dict::from_samples(&samples, 112_640));
                });
            match spawned {
                Ok(_) => self.training = Some(rx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start dictionary training; records stay compressed without one");
                    self.dict_failed = true;
                }
            }
        }
        if let Some(rx) = &self.training {
            match rx.try_recv() {
                Ok(Ok(d)) => {
                    self.pending_dict = Some(d);
                    self.training = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "zstd dictionary training failed; records stay compressed without one");
                    self.dict_failed = true;
                    self.training = None;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.dict_failed = true;
                    self.training = None;
                }
            }
        }
        if let Some(d) = &self.pending_dict {
            batch.insert(dict_key(1), seal_dict(sh.provider.as_ref(), 1, d)?);
            new_dict = Some(d.clone());
        }

        let files = sh.files()?;
        files
            .tree
            .apply_batch(batch)
            .map_err(|source| StoreError::Write { source })?;
        files
            .db
            .flush()
            .map_err(|source| StoreError::Write { source })?;
        self.frontier = frontier.clone();

        // Durable: publish.
        {
            let mut segs = sh.segments.write().map_err(|_| StoreError::WriterGone)?;
            let mut keys = sh.keys.lock().map_err(|_| StoreError::WriterGone)?;
            for (id, info, key) in new_segments {
                segs.insert(id, info);
                keys.insert(id, key);
            }
        }
        {
            let mut idx = sh.index.write().map_err(|_| StoreError::WriterGone)?;
            idx.tree.apply(frontier, &completed, &group_leaves);
            for (seq, time, dedup, h8, account, postings, _) in stored {
                idx.publish(seq, time, dedup, h8);
                idx.accounts.insert(account);
                for p in postings {
                    idx.post(p, seq);
                }
            }
        }
        if let Some(d) = new_dict {
            self.pending_dict = None;
            let mut dicts = sh.dicts.write().map_err(|_| StoreError::WriterGone)?;
            dicts
                .decoders
                .insert(1, Arc::new(zstd::dict::DecoderDictionary::copy(&d)));
            dicts.raw.insert(1, Arc::new(d));
            dicts.current = 1;
            sh.dict_version.store(1, Ordering::Release);
        }
        Ok(outcomes)
    }
}

fn key_bytes(prefix: u8, n: u64) -> [u8; 9] {
    format::key(prefix, n)
}

fn dict_context(id: u32) -> Vec<u8> {
    let mut c = b"dictionary/".to_vec();
    c.extend_from_slice(&id.to_be_bytes());
    c
}

/// A zstd dictionary is trained on event bytes, so it is sealed like them: under a data key
/// of its own, wrapped by the master key. Value: wrapped key (64) || nonce (12) || ciphertext.
fn seal_dict(provider: &dyn KeyProvider, id: u32, dict: &[u8]) -> Result<Vec<u8>, StoreError> {
    let ctx = dict_context(id);
    let (key, wrapped) = provider.generate_data_key(&ctx)?;
    let mut out = wrapped.to_bytes();
    let (nonce, ct) = key.seal(&ctx, dict)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_dict(provider: &dyn KeyProvider, id: u32, v: &[u8]) -> Result<Vec<u8>, StoreError> {
    let ctx = dict_context(id);
    let mut r = Reader::new(v, "dictionary");
    let wrapped = WrappedKey::from_bytes(r.take(WRAPPED_LEN)?)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let ct = r.take(v.len() - WRAPPED_LEN - NONCE_LEN)?;
    let key = provider.decrypt_data_key(&wrapped, &ctx)?;
    Ok(key.open(&nonce, &ctx, ct)?)
}

fn dict_key(id: u32) -> Vec<u8> {
    let mut k = meta_key("dict/");
    k.extend_from_slice(&id.to_be_bytes());
    k
}

const _: () = assert!(BLIND_LEN == 16);
