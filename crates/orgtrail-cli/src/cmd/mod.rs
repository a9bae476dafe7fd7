//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod alerts;
pub(crate) mod alerts_dead_letters;
pub(crate) mod bench;
pub(crate) mod bench_alerts;
pub(crate) mod bench_ingest_ab;
pub(crate) mod bench_ingest_archive;
pub(crate) mod bench_ingest_insights;
pub(crate) mod bench_ingest_rules;
pub(crate) mod bench_nats;
pub(crate) mod bench_parse;
pub(crate) mod bench_peaks;
pub(crate) mod bench_query;
pub(crate) mod bench_rules;
pub(crate) mod bench_scale;
pub(crate) mod bench_transport;
pub(crate) mod certs;
pub(crate) mod collector;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod gen_events;
pub(crate) mod import;
pub(crate) mod ingest;
pub(crate) mod insights;
pub(crate) mod insights_explain;
pub(crate) mod insights_replay;
pub(crate) mod integrity;
pub(crate) mod keys;
pub(crate) mod lookup;
pub(crate) mod profile;
pub(crate) mod remote;
pub(crate) mod rules;
pub(crate) mod s3_args;
pub(crate) mod selectors;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod table;
pub(crate) mod validate;
pub(crate) mod validate_logs;

use std::io::{self, Read};
use std::path::Path;

/// Opens an input file, or standard input for `-`.
pub(crate) fn open_input(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin()))
    } else {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// A decoder over an input file, or standard input for `-`. A regular gzip file's CRC and
/// size are checked before any event is read from it (see `Decoder::new_verified`); standard
/// input, pipes and FIFOs cannot be read twice and are decoded in one pass.
pub(crate) fn open_decoder(
    path: &Path,
    format: orgtrail_core::InputFormat,
    limits: orgtrail_core::DecodeLimits,
) -> Result<orgtrail_core::Decoder<'static>, OpenError> {
    use orgtrail_core::Decoder;
    if path.as_os_str() == "-" {
        Decoder::new(io::stdin(), format, limits).map_err(OpenError::Decode)
    } else {
        let f = std::fs::File::open(path).map_err(OpenError::Open)?;
        if f.metadata().is_ok_and(|m| m.is_file()) {
            Decoder::new_verified(f, format, limits).map_err(OpenError::Decode)
        } else {
            // A FIFO or device (`<(zcat ...)`, /dev/stdin) is read once, like stdin.
            Decoder::new(f, format, limits).map_err(OpenError::Decode)
        }
    }
}

/// Why [`open_decoder`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The file could not be opened.
    Open(io::Error),
    /// The input as a whole is unreadable (corrupt gzip, too large, ...).
    Decode(orgtrail_core::DecodeError),
}

/// True for the error a write gets when the reader of our stdout went away (`| head`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, `outer: cause: root`, each said once. Many errors
/// put their source's text in their own message *and* return it as `source()` (the usual
/// `"cannot read {path}: {source}"` with `#[source]`); printing the chain naively said the
/// root cause twice (`No such file or directory (os error 2): No such file or directory
/// (os error 2)`). A cause whose text the line already holds is left out.
pub(crate) fn describe_error(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// For `--if-missing`: true when every one of `files` exists, false when none does, and an
/// error naming what is there and what is missing when only some do (a half-made set is not
/// something to keep, nor to overwrite blindly).
pub(crate) fn all_exist(files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    let (there, missing): (Vec<_>, Vec<_>) = files.iter().partition(|f| f.exists());
    if missing.is_empty() {
        return Ok(true);
    }
    if there.is_empty() {
        return Ok(false);
    }
    let list = |v: &[&std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    anyhow::bail!(
        "{} exist(s) but {} do(es) not: remove the partial set or restore the missing files",
        list(&there),
        list(&missing)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Like a thiserror variant with `"...: {0}"` and `#[source]`.
    #[derive(Debug)]
    struct Repeats(io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read /x/y: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let e = anyhow::Error::new(Repeats(io::Error::from(io::ErrorKind::NotFound)))
            .context("loading the configuration");
        let text = describe_error(&e);
        assert_eq!(text.matches("entity not found").count(), 1, "{text}");
        assert!(
            text.starts_with("loading the configuration: cannot read /x/y: "),
            "{text}"
        );
        // Distinct causes are all kept.
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(describe_error(&e), "top: middle: root");
    }
}
