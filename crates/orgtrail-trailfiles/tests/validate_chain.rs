//! `validate()` on a real trail tree: hourly digests chained and signed with a real RSA key,
//! then deleted, modified, moved, signed by another key; log files modified, deleted, added.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use orgtrail_trailfiles::{
    DirStore, FindingKind as K, PublicKeySet, Report, ValidateOptions, validate,
};
use support::{BUCKET, Keys, Signer, Trail};

struct Case {
    _dir: tempfile::TempDir,
    trail: Trail,
    keys: PublicKeySet,
}

fn case(hours: usize, signer: impl Fn(usize) -> Signer, gap_at: Option<usize>) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let trail = Trail::build(dir.path(), &keys, hours, signer, gap_at);
    let list = dir.path().join("keys.json");
    keys.write_list(&list);
    let set = PublicKeySet::from_json(&std::fs::read(&list).unwrap(), "keys.json").unwrap();
    Case {
        _dir: dir,
        trail,
        keys: set,
    }
}

fn honest(hours: usize) -> Case {
    case(hours, |_| Signer::Trail, None)
}

fn run(c: &Case) -> Report {
    run_with(c, &ValidateOptions::default())
}

fn run_with(c: &Case, opts: &ValidateOptions) -> Report {
    let store = DirStore::new(&c.trail.root, Some(BUCKET.into()), "").unwrap();
    validate(&store, &c.keys, opts).unwrap()
}

/// The findings as (key, kind), sorted.
fn found(r: &Report) -> BTreeSet<(String, K)> {
    r.findings.iter().map(|f| (f.key.clone(), f.kind)).collect()
}

fn set(items: &[(&str, K)]) -> BTreeSet<(String, K)> {
    items
        .iter()
        .map(|(k, kind)| ((*k).to_owned(), *kind))
        .collect()
}

#[test]
fn an_intact_trail_is_valid() {
    let c = honest(5);
    let r = run(&c);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.is_valid());
    assert_eq!((r.digests_valid, r.digests_invalid), (5, 0));
    assert_eq!((r.logs_valid, r.logs_invalid), (10, 0));
    assert_eq!(r.chains, 1);
    assert_eq!(r.found_start.as_deref(), Some("2024-03-01T00:00:00Z"));
    assert_eq!(r.found_end.as_deref(), Some("2024-03-01T05:00:00Z"));
}

#[test]
fn a_copy_of_a_prefix_is_valid_when_the_prefix_is_given() {
    // `aws s3 sync s3://bucket/pre/fix DIR`: DIR stands for the keys under the prefix.
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    Trail::build_under(dir.path(), "pre/fix/", &keys, 3, |_| Signer::Trail, None);
    keys.write_list(&dir.path().join("keys.json"));
    let set = PublicKeySet::from_json(&std::fs::read(dir.path().join("keys.json")).unwrap(), "k")
        .unwrap();
    let synced = dir.path().join("pre/fix");
    let store = DirStore::new(&synced, Some(BUCKET.into()), "pre/fix").unwrap();
    let r = validate(&store, &set, &ValidateOptions::default()).unwrap();
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!((r.digests_valid, r.logs_valid), (3, 6));
    // Without the prefix, every digest lies elsewhere than it says: all moved.
    let store = DirStore::new(&synced, Some(BUCKET.into()), "").unwrap();
    let r = validate(&store, &set, &ValidateOptions::default()).unwrap();
    assert_eq!(r.digests_valid, 0);
    assert!(
        r.findings.iter().any(|f| f.kind == K::DigestMoved),
        "{:#?}",
        r.findings
    );
    // The bucket is checked when it is known.
    let store = DirStore::new(&synced, Some("other-bucket".into()), "pre/fix").unwrap();
    let r = validate(&store, &set, &ValidateOptions::default()).unwrap();
    assert_eq!(r.digests_valid, 0);
    assert!(
        r.findings.iter().any(|f| f.kind == K::DigestMoved),
        "{:#?}",
        r.findings
    );
}

