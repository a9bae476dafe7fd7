#![allow(clippy::unwrap_used)]
use super::*;
use std::os::unix::fs::PermissionsExt;

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn dead(reason: &str, bytes: &[u8]) -> NewDead {
    NewDead {
        source: "test".into(),
        reason: reason.into(),
        bytes: bytes.to_vec(),
    }
}

fn event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2026-11-24T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","recipientAccountId":"111122223333"}}"#
    )
    .into_bytes()
}

fn all_firsts(s: &Spool) -> Vec<u64> {
    std::iter::successors(s.chunk_from(0).unwrap(), |c| {
        s.chunk_from(c.first_seq + 1).unwrap()
    })
    .map(|c| c.first_seq)
    .collect()
}

/// Every file under `dir`, recursively, with its bytes.
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn chunks_survive_reopen_and_leave_only_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Vec<u8>> = (0..25).map(|i| format!("event-{i}").into_bytes()).collect();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&events, &[dead("line 3: not JSON", b"{oops")], 10, 1 << 20)
            .unwrap();
    }
    let mut s = Spool::open_dir(dir.path()).unwrap();
    // The dead letter took seq 1; the chunks follow.
    let c1 = s.chunk_from(0).unwrap().unwrap();
    let len1 = c1.stored_len;
    assert_eq!((c1.first_seq, c1.events.len()), (2, 10));
    let c2 = s.chunk_from(c1.first_seq + 10).unwrap().unwrap();
    assert_eq!((c2.first_seq, &c2.events[0][..]), (12, &b"event-10"[..]));
    let len2 = c2.stored_len;
    s.acknowledge((2, len1), &[(2, "wrong account".into())])
        .unwrap();
    assert_eq!(s.chunk_from(0).unwrap().unwrap().first_seq, 12);
    s.acknowledge((12, len2), &[]).unwrap();
    let c3 = s.chunk_from(22).unwrap().unwrap();
    s.acknowledge((22, c3.stored_len), &[]).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.pending_bytes(), 0);
    let dl = s.dead_letters().unwrap();
    assert_eq!(dl.len(), 2);
    assert_eq!((dl[0].seq, &dl[0].bytes[..]), (1, &b"{oops"[..]));
    assert_eq!(dl[0].reason, "line 3: not JSON");
    assert_eq!((dl[1].seq, &dl[1].bytes[..]), (4, &b"event-2"[..]));
    assert_eq!(
        (dl[1].reason.as_str(), dl[1].source.as_str()),
        ("wrong account", "collector")
    );
    // A clean stop deletes the drained segment that was being written.
    s.flush().unwrap();
    assert!(
        segments(dir.path()).is_empty(),
        "drained segments are deleted"
    );
    drop(s);
    // Sequence numbers keep counting after a restart, even once every segment is gone.
    let mut s = Spool::open_dir(dir.path()).unwrap();
    s.append(&events[..1], &[], 10, 1 << 20).unwrap();
    assert_eq!(s.chunk_from(0).unwrap().unwrap().first_seq, 27);
    // Readable from outside, while the spool is open.
    let outside = read_dead_letters(dir.path(), &dir.path().join(KEY_FILE)).unwrap();
    assert_eq!(outside, s.dead_letters().unwrap());
}

