//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod bench;
pub(crate) mod bench_parse;
pub(crate) mod bench_query;
pub(crate) mod bench_transport;
pub(crate) mod certs;
pub(crate) mod collector;
pub(crate) mod demo;
pub(crate) mod gen_events;
pub(crate) mod import;
pub(crate) mod ingest;
pub(crate) mod integrity;
pub(crate) mod keys;
pub(crate) mod lookup;
pub(crate) mod remote;
pub(crate) mod selectors;
pub(crate) mod stats;
pub(crate) mod validate;

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

/// True for the error a write gets when the reader of our stdout went away (`| head`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