#[test]
fn a_deleted_digest_is_missing_by_key() {
    let c = honest(5);
    let d = &c.trail.digests;
    std::fs::remove_file(c.trail.path(&d[2])).unwrap();
    let r = run(&c);
    assert!(!r.is_valid());
    // Offline, the digest below the hole has no signature left (its successor is gone), and
    // the deleted digest's log files are now vouched for by nothing.
    let l = &c.trail.logs[2];
    assert_eq!(
        found(&r),
        set(&[
            (&d[2], K::DigestMissing),
            (&d[1], K::DigestNoSignature),
            (&l[0], K::LogUnlisted),
            (&l[1], K::LogUnlisted),
        ])
    );
    assert_eq!((r.digests_valid, r.digests_invalid), (3, 2));
}

#[test]
fn with_s3_metadata_the_digest_below_a_deleted_one_still_verifies() {
    let c = honest(5);
    let d = &c.trail.digests;
    c.trail.save_signature(1);
    std::fs::remove_file(c.trail.path(&d[2])).unwrap();
    let r = run(&c);
    let l = &c.trail.logs[2];
    assert_eq!(
        found(&r),
        set(&[
            (&d[2], K::DigestMissing),
            (&l[0], K::LogUnlisted),
            (&l[1], K::LogUnlisted),
        ])
    );
    assert_eq!((r.digests_valid, r.digests_invalid), (4, 1));
}

#[test]
fn two_deleted_digests_in_a_row_are_both_reported() {
    // aws-cli reports one "not found" here (aws/aws-cli#7054).
    let c = honest(6);
    let d = &c.trail.digests;
    c.trail.save_signature(1);
    std::fs::remove_file(c.trail.path(&d[3])).unwrap();
    std::fs::remove_file(c.trail.path(&d[2])).unwrap();
    let r = run(&c);
    let kinds = found(&r);
    assert!(
        kinds.contains(&(d[3].clone(), K::DigestMissing)),
        "{kinds:#?}"
    );
    // The second one is named by no surviving digest: it is reported at the digest found
    // below the hole, with the count.
    assert!(
        kinds.contains(&(d[1].clone(), K::DigestsMissingBefore)),
        "{kinds:#?}"
    );
    let before = r
        .findings
        .iter()
        .find(|f| f.kind == K::DigestsMissingBefore)
        .unwrap();
    assert!(
        before.message.starts_with(
            "1 more digest between this one (ending 2024-03-01T02:00:00Z) and the missing "
        ),
        "{}",
        before.message
    );
    assert_eq!(r.digests_invalid, 2);
    assert_eq!(r.digests_valid, 4);
    for l in c.trail.logs[2].iter().chain(&c.trail.logs[3]) {
        assert!(kinds.contains(&(l.clone(), K::LogUnlisted)), "{l}");
    }
}

#[test]
fn a_modified_digest_fails_its_signature_and_its_successors_hash() {
    let c = honest(5);
    let d = &c.trail.digests;
    let mut v = c.trail.read_json(&d[2]);
    v["logFiles"][0]["hashValue"] = "00".repeat(32).into();
    c.trail.write_json(&d[2], &v);
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[
            (&d[2], K::DigestChainMismatch),
            (&d[2], K::DigestBadSignature)
        ])
    );
    // The digest below still verifies with the signature the modified one carries.
    assert_eq!((r.digests_valid, r.digests_invalid), (4, 1));
}

#[test]
fn a_renamed_digest_is_reported_as_moved() {
    let c = honest(5);
    let d = &c.trail.digests;
    let renamed = d[2].replace("T030000Z", "T033000Z");
    assert_ne!(renamed, d[2]);
    std::fs::rename(c.trail.path(&d[2]), c.trail.path(&renamed)).unwrap();
    let r = run(&c);
    let kinds = found(&r);
    assert!(
        kinds.contains(&(d[2].clone(), K::DigestMissing)),
        "{kinds:#?}"
    );
    assert!(
        kinds.contains(&(renamed.clone(), K::DigestMoved)),
        "{kinds:#?}"
    );
    assert!(!r.is_valid());
}