#[test]
fn nothing_is_readable_at_rest_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("secret-event-id-{i:04}")).collect();
    let events: Vec<Vec<u8>> = ids.iter().map(|i| event(i)).collect();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        let mut b = AppendBatch {
            events: events[..30].to_vec(),
            dead: vec![dead("line 9: bad", &event("secret-dead-id"))],
            marks: vec![(b"jsonl\0/var/log/a".to_vec(), b"1:2:300:4:0:0".to_vec())],
        };
        s.append_batch(&mut b, 10, 1 << 20).unwrap();
        let c = s.chunk_from(0).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[(1, "wrong account".into())])
            .unwrap();
        s.append(&events[30..], &[], 10, 1 << 20).unwrap();
        s.flush().unwrap();
    }
    let files = every_file(dir.path());
    assert!(files.iter().any(|(p, _)| p.ends_with(dead::FILE)));
    assert!(
        files
            .iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "seg"))
    );
    for (p, bytes) in &files {
        for needle in [
            &b"secret-"[..],
            b"eventID",
            b"GetObject",
            b"s3.amazonaws",
            b"300:4",
        ] {
            assert!(
                !contains(bytes, needle),
                "{} holds {:?} in the clear",
                p.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // With the key, everything is there.
    let s = Spool::open_dir(dir.path()).unwrap();
    let mut shipped = Vec::new();
    for c in std::iter::successors(s.chunk_from(0).unwrap(), |c| {
        s.chunk_from(c.first_seq + 1).unwrap()
    }) {
        shipped.extend(c.events.iter().map(|e| e.to_vec()));
    }
    assert_eq!(shipped, events[10..].to_vec());
    assert_eq!(
        s.mark(b"jsonl\0/var/log/a"),
        Some(b"1:2:300:4:0:0".to_vec())
    );
    let dl = s.dead_letters().unwrap();
    assert_eq!(dl.len(), 2);
    assert!(contains(&dl[0].bytes, b"secret-dead-id"));
    assert_eq!(dl[1].bytes, events[1]);
}

#[test]
fn a_wrong_missing_or_exposed_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(KEY_FILE);
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&[event("a")], &[], 10, 1 << 20).unwrap();
    }
    let good = std::fs::read(&key).unwrap();
    // Another key.
    std::fs::remove_file(&key).unwrap();
    orgtrail_crypto::create_key_file(&key).unwrap();
    let e = Spool::open_dir(dir.path()).unwrap_err();
    assert!(matches!(e, SpoolError::WrongKey { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(".seg does not open with the spool key"),
        "{e}"
    );
    // No key: never a new one over sealed data.
    std::fs::remove_file(&key).unwrap();
    let e = Spool::open_dir(dir.path()).unwrap_err();
    assert!(matches!(e, SpoolError::KeyMissing { .. }), "{e}");
    assert!(!key.exists());
    // Wrong size, then wrong mode.
    std::fs::write(&key, &good[..16]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = Spool::open_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("16 bytes, expected 32"), "{e}");
    std::fs::write(&key, &good).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = Spool::open_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("mode is 0640"), "{e}");
    // The right key again.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(s.chunk_from(0).unwrap().unwrap().events[0], event("a"));
}

#[test]
fn a_second_process_cannot_open_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Spool::open_dir(dir.path()).unwrap();
    let e = Spool::open(SpoolOptions {
        lock_wait: Duration::ZERO,
        ..SpoolOptions::new(dir.path())
    })
    .unwrap_err();
    assert!(matches!(e, SpoolError::Locked(_)), "{e}");
}

#[test]
fn acknowledged_chunks_are_not_sent_again_after_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Vec<u8>> = (0..30).map(|i| vec![b'e', i]).collect();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&events, &[], 10, 1 << 20).unwrap();
        let c = s.chunk_from(11).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
        s.flush().unwrap();
    }
    let s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(all_firsts(&s), vec![1, 21]);
}

#[test]
fn a_torn_append_is_cut_off_and_what_was_confirmed_survives() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Vec<u8>> = (0..10).map(|i| vec![b'e', i]).collect();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&events, &[], 10, 1 << 20).unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let good = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of the next append: half a record.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"OTS2\x01\0\0\0\0\0\0\0\0\0\0\x0b\0\0\0\x01")
        .unwrap();
    drop(f);
    // And in the middle of a dead letter.
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join(dead::FILE))
        .unwrap();
    f.write_all(b"OTS2\x03\0\0").unwrap();
    drop(f);
    let mut s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    assert_eq!(s.chunk_from(0).unwrap().unwrap().events, events);
    assert!(s.dead_letters().unwrap().is_empty());
    s.append(&events[..2], &[dead("r", b"x")], 10, 1 << 20)
        .unwrap();
    assert_eq!(s.chunk_from(2).unwrap().unwrap().first_seq, 12);
    assert_eq!(s.dead_letters().unwrap()[0].seq, 11);
}

