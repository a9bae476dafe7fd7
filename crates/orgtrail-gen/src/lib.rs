//! Seeded, deterministic generator of realistic AWS CloudTrail records.
//!
//! # Model
//!
//! A seed fixes a small organisation: [`account_ids`] draws K distinct
//! 12-digit account ids, and each account gets a stable population of
//! principals (twenty IAM users, fifteen roles plus three CI roles, four IAM
//! Identity Center permission-set roles, three federated users, root) and of
//! resources (instances, buckets, RDS instances, Lambda functions, KMS keys,
//! secrets, queues, …), each pinned to one of the account's one to three
//! regions. Principal ids and access key ids are fixed per principal, so a
//! search by principal or by resource finds many events.
//!
//! Each new record then:
//! 1. advances a millisecond clock by 0–500 ms (bursts of 0–30 ms), i.e. about
//!    four to five events per second; `eventTime` is that clock in whole
//!    seconds and never decreases between new records;
//! 2. picks an account uniformly and an identity type by weight — AssumedRole
//!    55 %, IAMUser 20 %, AWSService 10 %, IAM Identity Center (AssumedRole of
//!    `AWSReservedSSO_…`) 9 %, FederatedUser 3 %, Root 3 %;
//! 3. picks an API from 116 eventNames over 20 services, weighted so that
//!    reads are about 78 % of all calls and data events (S3 objects, Lambda
//!    Invoke) about 17 %; AWS services make only the calls they make in
//!    practice (AssumeRole, KMS data-key calls, log delivery to S3, …), and
//!    only people sign in to the console;
//! 4. renders request parameters, response elements, resources and extras with
//!    CloudTrail's parameter names, fails about 5 % of calls with the service's
//!    own errorCode/errorMessage, and serialises the record compactly with
//!    CloudTrail's top-level key order.
//!
//! With probability `dup_rate` an item is instead a byte-exact copy of one of
//! the last 1,000 new records (a redelivery). Duplicates keep their original
//! `eventTime`, so only the sequence of first occurrences is time-ordered.
//! Duplicate decisions come from their own random stream: the sequence of new
//! records is the same for every `dup_rate`, and a run of N items is a prefix
//! of a longer run with the same configuration.
//!
//! # Stability
//!
//! The PRNG is SplitMix64 seeding xoshiro256**, with integer-only sampling, and
//! nested JSON objects keep insertion order independently of serde_json
//! features, so a given configuration yields the same bytes on every platform
//! and build. Nothing in the output is a real credential: keys, tokens and
//! secrets are random text in the right shape.

mod catalog;
mod errors;
mod event;
mod fmt;
mod identity;
mod json;
mod ops;
mod rng;
mod world;

pub use world::account_ids;

use event::Model;
use rng::{Rng, derive, prob_threshold};

/// 2026-11-01T00:00:00Z.
const DEFAULT_START: i64 = 1_793_491_200;
/// How many recent new records a duplicate may copy.
const DUP_WINDOW: usize = 1_000;
const STREAM_EVENTS: u64 = 3;
const STREAM_DUPS: u64 = 4;

/// The StartInstances record from the AWS CloudTrail User Guide (log file
/// examples), compact JSON, verbatim.
///
/// Provenance: repository `awsdocs/aws-cloudtrail-user-guide`, file
/// `doc_source/cloudtrail-log-file-examples.md` at commit
/// `56f54d99dfee0c3faf3d4a2b87bb572ad9edf58a` (code block at char 2783, the
/// single element of `Records`), as re-serialised compactly in the shared corpus
/// (`logfiles/aws-cloudtrail-user-guide_cloudtrail-log-file-examples_02.json`).
/// License: documentation CC-BY-SA-4.0, sample code MIT-0.
pub const DOC_START_INSTANCES: &str = r#"{"eventVersion":"1.0","userIdentity":{"type":"IAMUser","principalId":"EX_PRINCIPAL_ID","arn":"arn:aws:iam::123456789012:user/Alice","accessKeyId":"EXAMPLE_KEY_ID","accountId":"123456789012","userName":"Alice"},"eventTime":"2014-03-06T21:22:54Z","eventSource":"ec2.amazonaws.com","eventName":"StartInstances","awsRegion":"us-east-2","sourceIPAddress":"205.251.233.176","userAgent":"ec2-api-tools 1.6.12.2","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-ebeaf9e2"}]}},"responseElements":{"instancesSet":{"items":[{"instanceId":"i-ebeaf9e2","currentState":{"code":0,"name":"pending"},"previousState":{"code":80,"name":"stopped"}}]}}}"#;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Number of items to yield, duplicates included.
    pub count: u64,
    /// Number of accounts (at least 1; 0 is treated as 1).
    pub accounts: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Probability in `0.0..=1.0` that an item is a redelivered duplicate
    /// (out-of-range values are clamped, NaN counts as 0).
    pub dup_rate: f64,
    /// Unix time of the first event.
    pub start_unix_secs: i64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            count: 1_000,
            accounts: 3,
            seed: 0,
            dup_rate: 0.0,
            start_unix_secs: DEFAULT_START,
        }
    }
}

