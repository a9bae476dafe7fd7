//! Runs in a group commit: which runs (see `records` and `Preparer::prepare_batch`) the writer
//! seals whole, and the events of the others compressed again on their own.

use std::sync::Arc;

use super::prepare::{Pack, Run, new_compressor};
use super::records::block_records;
use super::{Job, Shared};
use crate::error::StoreError;

/// The run starting at `order[0]`, if the group stores it whole and in order: the first event
/// of a run, followed by its other events, each the next index of the same run. `order` holds
/// (job, event) positions in the order the writer numbers them.
pub(super) fn whole_run<'a>(
    jobs: &'a [Job],
    fresh: &[(usize, usize)],
    order: &[usize],
) -> Option<&'a Arc<Run>> {
    let at = |p: usize| {
        let (j, k) = fresh[order[p]];
        &jobs[j].events[k]
    };
    let Pack::Run { run, index: 0 } = &at(0).pack else {
        return None;
    };
    let n = usize::from(run.count);
    if n == 0 || order.len() < n {
        return None;
    }
    let whole = (1..n).all(|p| {
        let ev = at(p);
        matches!(&ev.pack, Pack::Run { run: r, index } if Arc::ptr_eq(r, run) && usize::from(*index) == p)
    });
    whole.then_some(run)
}

/// Compresses events of runs not stored whole on their own (a duplicate in the run, or its
/// events appended apart): rare, so the compressor is made on first use, and the last run
/// opened is kept for its next events.
#[derive(Default)]
pub(super) struct Repacker {
    compressor: Option<(u32, zstd::bulk::Compressor<'static>)>,
    opened: Option<(Arc<Run>, Vec<u8>)>,
}

impl Repacker {
    /// Record `index` of `run` (compressed with dictionary `dict`) as its own zstd frame.
    pub(super) fn alone(
        &mut self,
        sh: &Shared,
        dict: u32,
        run: &Arc<Run>,
        index: u16,
    ) -> Result<Vec<u8>, StoreError> {
        if !matches!(&self.opened, Some((r, _)) if Arc::ptr_eq(r, run)) {
            let plain = sh.decompress_run(dict, &run.frame, run.count)?;
            self.opened = Some((run.clone(), plain));
        }
        let Some((_, plain)) = &self.opened else {
            return Err(StoreError::Corrupt("record run not opened".into()));
        };
        let records = block_records(plain, run.count)?;
        let bytes = records
            .get(usize::from(index))
            .ok_or_else(|| StoreError::Corrupt("record run: index beyond its records".into()))?;
        if !matches!(&self.compressor, Some((d, _)) if *d == dict) {
            self.compressor = Some((dict, new_compressor(sh, dict)?));
        }
        let Some((_, c)) = self.compressor.as_mut() else {
            return Err(StoreError::Compression("no compressor".into()));
        };
        c.compress(bytes)
            .map_err(|e| StoreError::Compression(e.to_string()))
    }
}
