//! The Merkle log of a store, as its users see it: head, roots, inclusion and consistency
//! proofs, stored leaf hashes, and signed checkpoints (written by the writer, see `writer`).
//!
//! # `c <tree size u64 BE>` (checkpoint value)
//!
//! A signed checkpoint of the log at that size: C2SP tlog-checkpoint text as an Ed25519 signed
//! note (`orgtrail_crypto::checkpoint`), origin `orgtrail/<store id>`. Leaf hashes (`h` values)
//! are described in the `tree` module.

use orgtrail_crypto::merkle::{self, Hash, Subtrees};

use super::{Ledger, be_u64};
use crate::error::StoreError;
use crate::format::{CHECKPOINT, key};
use crate::kv::Value;
use crate::tree::{StoreSubtrees, TreeState};

impl Ledger {
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
        StoreSubtrees::new(&state, &self.shared.tree()?, &self.shared.log).subtree(0, size)
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
            &mut StoreSubtrees::new(&state, &self.shared.tree()?, &self.shared.log),
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
            &mut StoreSubtrees::new(&state, &self.shared.tree()?, &self.shared.log),
            first,
            second,
        )
        .map_err(proof_error)
    }

    /// The stored leaf hash of the event at `seq`.
    pub fn leaf(&self, seq: u64) -> Result<Hash, StoreError> {
        crate::tree::read_leaves(&self.shared.tree()?, &self.shared.log, seq, 1)?
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
        let mut push =
            |kv: Result<(Value, Value), crate::kv::BackendError>| -> Result<(), StoreError> {
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
        crate::tree::read_leaves(&self.shared.tree()?, &self.shared.log, first, count)
    }
}

pub(super) fn proof_error(e: merkle::ProofError<StoreError>) -> StoreError {
    match e {
        merkle::ProofError::Source(e) => e,
        other => StoreError::Corrupt(other.to_string()),
    }
}
