//! The Insights detector's state and watermark, kept beside the events so that a collector
//! restarted (or killed) at any moment resumes detection where it was.
//!
//! The watermark is the sequence number through which stored events have been fed to the
//! detector; the state is the detector's snapshot after them (an opaque byte string to the
//! store: `orgtrail-insights` defines it). Both are one sled value, written by one insert and
//! flushed, so they never disagree after a crash. The collector appends the Insight events a
//! range produced before it records the state past that range: a crash in between feeds the
//! range again from the older state, which finds the same Insights with the same ids, and the
//! ledger's dedup keeps one copy.
//!
//! # In sled: `m insights` (absent until first recorded)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (1) |
//! | 8 | the watermark (u64 BE) |
//! | 64 | a data key of its own for this value, wrapped by the master key |
//! | 12 | nonce |
//! | rest | AES-256-GCM(state) with tag |
//!
//! The data key's context is `"insights/state"`; the AAD is `"orgtrail/insights/v1" ||
//! watermark`, so a watermark changed on disk fails to open. The state holds user ARNs and
//! user agents: it is event data, and exists on disk only sealed. A new data key per write
//! (random nonces never repeat under one key). `Ledger::rewrap` (`orgtrail keys rewrap`)
//! rewraps its data key under the current master key, and `Ledger::key_versions` counts it.

use orgtrail_crypto::keyring::WRAPPED_LEN;
use orgtrail_crypto::{KeyProvider, NONCE_LEN, WrappedKey};

use crate::error::StoreError;
use crate::format::{Reader, meta_key};
use crate::kv::{Db, Tree};

/// The detector's state and watermark as last recorded.
#[derive(Clone, PartialEq, Eq)]
pub struct InsightsState {
    /// Every stored event at or below this sequence number was fed to the detector.
    pub through: u64,
    /// The detector's state after them (opened).
    pub state: Vec<u8>,
}

impl std::fmt::Debug for InsightsState {
    // Never the state: it holds event data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsightsState")
            .field("through", &self.through)
            .field("state_bytes", &self.state.len())
            .finish()
    }
}

pub(crate) const KEY: &str = "insights";
const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"insights/state";
const AAD_TAG: &[u8] = b"orgtrail/insights/v1";

fn aad(through: u64) -> Vec<u8> {
    let mut a = AAD_TAG.to_vec();
    a.extend_from_slice(&through.to_be_bytes());
    a
}

/// The sealed value of `state` at `through`.
pub(crate) fn seal(
    provider: &dyn KeyProvider,
    through: u64,
    state: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let (dk, wrapped) = provider.generate_data_key(CONTEXT)?;
    let mut out = Vec::with_capacity(1 + 8 + WRAPPED_LEN + NONCE_LEN + state.len() + 16);
    out.push(VERSION);
    out.extend_from_slice(&through.to_be_bytes());
    out.extend_from_slice(&wrapped.to_bytes());
    let at = out.len();
    out.extend_from_slice(&[0u8; NONCE_LEN]);
    let nonce = dk.seal_into(&aad(through), state, &mut out)?;
    out[at..at + NONCE_LEN].copy_from_slice(&nonce);
    Ok(out)
}

/// Opens a value written by [`seal`].
pub(crate) fn open(provider: &dyn KeyProvider, v: &[u8]) -> Result<InsightsState, StoreError> {
    let mut r = Reader::new(v, "insights state");
    if r.u8()? != VERSION {
        return Err(StoreError::Corrupt("unknown insights state version".into()));
    }
    let through = r.u64()?;
    let wrapped = WrappedKey::from_bytes(r.take(WRAPPED_LEN)?)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let ct = &v[v.len() - r.remaining()..];
    let dk = provider.decrypt_data_key(&wrapped, CONTEXT)?;
    let state = dk
        .open(&nonce, &aad(through), ct)
        .map_err(|_| StoreError::Corrupt("the insights state fails to open".into()))?;
    Ok(InsightsState { through, state })
}

/// The watermark of a value, read without opening it.
fn through_of(v: &[u8]) -> Result<u64, StoreError> {
    let mut r = Reader::new(v, "insights state");
    if r.u8()? != VERSION {
        return Err(StoreError::Corrupt("unknown insights state version".into()));
    }
    r.u64()
}

/// The recorded state, opened; `None` before the first record.
pub(crate) fn read(
    provider: &dyn KeyProvider,
    tree: &Tree,
) -> Result<Option<InsightsState>, StoreError> {
    match tree.get(meta_key(KEY))? {
        Some(v) => Ok(Some(open(provider, &v)?)),
        None => Ok(None),
    }
}

/// Records `state` at `through`, sealed, in one insert, and flushes. A recorded watermark
/// past `through` writes nothing (at `through`, the state is replaced: the clock may have
/// moved with no new event).
pub(crate) fn record(
    provider: &dyn KeyProvider,
    db: &Db,
    tree: &Tree,
    through: u64,
    state: &[u8],
) -> Result<(), StoreError> {
    if let Some(v) = tree.get(meta_key(KEY))?
        && through_of(&v)? > through
    {
        return Ok(());
    }
    tree.insert(meta_key(KEY), seal(provider, through, state)?)?;
    db.flush()?;
    Ok(())
}

/// The wrapped data key of a value.
fn wrapped_of(v: &[u8]) -> Result<WrappedKey, StoreError> {
    let w = v
        .get(9..9 + WRAPPED_LEN)
        .ok_or_else(|| StoreError::Corrupt("the insights state is too short".into()))?;
    Ok(WrappedKey::from_bytes(w)?)
}

/// Rewraps the state's data key if it is not under the current master key; swapped only if
/// the value did not change meanwhile (a value written since is under the current key).
/// Returns how many keys were rewrapped (0 or 1).
pub(crate) fn rewrap(tree: &Tree, provider: &dyn KeyProvider) -> Result<usize, StoreError> {
    let k = meta_key(KEY);
    let Some(v) = tree.get(&k)? else {
        return Ok(0);
    };
    let wrapped = wrapped_of(&v)?;
    if wrapped.master_version == provider.current_version() {
        return Ok(0);
    }
    let new = provider.rewrap(&wrapped, CONTEXT)?;
    let mut nv = v.to_vec();
    nv[9..9 + WRAPPED_LEN].copy_from_slice(&new.to_bytes());
    Ok(usize::from(tree.compare_and_swap(
        &k,
        Some(&v),
        Some(nv),
    )?))
}

/// Adds the master key version of the state's data key to `m`.
pub(crate) fn key_versions(
    tree: &Tree,
    m: &mut std::collections::HashMap<u32, usize>,
) -> Result<(), StoreError> {
    if let Some(v) = tree.get(meta_key(KEY))? {
        *m.entry(wrapped_of(&v)?.master_version).or_default() += 1;
    }
    Ok(())
}
