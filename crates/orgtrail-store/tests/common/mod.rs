//! Helpers shared by this crate's integration tests.

use orgtrail_core::{AccountId, CloudTrailEvent};

/// The account an event belongs to: its recipientAccountId (generated events all carry one).
pub(crate) fn account_of(e: &CloudTrailEvent) -> AccountId {
    e.fields()
        .recipient_account_id
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

/// An Insight event of `account` in CloudTrail's shape (as AWS documents it): `state` Start
/// or End, `insight_type` ApiCallRateInsight or ApiErrorRateInsight, a distinct eventID per `n`.
#[allow(dead_code, reason = "not every test file uses it")]
pub(crate) fn insight_event(
    account: &str,
    n: u32,
    minute: i64,
    state: &str,
    insight_type: &str,
) -> CloudTrailEvent {
    let error = if insight_type == "ApiErrorRateInsight" {
        r#","errorCode":"AccessDenied""#
    } else {
        ""
    };
    let json = format!(
        concat!(
            r#"{{"eventVersion":"1.08","eventTime":"{time}","awsRegion":"us-east-1","#,
            r#""eventID":"00000000-0000-4000-9000-{n:012}","eventType":"AwsCloudTrailInsight","#,
            r#""recipientAccountId":"{account}","sharedEventID":"11111111-0000-4000-9000-{n:012}","#,
            r#""insightDetails":{{"state":"{state}","eventSource":"iam.amazonaws.com","#,
            r#""eventName":"CreateUser","insightType":"{insight_type}"{error},"#,
            r#""insightContext":{{"statistics":{{"baseline":{{"average":0.1}},"#,
            r#""insight":{{"average":12.0}},"insightDuration":3,"baselineDuration":600}}}}}},"#,
            r#""eventCategory":"Insight"}}"#
        ),
        time = orgtrail_core::Timestamp::from_unix_secs(minute * 60),
        n = n,
        account = account,
        state = state,
        insight_type = insight_type,
        error = error,
    );
    CloudTrailEvent::parse(json).unwrap()
}
