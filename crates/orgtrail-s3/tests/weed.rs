//! The client against a real SeaweedFS that checks SigV4 signatures: paged and delimited
//! listings, streamed reads, user metadata, and each failure sorted into the kind a caller acts
//! on (refused credentials, missing bucket, missing or overwritten object); and, behind a proxy
//! that hides the ETags, the same reads by size and last-modified time, without `If-Match`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use orgtrail_s3::test_server::Weed;
use orgtrail_s3::{Blocking, S3Error, Version};

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
    assert!(
        all.iter()
            .all(|o| o.size == 10 && o.version.etag().is_some_and(|t| !t.is_empty()))
    );
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
    let mut r = b.open(&all[1].key, Some(&all[1].version)).unwrap();
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
        b.open(&all[2].key, Some(&all[2].version)),
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
    let etag = b
        .put("AWSLogs/big.json.gz", body.clone(), &[])
        .unwrap()
        .expect("SeaweedFS answers a PUT with an ETag");

    // Through a proxy that cuts the first connection 1 MB into the answer.
    let mut o = weed.options("trail-cut");
    o.endpoint = Some(format!(
        "http://127.0.0.1:{}",
        cutting_proxy(weed.s3_port(), 1_000_000)
    ));
    o.max_retries = 0;
    let c = Blocking::owned(&o).unwrap();
    let mut r = c
        .open("AWSLogs/big.json.gz", Some(&Version::ETag(etag)))
        .unwrap();
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

/// A loopback HTTP proxy to `to` that makes it a server sending no ETag: each request is
/// passed on with `Connection: close` (one response per connection), and each response read
/// whole and passed back with its `ETag` header renamed and a listing's `<ETag>` elements
/// blanked (same lengths, so its Content-Length holds). The first response longer than
/// `cut_after` bytes is cut there (a body that breaks off). Counts the requests that carried
/// an `If-Match`.
fn etagless_proxy(to: u16, cut_after: usize) -> (u16, Arc<AtomicUsize>) {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let if_match = Arc::new(AtomicUsize::new(0));
    let seen = if_match.clone();
    let cut = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut client) = c else { return };
            let mut server = TcpStream::connect(("127.0.0.1", to)).unwrap();
            // The request's head, with `Connection: close` after its first line.
            let mut head = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let Some(line) = head.windows(2).position(|w| w == b"\r\n") else {
                continue;
            };
            if String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .contains("\r\nif-match:")
            {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            head.splice(line + 2..line + 2, b"Connection: close\r\n".iter().copied());
            server.write_all(&head).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
            });
            let cut = cut.clone();
            std::thread::spawn(move || {
                let mut resp = Vec::new();
                let _ = server.read_to_end(&mut resp);
                let end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
                let lower = resp[..end].to_ascii_lowercase();
                for i in 0..end.saturating_sub(7) {
                    if &lower[i..i + 7] == b"\r\netag:" {
                        resp[i + 2..i + 6].copy_from_slice(b"XTag");
                    }
                }
                let mut i = end;
                while let Some(open) = find(&resp[i..], b"<ETag>") {
                    let start = i + open;
                    let Some(close) = find(&resp[start..], b"</ETag>") else {
                        break;
                    };
                    let stop = start + close + b"</ETag>".len();
                    resp[start..stop].fill(b' ');
                    i = stop;
                }
                if resp.len() > cut_after && !cut.swap(true, Ordering::SeqCst) {
                    resp.truncate(cut_after);
                }
                let _ = client.write_all(&resp);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    (port, if_match)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn without_etags_an_object_is_read_by_size_and_last_modified_and_never_with_an_empty_if_match() {
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&dir.path().join("weed"));
    let b = weed.bucket("trail-noetag");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    b.put("AWSLogs/a-big.json.gz", body.clone(), &[]).unwrap();
    b.put("AWSLogs/b-small.json.gz", b"0123456789".to_vec(), &[])
        .unwrap();

    let (port, if_match) = etagless_proxy(weed.s3_port(), 1_000_000);
    let mut o = weed.options("trail-noetag");
    o.endpoint = Some(format!("http://127.0.0.1:{port}"));
    o.max_retries = 0;
    let c = Blocking::owned(&o).unwrap();
    let all = c.list_all("AWSLogs/", 1000).unwrap();
    assert_eq!(all.len(), 2);
    for l in &all {
        assert!(
            matches!(l.version, Version::SizeModified { size, .. } if size == l.size),
            "{l:?}"
        );
    }

    // A body that breaks off is asked for again, by its size and last-modified time.
    let mut r = c.open(&all[0].key, Some(&all[0].version)).unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert!(got == body, "read {} bytes of {}", got.len(), body.len());
    assert_eq!(r.resumes(), 1, "asked again once, from where it stopped");
    assert_eq!(r.version(), &all[0].version);

    // Overwritten with another size: the listed version is refused, and the next listing
    // shows another version (overwrite detection compares these).
    b.put(&all[1].key, b"another, longer body".to_vec(), &[])
        .unwrap();
    assert!(matches!(
        c.open(&all[1].key, Some(&all[1].version)),
        Err(S3Error::Changed { .. })
    ));
    let again = c.list_all("AWSLogs/", 1000).unwrap();
    assert_ne!(again[1].version, all[1].version);
    assert_eq!(if_match.load(Ordering::SeqCst), 0, "no If-Match was sent");
}
