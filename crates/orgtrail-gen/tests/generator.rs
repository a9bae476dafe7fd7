//! Properties of the generated stream: determinism, shape, mix, duplicates.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use orgtrail_gen::{DOC_START_INSTANCES, GenConfig, Generator, account_ids};
use serde_json::{Map, Value};

const START: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z

fn cfg(count: u64, seed: u64, dup_rate: f64) -> GenConfig {
    GenConfig {
        count,
        seed,
        dup_rate,
        ..GenConfig::default()
    }
}

fn generate(c: GenConfig) -> Vec<Vec<u8>> {
    Generator::new(c).collect()
}

fn parse(bytes: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => m,
        other => panic!(
            "not a JSON object: {other:?}: {}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string {k}: {m:?}"))
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into a sortable tuple, rejecting other shapes.
fn rfc3339_key(t: &str) -> (u32, u32, u32, u32, u32, u32) {
    let b = t.as_bytes();
    assert_eq!(b.len(), 20, "{t}");
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{t}"),
            10 => assert_eq!(*c, b'T', "{t}"),
            13 | 16 => assert_eq!(*c, b':', "{t}"),
            19 => assert_eq!(*c, b'Z', "{t}"),
            _ => assert!(c.is_ascii_digit(), "{t}"),
        }
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<u32>().unwrap();
    (n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19))
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let a = generate(cfg(3_000, 11, 0.02));
    let b = generate(cfg(3_000, 11, 0.02));
    assert_eq!(a.len(), 3_000);
    assert!(a == b, "same seed must give byte-identical output");
    let c = generate(cfg(3_000, 12, 0.02));
    assert_ne!(a, c);
    assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() == 0);
    assert_ne!(account_ids(11, 3), account_ids(12, 3));
}

#[test]
fn dup_rate_does_not_change_the_new_records() {
    let plain = generate(cfg(2_000, 5, 0.0));
    let with_dups = generate(cfg(2_300, 5, 0.1));
    let mut seen = HashSet::new();
    let firsts: Vec<&Vec<u8>> = with_dups
        .iter()
        .filter(|e| seen.insert(e.to_vec()))
        .collect();
    let n = firsts.len().min(plain.len());
    assert!(n > 1_900);
    for (x, y) in firsts.iter().zip(&plain).take(n) {
        assert_eq!(*x, y);
    }
}

#[test]
fn account_ids_are_distinct_twelve_digits_and_seeded() {
    for (seed, k) in [(0u64, 1u32), (1, 3), (99, 50)] {
        let ids = account_ids(seed, k);
        assert_eq!(ids.len(), k as usize);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), k as usize);
        for id in &ids {
            assert_eq!(id.len(), 12, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()));
            assert_ne!(id.as_bytes()[0], b'0');
        }
        assert_eq!(ids, account_ids(seed, k));
        // A longer list extends the shorter one.
        assert_eq!(account_ids(seed, k + 2)[..k as usize], ids[..]);
    }
    let g = Generator::new(GenConfig {
        accounts: 5,
        seed: 8,
        ..GenConfig::default()
    });
    assert_eq!(g.account_ids(), &account_ids(8, 5)[..]);
    let g = Generator::new(GenConfig {
        accounts: 0,
        seed: 8,
        ..GenConfig::default()
    });
    assert_eq!(g.account_ids().len(), 1);
}

/// `with_accounts` puts every event in the accounts given (recipientAccountId and the
/// account in ARNs), and the seed still fixes the rest.
#[test]
fn given_accounts_own_every_event() {
    let ids = vec!["111122223333".to_string(), "444455556666".to_string()];
    let c = GenConfig {
        count: 5_000,
        seed: 4,
        ..GenConfig::default()
    };
    let g = Generator::with_accounts(c.clone(), &ids);
    assert_eq!(g.account_ids(), &ids[..]);
    let events: Vec<Vec<u8>> = g.collect();
    assert_eq!(events.len(), 5_000);
    let drawn = account_ids(4, 3);
    let mut seen = HashSet::new();
    for bytes in &events {
        let m = parse(bytes);
        let owner = s(&m, "recipientAccountId").to_string();
        assert!(ids.contains(&owner), "{owner}");
        let text = String::from_utf8_lossy(bytes);
        for d in &drawn {
            assert!(!text.contains(d.as_str()), "a drawn account {d} in {text}");
        }
        seen.insert(owner);
    }
    assert_eq!(seen.len(), 2, "both accounts get events");
    assert_eq!(
        events,
        Generator::with_accounts(c.clone(), &ids).collect::<Vec<_>>(),
        "same seed and accounts, same bytes"
    );
    assert_eq!(
        Generator::with_accounts(c.clone(), &[]).collect::<Vec<_>>(),
        generate(c),
        "no accounts given: the seed's"
    );
}