#[test]
fn reordered_digests_are_both_reported_as_moved() {
    let c = honest(5);
    let d = &c.trail.digests;
    let a = std::fs::read(c.trail.path(&d[1])).unwrap();
    let b = std::fs::read(c.trail.path(&d[2])).unwrap();
    std::fs::write(c.trail.path(&d[1]), b).unwrap();
    std::fs::write(c.trail.path(&d[2]), a).unwrap();
    let r = run(&c);
    let kinds = found(&r);
    assert!(
        kinds.contains(&(d[1].clone(), K::DigestMoved)),
        "{kinds:#?}"
    );
    assert!(
        kinds.contains(&(d[2].clone(), K::DigestMoved)),
        "{kinds:#?}"
    );
    assert!(
        kinds.contains(&(d[2].clone(), K::DigestChainMismatch)),
        "{kinds:#?}"
    );
    assert!(!r.is_valid());
}

#[test]
fn a_digest_signed_by_a_foreign_key_is_reported() {
    let c = case(
        5,
        |i| {
            if i == 2 {
                Signer::Foreign
            } else {
                Signer::Trail
            }
        },
        None,
    );
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[(&c.trail.digests[2], K::DigestUnknownKey)])
    );
    assert_eq!((r.digests_valid, r.digests_invalid), (4, 1));

    let c = case(
        5,
        |i| {
            if i == 2 {
                Signer::ForeignClaimingTrail
            } else {
                Signer::Trail
            }
        },
        None,
    );
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[(&c.trail.digests[2], K::DigestBadSignature)])
    );
}

#[test]
fn modified_missing_broken_and_unlisted_log_files_are_reported_by_key() {
    let c = honest(4);
    let logs = &c.trail.logs;
    // modified: valid gzip, other content
    std::fs::write(
        c.trail.path(&logs[1][0]),
        support::gzip(b"{\"Records\":[]}"),
    )
    .unwrap();
    // missing
    std::fs::remove_file(c.trail.path(&logs[2][1])).unwrap();
    // trailing data after the gzip member
    let mut junk = std::fs::read(c.trail.path(&logs[0][1])).unwrap();
    junk.extend_from_slice(b"tail");
    std::fs::write(c.trail.path(&logs[0][1]), junk).unwrap();
    // unlisted: a file CloudTrail never vouched for, inside the covered period
    let extra = support::log_key(support::T0 + 3600 + 20 * 60, "planted");
    support::write(&c.trail.root, &extra, &support::gzip(b"{\"Records\":[]}"));
    // ...and one after the newest digest began: still waiting for its digest, not blamed
    let late = support::log_key(support::T0 + 3 * 3600 + 50 * 60, "late");
    support::write(&c.trail.root, &late, &support::gzip(b"{\"Records\":[]}"));
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[
            (&logs[1][0], K::LogModified),
            (&logs[2][1], K::LogMissing),
            (&logs[0][1], K::LogInvalidFormat),
            (&extra, K::LogUnlisted),
        ])
    );
    assert_eq!((r.digests_valid, r.digests_invalid), (4, 0));
    assert_eq!((r.logs_valid, r.logs_invalid), (5, 4));
    assert!(!r.is_valid());
}

