//! Generated IAM management calls of one account, for the Insights tests: two hours of one
//! call every 4 minutes, then a burst of 40 in one second.
use orgtrail_core::Timestamp;
use serde_json::json;

pub(crate) const ACCOUNT: &str = "111122223333";
/// The user of the baseline's calls.
pub(crate) const OPS: &str = "arn:aws:iam::111122223333:user/ops";

/// What [`baseline_and_burst`] generates: calls of `name` (reads failing with AccessDenied when
/// `error`, else successful writes); eventIDs `00000000-0000-4000-TAG-N` with the baseline's and
/// the burst's own tags; the burst made by `burst_user`.
pub(crate) struct Calls<'a> {
    pub(crate) name: &'a str,
    pub(crate) error: bool,
    pub(crate) baseline_tag: u32,
    pub(crate) burst_tag: u32,
    pub(crate) burst_user: &'a str,
}

/// One management call of `name` by `user` at `unix_secs`: a read with an AccessDenied error
/// when `error`, else a successful write.
pub(crate) fn call(id: &str, unix_secs: i64, user: &str, name: &str, error: bool) -> String {
    let mut v = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": user, "accountId": ACCOUNT, "userName": user.rsplit('/').next().unwrap()},
        "eventTime": Timestamp::from_unix_secs(unix_secs).to_string(),
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userName": id},
        "responseElements": null,
        "requestID": id,
        "eventID": id,
        "readOnly": error,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    });
    if error {
        v["errorCode"] = json!("AccessDenied");
        v["errorMessage"] = json!("not authorized");
    }
    v.to_string()
}

/// Two hours of one call every 4 minutes by [`OPS`] (ending 3 minutes before `minute`, a unix
/// second on a minute), then 40 at `burst_at` by `c.burst_user`.
pub(crate) fn baseline_and_burst(minute: i64, burst_at: i64, c: &Calls<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..30 {
        let t = minute - 180 - (29 - i) * 240;
        let id = format!("00000000-0000-4000-{:04}-{i:012}", c.baseline_tag);
        lines.push(call(&id, t, OPS, c.name, c.error));
    }
    for i in 0..40 {
        let id = format!("00000000-0000-4000-{:04}-{i:012}", c.burst_tag);
        lines.push(call(&id, burst_at, c.burst_user, c.name, c.error));
    }
    lines
}