#[test]
fn every_event_is_a_well_formed_record() {
    let c = GenConfig {
        count: 10_000,
        accounts: 4,
        seed: 21,
        ..GenConfig::default()
    };
    let accounts: HashSet<String> = account_ids(21, 4).into_iter().collect();
    let events = generate(c);
    assert_eq!(events.len(), 10_000);
    let mut last = None;
    let mut first_time = None;
    for bytes in &events {
        assert!(!bytes.ends_with(b"\n"));
        assert!(!bytes.contains(&b'\n'), "compact JSON has no newlines");
        let m = parse(bytes);
        for k in [
            "eventID",
            "eventTime",
            "eventSource",
            "eventName",
            "recipientAccountId",
            "awsRegion",
            "eventType",
            "eventCategory",
            "sourceIPAddress",
            "userAgent",
        ] {
            assert!(!s(&m, k).is_empty(), "{k}");
        }
        for k in [
            "requestParameters",
            "responseElements",
            "readOnly",
            "managementEvent",
            "userIdentity",
        ] {
            assert!(m.contains_key(k), "{k}");
        }
        let acct = s(&m, "recipientAccountId");
        assert!(accounts.contains(acct), "{acct}");
        let t = rfc3339_key(s(&m, "eventTime"));
        first_time.get_or_insert(s(&m, "eventTime").to_owned());
        if let Some(prev) = last {
            assert!(prev <= t, "eventTime went backwards");
        }
        last = Some(t);
        let v = s(&m, "eventVersion");
        assert!(matches!(v, "1.08" | "1.09" | "1.10"), "{v}");
        let id = s(&m, "eventID");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "UUID v4: {id}");
        // Identities belong to the account they are recorded in.
        let ui = m["userIdentity"].as_object().unwrap();
        if let Some(arn) = ui.get("arn").and_then(Value::as_str) {
            assert!(arn.contains(&format!("::{acct}:")), "{arn} vs {acct}");
            assert_eq!(ui["accountId"], acct);
        }
        let data = s(&m, "eventCategory") == "Data";
        assert_eq!(m["managementEvent"], !data);
    }
    assert_eq!(first_time.as_deref(), Some("2026-11-01T00:00:00Z"));
    // A few events per second on average.
    let (_, _, d, h, mi, se) = last.unwrap();
    let secs = ((d - 1) * 86_400 + h * 3_600 + mi * 60 + se) as f64;
    let rate = 10_000.0 / secs;
    assert!((2.0..10.0).contains(&rate), "{rate} events/s");
}

/// The top-level keys of a JSON object, in document order.
fn top_level_keys(bytes: &[u8]) -> Vec<String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_slice(bytes)
        .deserialize_map(Keys)
        .unwrap()
}