#[test]
fn a_damaged_old_segment_is_reported_and_the_rest_still_ships() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 1 << 20];
    let n = (SEGMENT_BYTES >> 20) as usize + 2;
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        for _ in 0..n {
            s.append(std::slice::from_ref(&big), &[], 10, 4 << 20)
                .unwrap();
        }
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "rolled once");
    // Flip a byte in the second record of the first segment.
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let rec = HEADER + 12 + 4 + (1 << 20) + 16;
    bytes[rec + HEADER + 100] ^= 0xff;
    std::fs::write(&segs[0], &bytes).unwrap();
    let s = Spool::open_dir(dir.path()).unwrap();
    assert!(segs[0].with_extension("corrupt").exists());
    let firsts = all_firsts(&s);
    // Chunk 1 is intact, the rest of the first segment sat after the damage, and the
    // second segment is whole.
    let second: u64 = segs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(firsts[0], 1);
    assert_eq!(firsts[1..], (second..=n as u64).collect::<Vec<_>>());
}

#[test]
fn marks_are_durable_with_the_events_and_outlive_their_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        let mut b = AppendBatch {
            events: vec![b"a".to_vec()],
            dead: Vec::new(),
            marks: vec![(b"file".to_vec(), b"10".to_vec())],
        };
        s.append_batch(&mut b, 10, 1 << 20).unwrap();
        let mut b = AppendBatch {
            marks: vec![(b"file".to_vec(), b"20".to_vec())],
            ..AppendBatch::default()
        };
        s.append_batch(&mut b, 10, 1 << 20).unwrap();
    }
    let mut s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(s.mark(b"file"), Some(b"20".to_vec()));
    let c = s.chunk_from(0).unwrap().unwrap();
    s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
    drop(s);
    let s = Spool::open_dir(dir.path()).unwrap();
    assert!(segments(dir.path()).is_empty());
    assert_eq!(s.mark(b"file"), Some(b"20".to_vec()));
}

#[test]
fn forgotten_marks_are_gone_from_memory_live_segments_and_the_state_database() {
    let dir = tempfile::tempdir().unwrap();
    let mark = |k: &str| (k.as_bytes().to_vec(), b"d e".to_vec());
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        // Day 01's marks go to the state database with their acknowledged segment...
        let mut b = AppendBatch {
            events: vec![b"a".to_vec()],
            dead: Vec::new(),
            marks: vec![
                mark("s3\x00b\x0020260101\x00k1"),
                mark("s3\x00b\x0020260102\x00k2"),
            ],
        };
        s.append_batch(&mut b, 10, 1 << 20).unwrap();
        let c = s.chunk_from(0).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
        s.flush().unwrap();
        // ...day 01 again and day 03 stay in the live segment.
        let mut b = AppendBatch {
            events: vec![b"b".to_vec()],
            dead: Vec::new(),
            marks: vec![
                mark("s3\x00b\x0020260101\x00k3"),
                mark("s3\x00b\x0020260103\x00k4"),
                mark("s3\x00c\x0020260101\x00k5"),
            ],
        };
        s.append_batch(&mut b, 10, 1 << 20).unwrap();
        assert_eq!(
            s.forget_marks(b"s3\x00b\x00", b"s3\x00b\x0020260103")
                .unwrap(),
            3
        );
        for k in ["k1", "k2", "k3"] {
            let day = match k {
                "k1" | "k3" => "20260101",
                _ => "20260102",
            };
            assert_eq!(s.mark(format!("s3\x00b\x00{day}\x00{k}").as_bytes()), None);
        }
        // The newer day and the other bucket stay; acknowledging the live segment does not
        // bring the forgotten marks back.
        let c = s.chunk_from(c.first_seq + 1).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
        s.flush().unwrap();
    }
    let s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(s.mark(b"s3\x00b\x0020260101\x00k3"), None);
    assert_eq!(s.mark(b"s3\x00b\x0020260101\x00k1"), None);
    assert!(s.mark(b"s3\x00b\x0020260103\x00k4").is_some());
    assert!(s.mark(b"s3\x00c\x0020260101\x00k5").is_some());
}

