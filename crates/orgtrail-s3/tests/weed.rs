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

/// A loopback TCP proxy to `to` that cuts the first connection after `cut_after` bytes from
/// the server (a body that breaks off mid-transfer); later connections pass whole.
fn cutting_proxy(to: u16, cut_after: usize) -> u16 {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let first = Arc::new(AtomicBool::new(true));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { return };
            let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
            let cut = first.swap(false, Ordering::SeqCst);
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut s_in, mut c_out) = (server, client);
                let mut sent = 0usize;
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = if cut { n.min(cut_after - sent) } else { n };
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if cut && sent >= cut_after {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = s_in.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_body_that_breaks_off_is_read_whole_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&dir.path().join("weed"));
    let b = weed.bucket("trail-cut");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let etag = b.put("AWSLogs/big.json.gz", body.clone(), &[]).unwrap();

    // Through a proxy that cuts the first connection 1 MB into the answer.
    let mut o = weed.options("trail-cut");
    o.endpoint = Some(format!(
        "http://127.0.0.1:{}",
        cutting_proxy(weed.s3_port(), 1_000_000)
    ));
    o.max_retries = 0;
    let c = Blocking::owned(&o).unwrap();
    let mut r = c.open("AWSLogs/big.json.gz", Some(&etag)).unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert!(
        got == body,
        "read {} bytes, the object has {}",
        got.len(),
        body.len()
    );
    assert!(r.failure().get().is_none());
    assert_eq!(r.resumes(), 1, "asked again once, from where it stopped");
}