#[test]
fn the_newest_digest_needs_its_saved_signature() {
    let c = honest(3);
    let d = &c.trail.digests;
    std::fs::remove_file(c.trail.path(&format!("{}.sig", d[2]))).unwrap();
    let r = run(&c);
    assert_eq!(found(&r), set(&[(&d[2], K::DigestNoSignature)]));
    let msg = &r.findings[0].message;
    assert!(msg.contains(".sig"), "{msg}");
    // The rest of the chain still verifies from the newest digest's previousDigestSignature.
    assert_eq!((r.digests_valid, r.digests_invalid), (2, 1));

    // A sidecar that disagrees with the chain: the metadata of a digest is compared with
    // its successor's previousDigestSignature.
    let c = honest(3);
    let d = &c.trail.digests;
    let wrong = c.trail.signature_of(0);
    std::fs::write(c.trail.path(&format!("{}.sig", d[1])), wrong).unwrap();
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[
            (&d[1], K::DigestChainMismatch),
            (&d[1], K::DigestBadSignature)
        ])
    );
}

#[test]
fn a_gap_is_reported_but_not_invalid() {
    let c = case(5, |_| Signer::Trail, Some(3));
    let d = &c.trail.digests;
    // Offline, the digest before a gap needs its own saved signature: nothing names it.
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[(&d[3], K::Gap), (&d[2], K::DigestNoSignature)])
    );
    c.trail.save_signature(2);
    let r = run(&c);
    assert_eq!(found(&r), set(&[(&d[3], K::Gap)]));
    assert!(r.is_valid());
    assert_eq!((r.digests_valid, r.logs_valid), (5, 10));
    assert_eq!(
        r.findings[0].message,
        "no log files were delivered by CloudTrail between 2024-03-01T03:00:00Z and 2024-03-01T03:00:00Z"
    );
}

#[test]
fn the_time_range_limits_what_is_counted() {
    let c = honest(6);
    let d = &c.trail.digests;
    std::fs::remove_file(c.trail.path(&d[0])).unwrap();
    let opts = ValidateOptions {
        start: Some(orgtrail_core::Timestamp::parse("2024-03-01T02:00:00Z").unwrap()),
        end: Some(orgtrail_core::Timestamp::parse("2024-03-01T03:30:00Z").unwrap()),
        ..ValidateOptions::default()
    };
    let r = run_with(&c, &opts);
    // Digests stamped 03:00, 04:00 (end + 1 hour) are counted and carry the chain from the
    // newest one's signature; the deleted 01:00 one is outside the range.
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.digests_valid, 3, "{r:#?}");
}

#[test]
fn a_longer_hole_is_one_finding_that_says_how_long() {
    let c = honest(7);
    let d = &c.trail.digests;
    c.trail.save_signature(1);
    for key in &d[2..5] {
        std::fs::remove_file(c.trail.path(key)).unwrap();
    }
    let r = run(&c);
    let before = r
        .findings
        .iter()
        .find(|f| f.kind == K::DigestsMissingBefore)
        .unwrap();
    assert_eq!(before.key, d[1]);
    assert!(
        before
            .message
            .starts_with("up to 2 more digests (or a period when logging was off)"),
        "{}",
        before.message
    );
    // d[4] named as missing, plus one finding for the rest of the hole.
    assert_eq!((r.digests_valid, r.digests_invalid), (4, 2));
}

#[test]
fn backfill_digests_are_a_chain_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let standard = Trail::build(dir.path(), &keys, 3, |_| Signer::Trail, None);
    let backfill = Trail::build_backfill(dir.path(), &keys, 3);
    keys.write_list(&dir.path().join("keys.json"));
    let key_set =
        PublicKeySet::from_json(&std::fs::read(dir.path().join("keys.json")).unwrap(), "k")
            .unwrap();
    let c = Case {
        _dir: dir,
        trail: standard,
        keys: key_set,
    };
    let r = run(&c);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!((r.chains, r.digests_valid), (2, 6));
    // Each chain needs its own newest signature.
    std::fs::remove_file(backfill.path(&format!("{}.sig", backfill.digests[2]))).unwrap();
    let r = run(&c);
    assert_eq!(
        found(&r),
        set(&[(&backfill.digests[2], K::DigestNoSignature)])
    );
    assert_eq!(r.digests_valid, 5);
}
