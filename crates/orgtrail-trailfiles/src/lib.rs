//! CloudTrail's files where CloudTrail puts them (an S3 bucket, or a local copy of one):
//!
//! * [`layout`]: what a key says (account, region, log or digest, trail, time);
//! * [`digest`]: the digest file's JSON and the string its signature covers;
//! * [`public_keys`]: the keys `aws cloudtrail list-public-keys` prints (PKCS#1 or SPKI DER);
//! * [`inflate`]: streaming gzip with SHA-256 of the inflated bytes;
//! * [`ObjectStore`]: list, read, and read a digest's signature metadata; [`DirStore`] for a
//!   directory, an S3 client later;
//! * [`check`]: one digest's own checks (format, signature), for `validate` and the agent;
//! * [`validate()`]: `aws cloudtrail validate-logs`, with the chain checked more strictly;
//! * [`export`]: a store's events as an archive in CloudTrail's layout, with orgtrail digest
//!   files signed with the store's Ed25519 key.
//!
//! Problems with trail files are [`Finding`]s in a [`Report`], never errors: an error means
//! the validation itself could not run (unreadable key file, unlistable tree).

pub mod check;
pub mod digest;
mod dir_store;
mod error;
pub mod export;
pub mod hex;
pub mod inflate;
pub mod layout;
pub mod public_keys;
mod report;
mod s3_store;
mod store;
mod validate;

pub use check::{ParsedDigest, parse_digest, verify_signature};
pub use digest::{DigestFile, LogFileEntry};
pub use dir_store::DirStore;
pub use error::{ReadError, TrailFilesError};
pub use export::{
    EventSource, ExportError, ExportFilter, ExportOptions, ExportSummary, SourceEvent,
};
pub use layout::{ChainId, FileKind, Location, TrailKey};
pub use public_keys::{DigestKey, PublicKeyEntry, PublicKeySet};
pub use report::{Finding, FindingKind, Report};
pub use s3_store::S3Store;
pub use store::{ObjectStore, log_keys};
pub use validate::{ValidateOptions, validate};
