//! orgtrail's S3 client: the only crate that depends on `object_store` (STYLE habit 2).
//!
//! - [`S3Options`]: where the bucket is and how to sign (explicit fields over the `AWS_*`
//!   environment, web identity and IMDS); secrets only from files, read again at each connect.
//! - [`S3Error`]: what a caller can act on: refused credentials and a missing bucket are
//!   permanent, a missing or changed object is decided by the next pass, the rest is transient.
//! - [`Blocking`]: a synchronous bridge for the agent's source threads and the CLI, with a
//!   [`BodyReader`] that streams an object and resumes at its position (`Range` + `If-Match`)
//!   when a body breaks off.
//! - [`Version`]: an object's ETag, or, from a server that sends none, its size and
//!   last-modified time (compared by the reader; never an empty `If-Match`).
//! - `test_server` (feature `test-server`): SeaweedFS on ports of its own, for tests.
//!
//! TLS is rustls on aws-lc-rs (through reqwest 0.13), and SigV4's HMAC-SHA256 and payload
//! hashes use object_store's aws-lc-rs provider: no ring, no OpenSSL.

mod blocking;
mod client;
mod error;
mod options;
#[cfg(feature = "test-server")]
pub mod test_server;
mod version;

pub use blocking::{Blocking, BodyReader, Listed, Page};
pub use client::connect;
pub use error::S3Error;
pub use options::{S3Options, S3Url};
pub use version::Version;
