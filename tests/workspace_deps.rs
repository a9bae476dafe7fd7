//! The dependency graph holds the architecture: no ring, no OpenSSL, and internal crates
//! depend only in the allowed directions (see STYLE: core -> nothing internal; proto,
//! crypto -> core; store -> core, crypto; ...).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// `cargo tree -i NAME` over every target and edge kind: what depends on NAME in the graph
/// cargo actually builds (features resolved), empty when nothing does.
fn inverse_tree(name: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--workspace",
            "--locked",
            "--target",
            "all",
            "-e",
            "all",
            "-i",
            name,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_ring_and_no_openssl_anywhere_in_the_graph() {
    for banned in ["ring", "openssl-sys", "openssl", "native-tls"] {
        let tree = inverse_tree(banned);
        assert!(
            tree.trim().is_empty(),
            "{banned} is in the dependency graph:\n{tree}"
        );
    }
    // The check is not vacuous: the provider we do use shows up, under tonic's TLS.
    let aws = inverse_tree("aws-lc-rs");
    assert!(aws.contains("rustls"), "{aws}");
    assert!(aws.contains("tonic"), "{aws}");
}

#[test]
fn internal_crates_depend_only_in_allowed_directions() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("orgtrail-core", &[][..]),
        ("orgtrail-proto", &["orgtrail-core"][..]),
        ("orgtrail-crypto", &["orgtrail-core"][..]),
        ("orgtrail-gen", &[][..]),
        ("orgtrail-store", &["orgtrail-core", "orgtrail-crypto"][..]),
        // The ops listener (HTTP health, readiness, metrics) of the collector and the agent.
        ("orgtrail-ops", &[][..]),
        // A client of the collector (CLI readers, the demo, the benches): the wire, the TLS
        // configuration, and the store's query types.
        (
            "orgtrail-client",
            &[
                "orgtrail-core",
                "orgtrail-proto",
                "orgtrail-crypto",
                "orgtrail-store",
            ][..],
        ),
        // S3 (issue 16): the only owner of object_store, with no internal dependency.
        ("orgtrail-s3", &[][..]),
        // EventBridge patterns and the rule engine: JSON in, rule numbers out.
        ("orgtrail-rules", &["orgtrail-core"][..]),
        // Insights: calls in, Insight events and a serializable state out (no I/O).
        ("orgtrail-insights", &["orgtrail-core"][..]),
        // CloudTrail's files in a bucket or a directory: key layout, digests, validate-logs
        // (issue 16); RSA verification and SHA-256 through orgtrail-crypto; buckets read in place
        // through orgtrail-s3.
        (
            "orgtrail-trailfiles",
            &["orgtrail-core", "orgtrail-crypto", "orgtrail-s3"][..],
        ),
        (
            "orgtrail-collector",
            &[
                "orgtrail-core",
                "orgtrail-proto",
                "orgtrail-crypto",
                "orgtrail-store",
                "orgtrail-ops",
                "orgtrail-rules",
                // Insights: the detector fed with stored events (issue 15).
                "orgtrail-insights",
                // The continuous archive sink: the export in CloudTrail's layout (issue 16).
                "orgtrail-trailfiles",
                // The archive sink's S3 target (`[archive.s3]`, issue 16).
                "orgtrail-s3",
            ][..],
        ),
        (
            "orgtrail-agent",
            &[
                "orgtrail-core",
                "orgtrail-proto",
                "orgtrail-crypto",
                "orgtrail-store",
                "orgtrail-ops",
                // The trail selectors and the field-path layer they share with the rules.
                "orgtrail-rules",
                // The `s3` source's client (issue 16).
                "orgtrail-s3",
                // The `s3` and `cloudtrail_dir` sources check CloudTrail digests with
                // validate-logs' own checks (issue 16).
                "orgtrail-trailfiles",
            ][..],
        ),
    ]);
    let md = metadata();
    let members: BTreeSet<&str> = md["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut checked = 0;
    for p in md["packages"].as_array().unwrap() {
        if !members.contains(p["id"].as_str().unwrap()) {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        if name == "orgtrail-cli" || name == "orgtrail-testkit" {
            continue; // the binary may use everything; the testkit is dev-only
        }
        let ok = allowed
            .get(name)
            .unwrap_or_else(|| panic!("new crate {name}: add its allowed edges to this test"));
        for dep in p["dependencies"].as_array().unwrap() {
            let d = dep["name"].as_str().unwrap();
            if !d.starts_with("orgtrail-") {
                continue;
            }
            let dev_only = dep["kind"].as_str() == Some("dev");
            if d == "orgtrail-testkit" {
                assert!(dev_only, "{name} uses the testkit outside dev-dependencies");
                continue;
            }
            assert!(
                ok.contains(&d) || (dev_only && d != name),
                "{name} must not depend on {d}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 3);
}

#[test]
fn core_and_insights_stay_free_of_io_runtimes() {
    let md = metadata();
    for name in ["orgtrail-core", "orgtrail-insights"] {
        let krate = md["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        for dep in krate["dependencies"].as_array().unwrap() {
            let d = dep["name"].as_str().unwrap();
            assert!(
                !["tokio", "tonic", "sled", "rustls", "aws-lc-rs"].contains(&d),
                "{name} must not depend on {d}"
            );
        }
    }
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Inside the store, sled is named only by its backend module (`src/kv.rs`): every other
/// module holds a database through the backend's types, so another backend replaces one
/// module. Comments may speak of sled; code may not name it.
#[test]
fn the_store_names_sled_only_in_its_backend_module() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../orgtrail-store/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "the store's sources are found");
    let mut named = Vec::new();
    for f in &files {
        if f.ends_with("kv.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("sled::") || code.contains("use sled") {
                named.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        named.is_empty(),
        "sled named outside kv.rs:\n{}",
        named.join("\n")
    );
}
