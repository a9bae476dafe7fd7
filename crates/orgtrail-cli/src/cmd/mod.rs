//! One module per subcommand.

pub(crate) mod gen_events;
pub(crate) mod import;
pub(crate) mod keys;
pub(crate) mod lookup;
pub(crate) mod validate;

use std::io;

/// True for the error a write gets when the reader of our stdout went away (`| head`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
