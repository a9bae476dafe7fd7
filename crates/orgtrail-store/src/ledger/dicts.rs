//! zstd dictionaries: trained once per store on its first events, sealed like records.
//!
//! # `m dict/<id u32 BE>` (dictionary value)
//!
//! | bytes | field |
//! |---|---|
//! | 64 | a data key of its own, wrapped by the master key |
//! | 12 | nonce |
//! | rest | AES-256-GCM(dictionary) with tag, AAD = the key's context |
//!
//! The context (key binding and AAD) is `"dictionary/" || id (u32 BE)`. A record names the
//! dictionary it was compressed with (0: none). The writer samples events until
//! `dict_train_after`, trains on a thread of its own ([`Trainer`]) and stores the dictionary
//! with a later group; preparers pick it up from then on.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use orgtrail_core::MAX_EVENT_BYTES;
use orgtrail_crypto::keyring::WRAPPED_LEN;
use orgtrail_crypto::{KeyProvider, NONCE_LEN, WrappedKey};

use super::Shared;
use crate::error::StoreError;
use crate::format::{Reader, meta_key};

/// The store's dictionaries, opened.
pub(super) struct Dicts {
    /// The newest dictionary's id (0: none yet).
    pub(super) current: u32,
    pub(super) raw: HashMap<u32, Arc<Vec<u8>>>,
    decoders: HashMap<u32, Arc<zstd::dict::DecoderDictionary<'static>>>,
}

impl Dicts {
    pub(super) fn empty() -> Self {
        Dicts {
            current: 0,
            raw: HashMap::new(),
            decoders: HashMap::new(),
        }
    }

    /// Adds an opened dictionary; the newest becomes current.
    pub(super) fn install(&mut self, id: u32, plain: Vec<u8>) {
        self.decoders
            .insert(id, Arc::new(zstd::dict::DecoderDictionary::copy(&plain)));
        self.raw.insert(id, Arc::new(plain));
        self.current = self.current.max(id);
    }
}

/// What a dictionary's data key is bound to, and its AAD.
pub(super) fn dict_context(id: u32) -> Vec<u8> {
    let mut c = b"dictionary/".to_vec();
    c.extend_from_slice(&id.to_be_bytes());
    c
}

