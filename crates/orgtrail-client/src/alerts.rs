//! Alerts from a running collector: the recorded alerts listed (newest first, page after
//! page) and followed live, reconnecting and resuming after the last position seen when the
//! collector goes away, so that a follower misses none and sees none twice.

use std::time::Duration;

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::alerts_client::AlertsClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::{Client, ClientError, Remote};

/// Which alerts to read; every given filter must match, a list matches any of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Recorded at or after.
    pub since: Option<Timestamp>,
    /// Recorded at or before.
    pub until: Option<Timestamp>,
    /// Rule ids.
    pub rules: Vec<String>,
    /// Accounts of the events.
    pub accounts: Vec<AccountId>,
    /// Severities, as the rule says now (an alert of a removed rule has none).
    pub severities: Vec<String>,
}

impl AlertFilter {
    fn to_pb(&self) -> pb::AlertFilter {
        pb::AlertFilter {
            since_ms: self.since.map(Timestamp::millis),
            until_ms: self.until.map(Timestamp::millis),
            rules: self.rules.clone(),
            accounts: self.accounts.iter().map(ToString::to_string).collect(),
            severities: self.severities.clone(),
        }
    }
}

/// One recorded alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The alert id, the one its sinks received.
    pub id: String,
    /// The rule that fired.
    pub rule_id: String,
    /// When the collector recorded it.
    pub recorded: Timestamp,
    /// The account of the event.
    pub account: String,
    /// The event's sequence number in the collector's log.
    pub seq: u64,
    /// The alert as its sinks received it (JSON: the EventBridge envelope with the rule's id,
    /// name and severity).
    pub payload: Vec<u8>,
    /// Its position, to resume after it.
    pub cursor: String,
}

/// What a table shows of an alert, from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub severity: String,
    pub rule_name: String,
    /// `service:eventName` of the event, e.g. `signin:ConsoleLogin`.
    pub event: String,
    /// The event's eventTime as the payload carries it.
    pub event_time: String,
}

impl Alert {
    fn from_pb(a: pb::Alert) -> Alert {
        Alert {
            id: a.id,
            rule_id: a.rule_id,
            recorded: Timestamp(a.recorded_ms),
            account: a.account,
            seq: a.seq,
            payload: a.payload,
            cursor: a.cursor,
        }
    }

    /// Its severity, rule name, event and event time ("-" for what the payload lacks).
    pub fn summary(&self) -> Summary {
        let v: serde_json::Value = serde_json::from_slice(&self.payload).unwrap_or_default();
        let text = |x: &serde_json::Value| x.as_str().unwrap_or("-").to_owned();
        let detail = &v["detail"];
        let source = detail["eventSource"].as_str().unwrap_or("-");
        Summary {
            severity: text(&v["severity"]),
            rule_name: text(&v["rule-name"]),
            event: format!(
                "{}:{}",
                source.strip_suffix(".amazonaws.com").unwrap_or(source),
                detail["eventName"].as_str().unwrap_or("-")
            ),
            event_time: text(&v["time"]),
        }
    }
}

/// The most alerts asked for per page.
const PAGE: usize = 1000;

impl Client {
    /// The collector's alerts service on the same connection.
    pub fn alerts(&self) -> AlertsClient<Channel> {
        AlertsClient::new(self.channel.clone())
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(crate::MAX_DECODING_BYTES)
    }

    /// Up to `limit` recorded alerts matching `filter`, newest first.
    pub async fn list_alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<Alert>, ClientError> {
        let mut c = self.alerts();
        let mut out = Vec::new();
        let mut token = String::new();
        while out.len() < limit {
            let page = c
                .list_alerts(pb::ListAlertsRequest {
                    filter: Some(filter.to_pb()),
                    max_results: (limit - out.len()).min(PAGE) as u32,
                    next_token: token,
                })
                .await
                .map_err(|s| self.explain(s))?
                .into_inner();
            out.extend(page.alerts.into_iter().map(Alert::from_pb));
            if page.next_token.is_empty() {
                break;
            }
            token = page.next_token;
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// What a follow reports as it goes.
#[derive(Debug)]
pub enum FollowEvent {
    /// Following (the first time, or again after a reconnect).
    Following { url: String, resumed: bool },
    /// An alert.
    Alert(Alert),
    /// The collector went away; trying again after `wait`.
    Lost {
        url: String,
        why: String,
        wait: Duration,
        attempt: u32,
        of: u32,
    },
}

/// Why a follow ended.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Refused (permissions, bad filters): trying again would not help.
    #[error(transparent)]
    Refused(#[from] ClientError),
    /// The collector could not be reached again.
    #[error(
        "lost {url} ({why}) and could not reconnect after {attempts} attempts; alerts recorded after position {position} were not shown"
    )]
    GaveUp {
        url: String,
        why: String,
        attempts: u32,
        position: String,
    },
    /// The caller stopped the follow (its output failed).
    #[error("writing the alerts failed: {0}")]
    Output(#[source] std::io::Error),
}

/// Reconnection attempts in a row before a follow gives up.
pub const FOLLOW_RETRIES: u32 = 10;

/// Whether a follow that failed with `s` may succeed if tried again.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

/// Follows the alerts matching `filter` as the collector records them, calling `on` with
/// each alert and each change of state, until `on` fails or the collector cannot be reached
/// [`FOLLOW_RETRIES`] times in a row. When the collector goes away (it stopped, restarted, the
/// network broke), reconnects with backoff and resumes after the last position seen: the
/// collector sends what was recorded meanwhile.
pub async fn follow_alerts(
    remote: &Remote,
    mut client: Client,
    filter: &AlertFilter,
    mut on: impl FnMut(FollowEvent) -> std::io::Result<()>,
) -> Result<(), FollowError> {
    let mut position: Option<String> = None;
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(200);
    let mut started = false;
    loop {
        let why = match client
            .alerts()
            .follow_alerts(pb::FollowAlertsRequest {
                filter: Some(filter.to_pb()),
                after: position.clone().unwrap_or_default(),
            })
            .await
        {
            Err(s) if !retryable(&s) => return Err(client.explain(s).into()),
            Err(s) => client.explain(s).to_string(),
            Ok(r) => {
                let mut stream = r.into_inner();
                on(FollowEvent::Following {
                    url: client.url.clone(),
                    resumed: started,
                })
                .map_err(FollowError::Output)?;
                started = true;
                loop {
                    let msg = match stream.message().await {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            break "the collector ended the stream (it stopped or restarted)"
                                .to_owned();
                        }
                        Err(s) if !retryable(&s) => return Err(client.explain(s).into()),
                        Err(s) => break client.explain(s).to_string(),
                    };
                    failures = 0;
                    backoff = Duration::from_millis(200);
                    position = Some(msg.cursor.clone());
                    if msg.id.is_empty() {
                        // A position marker.
                        continue;
                    }
                    on(FollowEvent::Alert(Alert::from_pb(msg))).map_err(FollowError::Output)?;
                }
            }
        };
        failures += 1;
        if failures > FOLLOW_RETRIES {
            return Err(FollowError::GaveUp {
                url: client.url.clone(),
                why,
                attempts: FOLLOW_RETRIES,
                position: position.unwrap_or_else(|| "(none yet)".into()),
            });
        }
        on(FollowEvent::Lost {
            url: client.url.clone(),
            why,
            wait: backoff,
            attempt: failures,
            of: FOLLOW_RETRIES,
        })
        .map_err(FollowError::Output)?;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if let Ok(fresh) = Client::connect(remote).await {
            client = fresh;
        }
    }
}
