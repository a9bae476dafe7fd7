//! `orgtrail validate` on real CloudTrail files, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixtures, gzip, run, stdout};

fn logfile() -> std::path::PathBuf {
    fixtures().join("corpus/logfiles/aws-kms-developer-guide_ct-ec2two_02.json")
}

#[test]
fn a_delivered_log_file_is_valid() {
    let out = run(&["validate", logfile().to_str().unwrap()], b"");
    assert_eq!(stdout(&out), "valid=4 invalid=0\n");
    assert!(out.status.success());
}

#[test]
fn a_gzipped_log_file_in_cloudtrail_layout_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir
        .path()
        .join("111122223333_CloudTrail_us-east-1_20240102T0305Z_abcd.json.gz");
    std::fs::write(&name, gzip(&std::fs::read(logfile()).unwrap())).unwrap();
    let out = run(&["validate", name.to_str().unwrap()], b"");
    assert_eq!(stdout(&out), "valid=4 invalid=0\n");
    assert!(out.status.success());
}

#[test]
fn the_whole_real_corpus_is_valid() {
    let events = fixtures().join("corpus/events");
    let mut args = vec!["validate".to_string()];
    for f in [
        "awsdocs.jsonl",
        "opensearch-catalog.jsonl",
        "panther-analysis.jsonl",
    ] {
        args.push(events.join(f).display().to_string());
    }
    for entry in std::fs::read_dir(fixtures().join("corpus/logfiles")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            args.push(p.display().to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, b"");
    assert_eq!(stdout(&out), "valid=1420 invalid=0\n");
    assert!(out.status.success());
}

#[test]
fn stdin_is_read_with_a_dash() {
    let text = std::fs::read(fixtures().join("corpus/events/awsdocs.jsonl")).unwrap();
    let out = run(&["validate", "-"], &text);
    assert_eq!(stdout(&out), "valid=107 invalid=0\n");
    let out = run(&["validate", "-"], &gzip(&text));
    assert_eq!(stdout(&out), "valid=107 invalid=0\n");
}

#[test]
fn invalid_events_are_named_by_position_and_reason() {
    let good = r#"{"eventVersion":"1.08","eventID":"a","eventTime":"2024-01-02T03:04:05Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets"}"#;
    let no_time = r#"{"eventVersion":"1.08","eventID":"b","eventSource":"s3.amazonaws.com","eventName":"ListBuckets"}"#;
    let bad_time = good.replace("2024-01-02T03:04:05Z", "redacted");
    let input = format!("{good}\n{no_time}\n{{oops\n{bad_time}\n[]\n");
    let out = run(&["validate", "-"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "-: line 2: event has no `eventTime`\n\
         -: line 3: event is not JSON: syntax error at line 1 column 2\n\
         -: line 4: event's `eventTime` is invalid: not a timestamp (too short); expected RFC 3339 such as 2014-03-06T21:22:54Z\n\
         -: line 5: event is an array, not a JSON object\n\
         valid=1 invalid=4\n"
    );
    let quiet = run(&["validate", "--quiet", "-"], input.as_bytes());
    assert_eq!(stdout(&quiet), "valid=1 invalid=4\n");
}

#[test]
fn unreadable_inputs_are_reported_and_the_rest_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.json.gz");
    let mut gz = gzip(&std::fs::read(logfile()).unwrap());
    let n = gz.len();
    gz[n / 2] ^= 0x55;
    gz.truncate(n - 8);
    std::fs::write(&corrupt, gz).unwrap();
    let missing = dir.path().join("missing.json");
    let out = run(
        &[
            "validate",
            missing.to_str().unwrap(),
            corrupt.to_str().unwrap(),
            logfile().to_str().unwrap(),
        ],
        b"",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("missing.json: cannot open: No such file"),
        "{text}"
    );
    assert!(text.contains("corrupt.json.gz: "), "{text}");
    assert!(text.contains("gzip"), "{text}");
    assert!(text.ends_with("valid=4 invalid=2\n"), "{text}");
}

#[test]
fn a_gzip_bomb_is_refused() {
    let mut doc = b"{\"Records\":[".to_vec();
    doc.extend(std::iter::repeat_n(b' ', 32 << 20));
    doc.extend_from_slice(b"]}");
    let out = run(
        &["validate", "--max-input-bytes", "1048576", "-"],
        &gzip(&doc),
    );
    assert_eq!(out.status.code(), Some(1));
    // Standard input is decoded in one pass: the limit stops it while it is being read.
    assert_eq!(
        stdout(&out),
        "-: input stopped being readable: input is larger than the limit of 1048576 bytes (after decompression)\nvalid=0 invalid=1\n"
    );
}

#[test]
fn help_and_version_explain_themselves() {
    let out = run(&["--version"], b"");
    assert_eq!(
        stdout(&out),
        format!("orgtrail {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["validate", "--help"], b"");
    let help = stdout(&out);
    for word in [
        "Records",
        "JSON lines",
        "valid=N invalid=M",
        "--format",
        "Exit status",
    ] {
        assert!(help.contains(word), "validate --help lacks {word}: {help}");
    }
    let out = run(&["validate"], b"");
    assert_eq!(out.status.code(), Some(2));
}
