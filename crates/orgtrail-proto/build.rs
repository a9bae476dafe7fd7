//! Compiles `proto/orgtrail/v1/*.proto` with protox (pure Rust; no system `protoc`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        root.join("orgtrail/v1/ingest.proto"),
        root.join("orgtrail/v1/query.proto"),
        root.join("orgtrail/v1/integrity.proto"),
        root.join("orgtrail/v1/alerts.proto"),
        root.join("orgtrail/v1/insights.proto"),
    ];
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Event bytes as `bytes::Bytes`: the agent slices one spool read into a batch without
        // copying each event.
        .bytes(".orgtrail.v1.EventBatch.events")
        .compile_fds(fds)?;
    Ok(())
}