#[test]
fn below_the_reserve_an_append_writes_nothing_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(SpoolOptions {
        min_free_bytes: u64::MAX / 2,
        ..SpoolOptions::new(dir.path())
    })
    .unwrap();
    let mut b = AppendBatch {
        events: vec![event("a"), event("b")],
        dead: vec![dead("line 1: bad", b"{")],
        marks: vec![(b"k".to_vec(), b"v".to_vec())],
    };
    let e = s.append_batch(&mut b, 10, 1 << 20).unwrap_err();
    assert!(e.is_disk_full(), "{e}");
    assert!(e.to_string().starts_with("spool disk full: "), "{e}");
    assert!(e.to_string().contains("bytes free in"), "{e}");
    assert_eq!((b.events.len(), b.dead.len(), b.marks.len()), (2, 1, 1));
    assert!(s.is_empty() && s.dead_letters().unwrap().is_empty());
    assert_eq!(s.mark(b"k"), None);
    // Space returns.
    s.opts.min_free_bytes = 0;
    s.append_batch(&mut b, 10, 1 << 20).unwrap();
    assert!(
        b.dead.is_empty(),
        "written dead letters are taken out of the batch"
    );
    assert_eq!(s.chunk_from(0).unwrap().unwrap().events.len(), 2);
    assert_eq!(s.dead_letters().unwrap().len(), 1);
    assert_eq!(s.mark(b"k"), Some(b"v".to_vec()));
}

#[test]
fn replay_and_purge_change_only_what_they_choose() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open_dir(dir.path()).unwrap();
    s.append(
        &[],
        &[
            dead("wrong account: x", &event("r1")),
            dead("line 2: not JSON", b"{nope"),
            dead("line 3: too large", b""),
            dead("wrong account: y", &event("r2")),
        ],
        10,
        1 << 20,
    )
    .unwrap();
    let o = s
        .apply(&Request::Replay {
            reason: Some("wrong account".into()),
        })
        .unwrap();
    assert_eq!((o.replayed, o.not_replayable, o.left), (2, 0, 2));
    let c = s.chunk_from(0).unwrap().unwrap();
    assert_eq!(c.events, vec![event("r1"), event("r2")]);
    let o = s.apply(&Request::Replay { reason: None }).unwrap();
    assert_eq!((o.replayed, o.not_replayable, o.left), (0, 2, 2));
    let o = s.apply(&Request::Purge { before_ms: 0 }).unwrap();
    assert_eq!((o.purged, o.left), (0, 2));
    let o = s
        .apply(&Request::Purge {
            before_ms: dead::now_ms() + 1,
        })
        .unwrap();
    assert_eq!((o.purged, o.left), (2, 0));
    drop(s);
    let s = Spool::open_dir(dir.path()).unwrap();
    assert!(s.dead_letters().unwrap().is_empty());
    assert_eq!(s.chunk_from(0).unwrap().unwrap().events.len(), 2);
}

#[test]
fn a_command_opening_a_stopped_spool_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&[event("a")], &[], 10, 1 << 20).unwrap();
        let c = s.chunk_from(0).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
        // Killed before the idle segment went.
    }
    let before = segments(dir.path());
    assert_eq!(before.len(), 1);
    let mut m = Spool::open(SpoolOptions {
        maintenance: true,
        ..SpoolOptions::new(dir.path())
    })
    .unwrap();
    m.apply(&Request::Purge { before_ms: 0 }).unwrap();
    m.flush().unwrap();
    drop(m);
    assert_eq!(segments(dir.path()), before);
}

