//! SQL over an archive with an engine people already run: DuckDB (PyPI `duckdb`, installed by
//! scripts/test-deps) runs the view of docs/archive-sql.md, as the page shows it, over an
//! `orgtrail export` of a store, and its counts by account, region, service, call, user and
//! error code are the counts `orgtrail stats` gives for the same store; so are those of the
//! Parquet file the page's `COPY` makes of the view.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use org::p;

/// (group values, count), sorted.
type Counts = Vec<(Vec<String>, u64)>;

/// The `CREATE VIEW cloudtrail` block of docs/archive-sql.md, reading `archive`.
fn documented_view(archive: &Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/archive-sql.md")).unwrap();
    let view = doc
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.starts_with("CREATE VIEW cloudtrail AS"))
        .expect("docs/archive-sql.md has the DuckDB view");
    assert!(view.contains("'archive/AWSLogs/"), "{view}");
    view.replace("'archive/AWSLogs/", &format!("'{}/AWSLogs/", p(archive)))
}

/// Runs `view` then `query` in DuckDB; the rows, each value a string ("-" for NULL).
fn duckdb(view: &str, query: &str) -> Vec<Vec<String>> {
    const SCRIPT: &str = r#"
import json, sys
try:
    import duckdb
except ImportError:
    sys.exit("PyPI duckdb is missing: run scripts/test-deps")
con = duckdb.connect()
con.execute(sys.argv[1])
rows = con.execute(sys.argv[2]).fetchall()
print(json.dumps([["-" if v is None else str(v) for v in r] for r in rows]))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, view, query])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `orgtrail stats --by BY` of the store, every group.
fn stats(dir: &Path, by: &str) -> Counts {
    let text = archive::stats(&dir.join("data"), &dir.join("keys"), by);
    let mut out: Counts = Vec::new();
    for line in text.lines().skip(1) {
        if line.is_empty() || line.starts_with('(') {
            break;
        }
        let cells: Vec<String> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let (count, groups) = cells.split_last().unwrap();
        out.push((groups.to_vec(), count.parse().unwrap()));
    }
    assert!(!out.is_empty(), "{text}");
    out.sort();
    out
}

fn sql_counts(view: &str, columns: &str) -> Counts {
    to_counts(duckdb(
        view,
        &format!("SELECT {columns}, count(*) FROM cloudtrail GROUP BY ALL"),
    ))
}

/// Rows of (group values..., count), sorted.
fn to_counts(rows: Vec<Vec<String>>) -> Counts {
    let mut out: Counts = rows
        .into_iter()
        .map(|mut r| {
            let n = r.pop().unwrap().parse().unwrap();
            (r, n)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn duckdb_over_an_export_counts_what_orgtrail_stats_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    archive::store(
        d,
        &[("4", "2026-11-01T00:00:00Z"), ("5", "2026-11-02T09:00:00Z")],
        2000,
    );
    let o = archive::export(
        &d.join("data"),
        &d.join("keys"),
        &p(&d.join("archive")),
        &[],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));

    let view = documented_view(&d.join("archive"));
    let total = duckdb(
        &view,
        "SELECT count(*), count(DISTINCT eventID) FROM cloudtrail",
    );
    assert_eq!(total, vec![vec!["4000".to_owned(), "4000".to_owned()]]);
    for (by, columns) in [
        ("account", "recipientAccountId"),
        ("region", "awsRegion"),
        ("eventSource,eventName", "eventSource, eventName"),
        ("user", "userName"),
        ("user,errorCode", "userName, errorCode"),
    ] {
        let want = stats(d, by);
        let got = sql_counts(&view, columns);
        if got != want {
            let w: BTreeMap<_, _> = want.into_iter().collect();
            let g: BTreeMap<_, _> = got.into_iter().collect();
            let differ: Vec<_> = w
                .keys()
                .chain(g.keys())
                .filter(|k| w.get(*k) != g.get(*k))
                .map(|k| (k, w.get(k), g.get(k)))
                .collect();
            panic!("--by {by}: (group, stats, duckdb) differ: {differ:?}");
        }
    }

    // Parquet, as the page materialises it, answers the same counts: it holds every event.
    let parquet = d.join("events.parquet");
    duckdb(
        &view,
        &format!("COPY (SELECT * FROM cloudtrail) TO '{}'", p(&parquet)),
    );
    let from_parquet = to_counts(duckdb(
        "SELECT 1",
        &format!(
            "SELECT recipientAccountId, count(*) FROM read_parquet('{}') GROUP BY ALL",
            p(&parquet)
        ),
    ));
    assert_eq!(from_parquet, stats(d, "account"));
}
