//! The one mapping from store errors to gRPC statuses.
//!
//! A fault of the server (a full disk, an I/O error, a store reopening, a stopped writer, a
//! key that cannot be used) is always a status the agent retries: `UNAVAILABLE`, or
//! `RESOURCE_EXHAUSTED` for a full disk, never a rejection of the events. Only the request
//! itself can make a status the client must not repeat as is (`INVALID_ARGUMENT`). The match
//! is exhaustive on purpose: a new store error must be placed here.

use orgtrail_store::StoreError;
use tonic::Status;

/// The status a client sees for a store error. Messages name counts, limits and sequence
/// numbers, never event content or paths of the server.
pub fn store_status(e: &StoreError) -> Status {
    match e {
        StoreError::DiskFull { free, reserve, .. } => Status::resource_exhausted(format!(
            "disk full: {free} bytes free, reserve {reserve}; the collector resumes by itself when space returns"
        )),
        StoreError::Write { .. }
        | StoreError::Recovering { .. }
        | StoreError::Unavailable { .. }
        | StoreError::WriterGone
        | StoreError::Locked { .. }
        | StoreError::Storage(_)
        | StoreError::Crypto(_)
        | StoreError::Compression(_) => {
            Status::unavailable(format!("the collector cannot store or read now: {e}"))
        }
        StoreError::IndexFile { source, .. } => {
            Status::unavailable(format!("the collector cannot read its index now: {source}"))
        }
        StoreError::Corrupt(_) | StoreError::RecordOpen { .. } => {
            Status::data_loss(format!("the store is damaged: {e}"))
        }
        StoreError::Format { .. } | StoreError::NoSigner | StoreError::NoStore { .. } => {
            Status::failed_precondition(e.to_string())
        }
        StoreError::BadPageToken => {
            Status::invalid_argument("next_token is not one this collector issued")
        }
        StoreError::Invalid(_) => Status::internal(e.to_string()),
    }
}

/// Runs blocking store work off the async runtime; a store error is logged (naming `what`
/// failed) and mapped by [`store_status`]. An unknown page token is the client's, not logged.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal(format!("{what} task failed")))?
        .map_err(|e| {
            if !matches!(e, StoreError::BadPageToken) {
                tracing::error!(error = %e, "{what} failed");
            }
            store_status(&e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn server_faults_are_retryable_and_disk_full_names_the_numbers() {
        let s = store_status(&StoreError::DiskFull {
            path: "/var/lib/orgtrail".into(),
            free: 1000,
            reserve: 4096,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message()
                .starts_with("disk full: 1000 bytes free, reserve 4096")
        );
        assert!(!s.message().contains("/var/lib"), "no server paths");
        for e in [
            StoreError::Recovering { reason: "x".into() },
            StoreError::Unavailable { reason: "x".into() },
            StoreError::WriterGone,
            StoreError::Compression("x".into()),
        ] {
            assert_eq!(store_status(&e).code(), Code::Unavailable, "{e}");
        }
        assert_eq!(
            store_status(&StoreError::BadPageToken).code(),
            Code::InvalidArgument
        );
    }
}