/// A zstd dictionary is trained on event bytes, so it is sealed like them: under a data key
/// of its own, wrapped by the master key. Value: wrapped key (64) || nonce (12) || ciphertext.
pub(super) fn seal_dict(
    provider: &dyn KeyProvider,
    id: u32,
    dict: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let ctx = dict_context(id);
    let (key, wrapped) = provider.generate_data_key(&ctx)?;
    let mut out = wrapped.to_bytes();
    let (nonce, ct) = key.seal(&ctx, dict)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a dictionary value sealed by [`seal_dict`].
pub(super) fn open_dict(
    provider: &dyn KeyProvider,
    id: u32,
    v: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let ctx = dict_context(id);
    let mut r = Reader::new(v, "dictionary");
    let wrapped = WrappedKey::from_bytes(r.take(WRAPPED_LEN)?)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let ct = r.take(v.len() - WRAPPED_LEN - NONCE_LEN)?;
    let key = provider.decrypt_data_key(&wrapped, &ctx)?;
    Ok(key.open(&nonce, &ctx, ct)?)
}

/// The key of dictionary `id`.
pub(super) fn dict_key(id: u32) -> Vec<u8> {
    let mut k = meta_key("dict/");
    k.extend_from_slice(&id.to_be_bytes());
    k
}

thread_local! {
    /// A zstd decompression context per reading thread, kept for one (store, dictionary):
    /// creating one per record (and loading the dictionary into it) dominated lookups.
    static DCTX: std::cell::RefCell<Option<(u64, u32, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

impl Shared {
    /// The bytes of the store's dictionary `dict`.
    pub(super) fn raw_dict(&self, dict: u32) -> Result<Arc<Vec<u8>>, StoreError> {
        self.dicts
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .raw
            .get(&dict)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("zstd dictionary {dict} is missing")))
    }

    /// Decompresses an opened record compressed with dictionary `dict` (0: none).
    pub(super) fn decompress(&self, dict: u32, data: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.decompress_within(dict, data, MAX_EVENT_BYTES)
    }

    /// Decompresses the opened frame of a run of `count` records (a version 3 block, see
    /// `records`): its lengths and events. The frame states its size, which must lie within
    /// what `count` events can take; the output is allocated at that size.
    pub(super) fn decompress_run(
        &self,
        dict: u32,
        data: &[u8],
        count: u16,
    ) -> Result<Vec<u8>, StoreError> {
        let most = usize::from(count) * (MAX_EVENT_BYTES + 3);
        match zstd::zstd_safe::get_frame_content_size(data) {
            Ok(Some(n)) if n <= most as u64 => {
                self.decompress_within(dict, data, usize::try_from(n).unwrap_or(most))
            }
            _ => Err(StoreError::Corrupt(
                "record run: the frame states no size, or too large a one".into(),
            )),
        }
    }

    /// Decompresses `data` (dictionary `dict`) into at most `capacity` bytes.
    fn decompress_within(
        &self,
        dict: u32,
        data: &[u8],
        capacity: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let err = |e: std::io::Error| StoreError::Compression(e.to_string());
        let store_id = self.instance;
        DCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            let fresh = !matches!(&*slot, Some((s, d, _)) if *s == store_id && *d == dict);
            if fresh {
                let dec = if dict == 0 {
                    zstd::bulk::Decompressor::new()
                } else {
                    zstd::bulk::Decompressor::with_dictionary(&self.raw_dict(dict)?)
                }
                .map_err(err)?;
                *slot = Some((store_id, dict, dec));
            }
            match slot.as_mut() {
                Some((_, _, dec)) => dec.decompress(data, capacity).map_err(err),
                None => Err(StoreError::Compression("no decompressor".into())),
            }
        })
    }
}

/// The writer's side of training: samples, the training thread, and a trained dictionary
/// waiting to be stored.
#[derive(Default)]
pub(super) struct Trainer {
    samples: Vec<Vec<u8>>,
    failed: bool,
    /// A dictionary being trained on another thread.
    training: Option<Receiver<io::Result<Vec<u8>>>>,
    /// A trained dictionary not yet stored.
    pending: Option<Vec<u8>>,
}

impl Trainer {
    /// Keeps `sample` (an event's bytes) while fewer than `wanted` are in and no dictionary is
    /// being trained or waiting.
    pub(super) fn offer(&mut self, sample: Vec<u8>, wanted: usize) {
        if self.training.is_none() && self.pending.is_none() && self.samples.len() < wanted {
            self.samples.push(sample);
        }
    }

    /// Starts training once `wanted` samples are in and the store has no dictionary (`current`
    /// is 0), collects a finished training, and returns the dictionary waiting to be stored.
    /// Training takes a second or so, so it runs on a thread of its own; the dictionary is
    /// stored with the first group after it is done.
    pub(super) fn poll(&mut self, current: u32, wanted: usize) -> Option<&Vec<u8>> {
        if !self.failed
            && self.training.is_none()
            && self.pending.is_none()
            && current == 0
            && self.samples.len() >= wanted
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
                    self.failed = true;
                }
            }
        }
        if let Some(rx) = &self.training {
            match rx.try_recv() {
                Ok(Ok(d)) => {
                    self.pending = Some(d);
                    self.training = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "zstd dictionary training failed; records stay compressed without one");
                    self.failed = true;
                    self.training = None;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.failed = true;
                    self.training = None;
                }
            }
        }
        self.pending.as_ref()
    }

    /// The waiting dictionary is durable: it is no longer pending.
    pub(super) fn stored(&mut self) {
        self.pending = None;
    }
}
