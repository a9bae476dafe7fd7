//! Every generated event is a valid CloudTrail event to orgtrail-core, with the fields a lookup
//! needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orgtrail_core::CloudTrailEvent;
use orgtrail_gen::{GenConfig, Generator};

#[test]
fn generated_events_validate_and_carry_lookup_fields() {
    let cfg = GenConfig {
        count: 5000,
        accounts: 3,
        seed: 11,
        ..GenConfig::default()
    };
    let gen_ = Generator::new(cfg);
    let accounts = gen_.account_ids().to_vec();
    let mut with_resources = 0;
    let mut with_user = 0;
    for bytes in gen_ {
        let ev = CloudTrailEvent::parse(bytes.clone()).unwrap();
        assert_eq!(ev.bytes(), &bytes[..]);
        let f = ev.fields();
        assert!(
            accounts
                .iter()
                .any(|a| Some(a.as_str()) == f.recipient_account_id.as_deref())
        );
        assert!(f.aws_region.is_some());
        with_resources += usize::from(!f.resource_names.is_empty());
        with_user += usize::from(f.username().is_some());
    }
    assert!(
        with_resources > 2500,
        "{with_resources} of 5000 name a resource"
    );
    assert!(with_user > 4500, "{with_user} of 5000 name a user");
}