/// A spool written by the earlier plain format (OTS1 records, dead letters in sled).
#[test]
fn a_spool_of_the_earlier_plain_format_opens_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("segments")).unwrap();
    let plain = |kind: u8, first: u64, count: u32, payload: &[u8], out: &mut Vec<u8>| {
        let start = out.len();
        out.extend_from_slice(b"OTS1");
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&out[start + 4..start + 24]);
        h.update(payload);
        out.extend_from_slice(&h.finalize().to_be_bytes());
        out.extend_from_slice(payload);
    };
    let mut seg = Vec::new();
    let mut p = Vec::new();
    encode_events(&[event("old-1"), event("old-2")], &mut p);
    plain(KIND_CHUNK, 1, 2, &p, &mut seg);
    let mut m = Vec::new();
    encode_mark(b"file", b"done", &mut m);
    plain(KIND_MARK, 0, 0, &m, &mut seg);
    std::fs::write(dir.path().join("segments").join(segment_name(1)), &seg).unwrap();
    {
        let db = sled::open(dir.path().join("state")).unwrap();
        let t = db.open_tree("spool").unwrap();
        let mut v = vec![0, 5];
        v.extend_from_slice(b"old r");
        v.extend_from_slice(&event("old-dead"));
        t.insert(&state_key(LEGACY_DEAD, 3)[..], v).unwrap();
        t.insert(NEXT, &4u64.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    let mut s = Spool::open_dir(dir.path()).unwrap();
    assert!(dir.path().join(KEY_FILE).exists());
    let c = s.chunk_from(0).unwrap().unwrap();
    assert_eq!(c.events, vec![event("old-1"), event("old-2")]);
    assert_eq!(s.mark(b"file"), Some(b"done".to_vec()));
    let dl = s.dead_letters().unwrap();
    assert_eq!((dl[0].seq, dl[0].reason.as_str()), (3, "old r"));
    assert_eq!(dl[0].bytes, event("old-dead"));
    s.append(&[event("new")], &[], 10, 1 << 20).unwrap();
    assert_eq!(s.chunk_from(2).unwrap().unwrap().first_seq, 4);
    s.acknowledge((1, c.stored_len), &[]).unwrap();
    let c = s.chunk_from(0).unwrap().unwrap();
    s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
    s.flush().unwrap();
    assert!(
        segments(dir.path()).is_empty(),
        "drained, the plain segment is gone"
    );
    drop(s);
    let s = Spool::open_dir(dir.path()).unwrap();
    assert_eq!(s.mark(b"file"), Some(b"done".to_vec()));
    assert_eq!(s.dead_letters().unwrap().len(), 1);
}

/// What an append notes about its chunks (the source of each event, for the metrics) is
/// noted before the spool serves a read of them: a shipper that reads a chunk as soon as it is
/// written, ships it and counts its acknowledgement always finds the note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appends_note_is_taken_before_its_chunks_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let h = SpoolHandle::open(SpoolOptions::new(dir.path()))
        .await
        .unwrap();
    let noted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h2, n2) = (h.clone(), noted.clone());
    let writer = tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            let n = n2.clone();
            let b = AppendBatch {
                events: vec![event(&format!("e{i}"))],
                ..AppendBatch::default()
            };
            let note: Noted = Box::new(move |chunks| n.lock().unwrap().extend_from_slice(chunks));
            h2.append_blocking_noted(b, 10, 1 << 20, Some(note))
                .1
                .unwrap();
        }
    });
    // The reader takes each chunk as soon as the spool has it, before the writer hears back.
    let mut from = 0;
    while from <= 20 {
        if let Some(c) = h.chunk_from(from).await.unwrap() {
            assert!(
                noted.lock().unwrap().contains(&(c.first_seq, 1)),
                "chunk {} read before its note",
                c.first_seq
            );
            from = c.first_seq + 1;
        } else if writer.is_finished() {
            break;
        } else {
            tokio::task::yield_now().await;
        }
    }
    writer.await.unwrap();
    assert_eq!(noted.lock().unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_thread_serves_async_and_blocking_callers() {
    let dir = tempfile::tempdir().unwrap();
    let h = SpoolHandle::open(SpoolOptions::new(dir.path()))
        .await
        .unwrap();
    let h2 = h.clone();
    let (back, r) = tokio::task::spawn_blocking(move || {
        let b = AppendBatch {
            events: vec![event("a"), event("b")],
            dead: vec![dead("line 1: bad", b"{")],
            marks: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        let r = h2.append_blocking(b, 10, 1 << 20);
        (r.0, r.1.map(|c| (c, h2.mark(b"k"))))
    })
    .await
    .unwrap();
    let (chunks, mark) = r.unwrap();
    assert_eq!(chunks, vec![(2, 2)]);
    assert_eq!(mark, Some(b"v".to_vec()));
    assert!(back.dead.is_empty());
    assert_eq!(h.dead_letter_count(), 1);
    let c = h.chunk_from(0).await.unwrap().unwrap();
    assert!(h.pending_bytes() > 0);
    h.acknowledge((c.first_seq, c.stored_len), &[])
        .await
        .unwrap();
    assert!(h.is_empty().await.unwrap());
    assert_eq!(h.pending_bytes(), 0);
    h.flush().await.unwrap();
    assert!(segments(dir.path()).is_empty());
    // A request from another process is carried out by the thread.
    let id = control::submit(
        dir.path(),
        &Request::Purge {
            before_ms: i64::MAX,
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        if let Some(o) = control::take_answer(dir.path(), &id).unwrap() {
            break o;
        }
        assert!(Instant::now() < deadline, "request not served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((outcome.purged, outcome.left), (1, 0));
    drop(h);
}

/// A tmpfs of `size` at `dir`, unmounted when dropped (the tests run as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs (the tests run as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_write_that_hits_a_full_disk_leaves_no_half_record_and_is_retried_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "6m");
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let mut s = Spool::open(SpoolOptions::new(&dir.path().join("spool"))).unwrap();
    let big: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 64 << 10]).collect();
    let mut written = Vec::new();
    let err = loop {
        let mut b = AppendBatch {
            events: big.clone(),
            ..AppendBatch::default()
        };
        match s.append_batch(&mut b, 1000, 8 << 20) {
            Ok(c) => written.extend(c),
            Err(e) => break e,
        }
        assert!(written.len() < 100, "the disk never filled");
    };
    assert!(err.is_disk_full(), "{err}");
    assert!(matches!(err, SpoolError::NoSpace { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("spool disk full: cannot write "),
        "{err}"
    );
    assert!(!written.is_empty());
    // Space returns: the same append goes through, and everything confirmed is intact.
    std::fs::remove_file(&filler).unwrap();
    let mut b = AppendBatch {
        events: big.clone(),
        ..AppendBatch::default()
    };
    written.extend(s.append_batch(&mut b, 1000, 8 << 20).unwrap());
    for (first, _) in &written {
        let c = s.chunk_from(*first).unwrap().unwrap();
        assert_eq!(c.first_seq, *first);
        assert_eq!(c.events, big);
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
    }
    assert!(s.is_empty());
    s.flush().unwrap();
    drop(s);
    let s = Spool::open(SpoolOptions::new(&dir.path().join("spool"))).unwrap();
    assert!(s.is_empty());
    assert!(segments(&dir.path().join("spool")).is_empty());
}

/// Found by the `spool_record` fuzz target: a chunk's event count sized the decoder's
/// buffer before any event was read, so a record claiming 1.3 billion events (here the
/// bytes `OTS1`) aborted the process on a 42 GB allocation.
#[test]
fn a_chunk_count_larger_than_its_payload_is_corrupt_not_an_abort() {
    let payload = bytes::Bytes::from_static(b"\0\0\0\x02e1");
    let err = decode_events(&payload, u32::from_be_bytes(*b"OTS1")).unwrap_err();
    assert!(matches!(err, SpoolError::Corrupt(_)), "{err}");
    assert_eq!(decode_events(&payload, 1).unwrap(), vec![&b"e1"[..]]);
}

/// A checksummed sealed chunk whose count was altered does not open: the count is bound to
/// the record, so the spool refuses to start, naming the file, instead of shipping it.
#[test]
fn a_checksummed_chunk_whose_count_was_altered_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open_dir(dir.path()).unwrap();
        s.append(&[b"e1".to_vec()], &[], 10, 1 << 20).unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let len = u32::from_be_bytes(b[20..24].try_into().unwrap()) as usize;
    b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[4..24]);
    h.update(&b[HEADER..HEADER + len]);
    b[24..28].copy_from_slice(&h.finalize().to_be_bytes());
    std::fs::write(&seg, &b).unwrap();
    let err = Spool::open_dir(dir.path()).unwrap_err();
    assert!(matches!(err, SpoolError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("or the file was altered"), "{err}");
}
