//! Runs in a group commit: which runs (see `records` and `Preparer::prepare_batch`) the writer
//! seals whole, and the events of the others compressed again.

use std::sync::Arc;

use super::prepare::{Pack, Run, new_compressor};
use super::records::block_records;
use super::{Job, Shared};
use crate::error::StoreError;

/// The events of one run at the start of `order` (which holds (job, event) positions in the
/// order the writer numbers them): the run, and the indexes in it of the events that follow
/// each other there, in increasing order. The run is stored whole when those are all of its
/// events; otherwise the group stores only these of it here, and its others elsewhere in the
/// group or not at all (duplicates).
pub(super) fn run_at<'a>(
    jobs: &'a [Job],
    fresh: &[(usize, usize)],
    order: &[usize],
) -> Option<(&'a Arc<Run>, Vec<u16>)> {
    let at = |p: usize| {
        let (j, k) = fresh[order[p]];
        &jobs[j].events[k]
    };
    let Pack::Run { run, index } = &at(0).pack else {
        return None;
    };
    let mut members = vec![*index];
    for p in 1..order.len().min(usize::from(run.count)) {
        match &at(p).pack {
            Pack::Run { run: r, index } if Arc::ptr_eq(r, run) && members.last() < Some(index) => {
                members.push(*index);
            }
            _ => break,
        }
    }
    Some((run, members))
}

/// Whether `members` (from [`run_at`]) are the whole of `run`, in order.
pub(super) fn is_whole(run: &Run, members: &[u16]) -> bool {
    members.len() == usize::from(run.count) && members.iter().copied().eq(0..run.count)
}

/// Compresses again the events of runs not stored whole (one of them a duplicate of an event
/// stored before, or the run's events appended apart): those that follow each other in the
/// group as a smaller run, a lone one on its own. Rare, so the compressor is made on first
/// use.
#[derive(Default)]
pub(super) struct Repacker {
    compressor: Option<(u32, zstd::bulk::Compressor<'static>)>,
    plain: Vec<u8>,
}

impl Repacker {
    /// The records `members` of `run` (compressed with dictionary `dict`) as one zstd frame:
    /// a run's (lengths and bytes, with its content size) if there are several, else the one
    /// record's own.
    pub(super) fn again(
        &mut self,
        sh: &Shared,
        dict: u32,
        run: &Run,
        members: &[u16],
    ) -> Result<Vec<u8>, StoreError> {
        let opened = sh.decompress_run(dict, &run.frame, run.count)?;
        let records = block_records(&opened, run.count)?;
        let chosen = members
            .iter()
            .map(|&i| {
                records.get(usize::from(i)).copied().ok_or_else(|| {
                    StoreError::Corrupt("record run: an index beyond its records".into())
                })
            })
            .collect::<Result<Vec<&[u8]>, _>>()?;
        let several = chosen.len() > 1;
        self.plain.clear();
        if several {
            for r in &chosen {
                crate::format::put_varint(&mut self.plain, r.len() as u64);
            }
        }
        for r in &chosen {
            self.plain.extend_from_slice(r);
        }
        if !matches!(&self.compressor, Some((d, _)) if *d == dict) {
            self.compressor = Some((dict, new_compressor(sh, dict)?));
        }
        let Some((_, c)) = self.compressor.as_mut() else {
            return Err(StoreError::Compression("no compressor".into()));
        };
        let err = |e: std::io::Error| StoreError::Compression(e.to_string());
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(several))
            .map_err(err)?;
        c.compress(&self.plain).map_err(err)
    }
}
