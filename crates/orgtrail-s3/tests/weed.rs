//! The client against a real SeaweedFS that checks SigV4 signatures: paged and delimited
//! listings, streamed reads, user metadata, and each failure sorted into the kind a caller acts
//! on (refused credentials, missing bucket, missing or overwritten object).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use orgtrail_s3::test_server::Weed;
use orgtrail_s3::{Blocking, S3Error};

#[test]
fn listing_reading_metadata_and_each_failure_kind() {
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&dir.path().join("weed"));
    let b = weed.bucket("trail-test");

    let day = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/";
    for name in ["c", "a", "b"] {
        b.put(
            &format!("{day}{name}.json.gz"),
            name.repeat(10).into_bytes(),
            &[],
        )
        .unwrap();
    }
    b.put(
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/27/d.json.gz",
        b"{}".to_vec(),
        &[("signature", "ab12")],
    )
    .unwrap();

    // Pages of one key, in key order, across continuation tokens.
    let all = b.list_all(day, 1).unwrap();
    let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        ["a", "b", "c"]
            .map(|n| format!("{day}{n}.json.gz"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(all.iter().all(|o| o.size == 10 && !o.etag.is_empty()));
    // start-after skips up to and including the key.
    let p = b
        .list_page(day, false, Some(&all[0].key), None, 100)
        .unwrap();
    assert_eq!(p.objects.len(), 2);
    // A delimiter yields the "directories".
    let p = b
        .list_page("AWSLogs/111122223333/", true, None, None, 100)
        .unwrap();
    assert_eq!(
        p.prefixes,
        [
            "AWSLogs/111122223333/CloudTrail-Digest/",
            "AWSLogs/111122223333/CloudTrail/"
        ]
    );
    assert!(p.objects.is_empty());

    // A streamed read of a version, and the metadata of another object.
    let mut body = String::new();
    let mut r = b.open(&all[1].key, Some(&all[1].etag)).unwrap();
    r.read_to_string(&mut body).unwrap();
    assert_eq!(body, "b".repeat(10));
    assert_eq!(
        b.metadata(
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/27/d.json.gz",
            "signature"
        )
        .unwrap()
        .as_deref(),
        Some("ab12")
    );

    // A missing key; an overwritten one read by its old ETag.
    assert!(matches!(
        b.open(&format!("{day}zz.json.gz"), None),
        Err(S3Error::NotFound { .. })
    ));
    b.put(&all[2].key, b"new".to_vec(), &[]).unwrap();
    assert!(matches!(
        b.open(&all[2].key, Some(&all[2].etag)),
        Err(S3Error::Changed { .. })
    ));

    // A missing bucket, and a wrong secret: both permanent, with a message that names the
    // server's code and not the secret.
    let none = Blocking::owned(&weed.options("no-such-bucket")).unwrap();
    let e = none.list_page("AWSLogs/", true, None, None, 1).unwrap_err();
    assert!(
        matches!(e, S3Error::NoSuchBucket { .. }) && e.is_permanent(),
        "{e}"
    );

    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret-zz9\n").unwrap();
    let mut o = weed.options("trail-test");
    o.secret_access_key_file = Some(wrong);
    let bad = Blocking::owned(&o).unwrap();
    for e in [
        bad.list_page("AWSLogs/", true, None, None, 1).unwrap_err(),
        bad.open(&all[0].key, None).unwrap_err(),
    ] {
        let s = e.to_string();
        assert!(e.is_permanent(), "{s}");
        assert!(
            s.contains("refused the credentials (SignatureDoesNotMatch)"),
            "{s}"
        );
        assert!(!s.contains("not-the-secret-zz9"), "{s}");
    }
}