/// An iterator of `count` CloudTrail records, each one compact JSON object
/// without a trailing newline.
pub struct Generator {
    model: Model,
    rng: Rng,
    dup_rng: Rng,
    dup_threshold: u64,
    remaining: u64,
    clock_ms: i64,
    recent: Vec<Vec<u8>>,
    recent_next: usize,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("accounts", &self.model.world.account_ids)
            .field("remaining", &self.remaining)
            .field("clock_ms", &self.clock_ms)
            .field("recent", &self.recent.len())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Builds the seeded world; generation is lazy.
    pub fn new(cfg: GenConfig) -> Self {
        Self::with_accounts(cfg, &[])
    }

    /// Like [`Generator::new`], but the events belong to the accounts `ids` (12-digit AWS
    /// account ids, as `recipientAccountId` and in ARNs) instead of accounts drawn from the
    /// seed; `cfg.accounts` is then ignored. An empty `ids` is [`Generator::new`]. Everything
    /// else still follows the seed.
    pub fn with_accounts(cfg: GenConfig, ids: &[String]) -> Self {
        let model = Model::new(cfg.seed, cfg.accounts.max(1), ids);
        let dup_threshold = prob_threshold(cfg.dup_rate);
        Self {
            model,
            rng: Rng::new(derive(cfg.seed, STREAM_EVENTS)),
            dup_rng: Rng::new(derive(cfg.seed, STREAM_DUPS)),
            dup_threshold,
            remaining: cfg.count,
            clock_ms: cfg.start_unix_secs.saturating_mul(1000),
            recent: Vec::with_capacity(if dup_threshold > 0 { DUP_WINDOW } else { 0 }),
            recent_next: 0,
            scratch: Vec::with_capacity(4_096),
        }
    }

    /// The accounts events are generated for (`account_ids(seed, accounts)`).
    pub fn account_ids(&self) -> &[String] {
        &self.model.world.account_ids
    }

    fn new_event(&mut self) -> Vec<u8> {
        // The first event is at exactly start_unix_secs.
        let now = self.clock_ms.div_euclid(1000);
        // Written into a buffer kept across events, then copied out at its exact length: an
        // event keeps no spare capacity, so what holds many events (a queue of batches) holds
        // only their bytes.
        self.scratch.clear();
        self.model
            .write_event(&mut self.rng, now, &mut self.scratch);
        let out = self.scratch.as_slice().to_vec();
        let gap = if self.rng.permille(150) {
            self.rng.below(30)
        } else {
            self.rng.below(500)
        };
        self.clock_ms = self.clock_ms.saturating_add(gap as i64);
        out
    }
}

impl Iterator for Generator {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if self.dup_threshold > 0 {
            if !self.recent.is_empty() && self.dup_rng.chance53(self.dup_threshold) {
                let i = self.dup_rng.index(self.recent.len());
                return Some(self.recent[i].clone());
            }
            let ev = self.new_event();
            if self.recent.len() < DUP_WINDOW {
                self.recent.push(ev.clone());
            } else {
                self.recent[self.recent_next].clone_from(&ev);
                self.recent_next = (self.recent_next + 1) % DUP_WINDOW;
            }
            return Some(ev);
        }
        Some(self.new_event())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, usize::try_from(self.remaining).ok())
    }
}