#[test]
fn top_level_keys_follow_cloudtrail_order() {
    const ORDER: &[&str] = &[
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "requestID",
        "eventID",
        "readOnly",
        "resources",
        "eventType",
        "managementEvent",
        "recipientAccountId",
        "sharedEventID",
        "eventCategory",
        "tlsDetails",
        "sessionCredentialFromConsole",
    ];
    let mut seen_optional = HashSet::new();
    for bytes in generate(cfg(5_000, 4, 0.0)) {
        let keys = top_level_keys(&bytes);
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                ORDER
                    .iter()
                    .position(|o| o == k)
                    .unwrap_or_else(|| panic!("unexpected key {k}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys out of order: {keys:?}"
        );
        for k in [
            "eventVersion",
            "userIdentity",
            "eventTime",
            "eventSource",
            "eventName",
            "eventID",
            "recipientAccountId",
            "eventCategory",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
        seen_optional.extend(keys);
    }
    for k in ORDER {
        assert!(seen_optional.contains(*k), "{k} never present");
    }
}

#[test]
fn no_duplicates_without_dup_rate() {
    let events = generate(cfg(20_000, 3, 0.0));
    let ids: HashSet<String> = events
        .iter()
        .map(|e| s(&parse(e), "eventID").to_owned())
        .collect();
    assert_eq!(ids.len(), 20_000);
}

#[test]
fn duplicates_are_exact_recent_copies_at_the_requested_rate() {
    let events = generate(cfg(20_000, 9, 0.05));
    assert_eq!(events.len(), 20_000);
    let mut first: HashMap<String, (usize, &Vec<u8>)> = HashMap::new();
    let mut dups = 0usize;
    let mut new_index = 0usize;
    let mut first_times = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let m = parse(e);
        let id = s(&m, "eventID").to_owned();
        match first.get(&id) {
            Some((j, earlier)) => {
                dups += 1;
                assert_eq!(*earlier, e, "duplicate of {id} differs from its first copy");
                assert!(i > *j);
                let _ = new_index;
            }
            None => {
                first.insert(id, (new_index, e));
                new_index += 1;
                first_times.push(rfc3339_key(s(&m, "eventTime")));
            }
        }
    }
    let frac = dups as f64 / 20_000.0;
    assert!((0.03..0.07).contains(&frac), "duplicate fraction {frac}");
    assert!(
        first_times.windows(2).all(|w| w[0] <= w[1]),
        "first occurrences are time-ordered"
    );
}

#[test]
fn duplicates_come_from_the_last_thousand_new_records() {
    let events = generate(cfg(10_000, 13, 0.2));
    let mut order: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut news = 0usize;
    for e in &events {
        match order.get(e) {
            Some(&k) => assert!(
                news - k <= 1_000,
                "copy of a record {} new records old",
                news - k
            ),
            None => {
                order.insert(e.clone(), news);
                news += 1;
            }
        }
    }
}

#[test]
fn the_mix_looks_like_an_organisation() {
    let events = generate(cfg(10_000, 2026, 0.0));
    let n = events.len() as f64;
    let mut names = HashSet::new();
    let mut sources = HashSet::new();
    let mut types = HashSet::new();
    let (mut reads, mut errors, mut data, mut bytes) = (0usize, 0usize, 0usize, 0usize);
    let mut categories = HashSet::new();
    for e in &events {
        bytes += e.len();
        let m = parse(e);
        names.insert(s(&m, "eventName").to_owned());
        sources.insert(s(&m, "eventSource").to_owned());
        categories.insert(s(&m, "eventType").to_owned());
        if let Some(t) = m["userIdentity"].get("type").and_then(Value::as_str) {
            types.insert(t.to_owned());
        }
        let arn = m["userIdentity"]
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or("");
        if arn.contains("assumed-role/AWSReservedSSO_") {
            types.insert("IdentityCenter".to_owned());
        }
        if m["readOnly"] == true {
            reads += 1;
        }
        if m.contains_key("errorCode") {
            errors += 1;
            assert!(m["responseElements"].is_null());
        }
        if m["eventCategory"] == "Data" {
            data += 1;
        }
    }
    assert!(names.len() >= 40, "{} eventNames", names.len());
    assert!(sources.len() >= 12, "{} eventSources", sources.len());
    let r = reads as f64 / n;
    assert!((0.65..=0.90).contains(&r), "reads {r}");
    let er = errors as f64 / n;
    assert!((0.02..=0.09).contains(&er), "errors {er}");
    assert!(data > 100, "{data} data events");
    let mean = bytes as f64 / n;
    assert!((1_000.0..=2_500.0).contains(&mean), "mean size {mean}");
    for t in [
        "AssumedRole",
        "IAMUser",
        "AWSService",
        "Root",
        "FederatedUser",
        "IdentityCenter",
    ] {
        assert!(types.contains(t), "no {t} identity in {types:?}");
    }
    for t in ["AwsApiCall", "AwsConsoleSignIn", "AwsServiceEvent"] {
        assert!(categories.contains(t), "no {t}");
    }
}

#[test]
fn operations_carry_their_real_parameters() {
    let events = generate(GenConfig {
        count: 40_000,
        seed: 77,
        accounts: 2,
        ..GenConfig::default()
    });
    let mut checked: HashMap<String, usize> = HashMap::new();
    let mut instances: HashMap<String, usize> = HashMap::new();
    for e in &events {
        let m = parse(e);
        let name = s(&m, "eventName").to_owned();
        let acct = s(&m, "recipientAccountId").to_owned();
        let rp = &m["requestParameters"];
        let failed = m.contains_key("errorCode");
        match name.as_str() {
            "StartInstances" | "StopInstances" | "TerminateInstances" => {
                let id = rp["instancesSet"]["items"][0]["instanceId"]
                    .as_str()
                    .unwrap();
                assert!(id.starts_with("i-") && id.len() == 19, "{id}");
                assert!(id[2..].bytes().all(|b| b.is_ascii_hexdigit()));
                *instances.entry(id.to_owned()).or_default() += 1;
                if !failed {
                    assert_eq!(
                        m["responseElements"]["instancesSet"]["items"][0]["instanceId"],
                        id
                    );
                }
            }
            "RunInstances" if !failed => {
                let id = m["responseElements"]["instancesSet"]["items"][0]["instanceId"]
                    .as_str()
                    .unwrap();
                *instances.entry(id.to_owned()).or_default() += 1;
            }
            "GetObject" | "PutObject" | "DeleteObject" => {
                assert_eq!(m["eventCategory"], "Data");
                assert_eq!(m["managementEvent"], false);
                let bucket = rp["bucketName"].as_str().unwrap();
                let key = rp["key"].as_str().unwrap();
                let res = m["resources"].as_array().unwrap();
                assert_eq!(res[0]["type"], "AWS::S3::Object");
                assert_eq!(res[0]["ARN"], format!("arn:aws:s3:::{bucket}/{key}"));
                assert_eq!(res[1]["type"], "AWS::S3::Bucket");
                assert_eq!(res[1]["accountId"], acct.as_str());
                assert!(m["additionalEventData"].is_object());
            }
            "Invoke" => {
                assert_eq!(m["eventCategory"], "Data");
                assert_eq!(m["resources"][0]["type"], "AWS::Lambda::Function");
            }
            "Decrypt" | "GenerateDataKey" | "ScheduleKeyDeletion" | "DisableKey" => {
                let arn = m["resources"][0]["ARN"].as_str().unwrap();
                assert!(
                    arn.starts_with("arn:aws:kms:") && arn.contains(&format!(":{acct}:key/")),
                    "{arn}"
                );
                assert_eq!(m["resources"][0]["type"], "AWS::KMS::Key");
            }
            "DeleteDBInstance" | "CreateDBSnapshot" => {
                assert!(rp["dBInstanceIdentifier"].is_string());
            }
            "UpdateFunctionCode20150331v2" => assert!(rp["functionName"].is_string()),
            "CreateUser" | "DeleteUser" | "CreateAccessKey" => assert!(rp["userName"].is_string()),
            "AttachRolePolicy" => {
                assert!(rp["roleName"].is_string());
                assert!(
                    rp["policyArn"]
                        .as_str()
                        .unwrap()
                        .starts_with("arn:aws:iam::aws:policy/")
                );
            }
            "AssumeRole" if !failed => {
                let c = &m["responseElements"]["credentials"];
                assert!(c["accessKeyId"].as_str().unwrap().starts_with("ASIA"));
                assert!(c["sessionToken"].is_string() && c["expiration"].is_string());
            }
            "ConsoleLogin" => {
                assert_eq!(m["eventType"], "AwsConsoleSignIn");
                let r = m["responseElements"]["ConsoleLogin"].as_str().unwrap();
                assert!(r == "Success" || r == "Failure");
                assert!(m["additionalEventData"]["MFAUsed"].is_string());
                assert_eq!(m["awsRegion"], "us-east-1");
            }
            _ => {}
        }
        if matches!(
            s(&m, "eventSource"),
            "iam.amazonaws.com" | "signin.amazonaws.com" | "organizations.amazonaws.com"
        ) {
            assert_eq!(
                m["awsRegion"], "us-east-1",
                "global service outside us-east-1"
            );
        }
        if let Some(ty) = m["userIdentity"].get("type").and_then(Value::as_str) {
            let ui = &m["userIdentity"];
            match ty {
                "AssumedRole" => {
                    let issuer = &ui["sessionContext"]["sessionIssuer"];
                    let role = issuer["userName"].as_str().unwrap();
                    let arn = ui["arn"].as_str().unwrap();
                    assert!(
                        arn.starts_with(&format!("arn:aws:sts::{acct}:assumed-role/{role}/")),
                        "{arn}"
                    );
                    assert!(
                        ui["principalId"]
                            .as_str()
                            .unwrap()
                            .starts_with(issuer["principalId"].as_str().unwrap())
                    );
                    assert!(ui["accessKeyId"].as_str().unwrap().starts_with("ASIA"));
                }
                "IAMUser" => {
                    let user = ui["userName"].as_str().unwrap();
                    assert_eq!(ui["arn"], format!("arn:aws:iam::{acct}:user/{user}"));
                    if let Some(k) = ui.get("accessKeyId").and_then(Value::as_str) {
                        assert!(k.starts_with("AKIA") || k.starts_with("ASIA"));
                    }
                }
                "AWSService" => {
                    assert!(ui.get("arn").is_none());
                    assert!(
                        ui["invokedBy"]
                            .as_str()
                            .unwrap()
                            .ends_with(".amazonaws.com")
                    );
                }
                "Root" => assert_eq!(ui["arn"], format!("arn:aws:iam::{acct}:root")),
                "FederatedUser" => {
                    assert!(
                        ui["arn"]
                            .as_str()
                            .unwrap()
                            .starts_with(&format!("arn:aws:sts::{acct}:federated-user/"))
                    );
                }
                other => panic!("unexpected identity type {other}"),
            }
        }
        *checked.entry(name).or_default() += 1;
    }
    for op in [
        "StartInstances",
        "GetObject",
        "PutObject",
        "Invoke",
        "Decrypt",
        "ConsoleLogin",
        "AssumeRole",
        "RunInstances",
    ] {
        assert!(checked.get(op).copied().unwrap_or(0) > 0, "no {op}");
    }
    // Pooled resources recur.
    assert!(
        instances.values().any(|&c| c >= 3),
        "instances never recur: {instances:?}"
    );
}

#[test]
fn principals_keep_their_ids() {
    let mut key_of: HashMap<String, String> = HashMap::new();
    for e in generate(cfg(20_000, 31, 0.0)) {
        let m = parse(&e);
        let ui = &m["userIdentity"];
        if ui["type"] == "IAMUser"
            && ui.get("sessionContext").is_none()
            && let (Some(arn), Some(k)) = (
                ui["arn"].as_str(),
                ui.get("accessKeyId").and_then(Value::as_str),
            )
        {
            let prev = key_of.entry(arn.to_owned()).or_insert_with(|| k.to_owned());
            assert_eq!(prev, k, "{arn} changed access key");
        }
    }
    assert!(key_of.len() > 10);
}

#[test]
fn start_time_is_configurable() {
    let c = GenConfig {
        count: 5,
        start_unix_secs: START + 86_400 * 31 + 3_661,
        ..GenConfig::default()
    };
    let first = parse(&generate(c)[0]);
    assert_eq!(s(&first, "eventTime"), "2026-12-02T01:01:01Z");
}

#[test]
fn doc_start_instances_is_the_user_guide_record() {
    let m = parse(DOC_START_INSTANCES.as_bytes());
    assert_eq!(s(&m, "eventName"), "StartInstances");
    assert_eq!(s(&m, "eventSource"), "ec2.amazonaws.com");
    assert_eq!(
        m["requestParameters"]["instancesSet"]["items"][0]["instanceId"],
        "i-ebeaf9e2"
    );
    assert_eq!(
        m["responseElements"]["instancesSet"]["items"][0]["instanceId"],
        "i-ebeaf9e2"
    );
    assert!(!DOC_START_INSTANCES.contains('\n'));
    assert!(DOC_START_INSTANCES.starts_with("{\"eventVersion\":\"1.0\",\"userIdentity\""));
}

/// FNV-1a over the output. Pins the exact bytes for fixed seeds: if this test
/// fails, existing seeds now produce different data sets. Change the expected
/// values only deliberately (and say so in the changelog).
fn fingerprint(c: GenConfig) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in Generator::new(c) {
        for b in e.iter().chain(b"\n") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[test]
fn output_for_a_seed_is_pinned() {
    let got = [
        fingerprint(cfg(500, 0, 0.0)),
        fingerprint(cfg(500, 7, 0.05)),
        fingerprint(GenConfig {
            count: 200,
            accounts: 1,
            seed: u64::MAX,
            ..GenConfig::default()
        }),
    ];
    assert_eq!(
        got,
        [
            0xf584_4bc2_3787_24a4,
            0xf338_2e6b_b8c4_2859,
            0x5327_99fd_75e9_f335
        ],
        "fingerprints changed: {got:#x?}"
    );
}
