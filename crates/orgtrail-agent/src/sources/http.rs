//! A local HTTP endpoint for applications to post their own audit events, in CloudTrail
//! Lake's `PutAuditEvents` shape:
//!
//! ```text
//! POST /  {"auditEvents":[{"id":"...","eventData":"<JSON string>","eventDataChecksum":"<base64 SHA-256>"}]}
//! 200     {"successful":[{"id":"...","eventID":"..."}],"failed":[{"id":"...","errorCode":"...","errorMessage":"..."}]}
//! ```
//!
//! At most 100 events and 1 MB per request. The answer is sent only once the accepted events
//! are durable in the spool. An event without an eventID gets one, derived from the request's
//! `id` and `eventData` (a UUID-shaped SHA-256), so a retried request yields the same eventIDs
//! and the collector stores each event once.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use orgtrail_core::CloudTrailEvent;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use super::Ctx;

/// Most events in one request.
pub const MAX_EVENTS: usize = 100;
/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    audit_events: Vec<AuditEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    id: String,
    event_data: String,
    #[serde(default)]
    event_data_checksum: Option<String>,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"errorCode": code, "message": message})),
    )
        .into_response()
}

/// The event's bytes: `eventData` as given, or with a derived eventID put first when it has none.
fn event_bytes(ev: &AuditEvent) -> Result<(Vec<u8>, String), (&'static str, String)> {
    let data = ev.event_data.trim();
    let value: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| ("InvalidEventData", format!("eventData is not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(("InvalidEventData", "eventData is not a JSON object".into()));
    };
    if let Some(id) = obj.get("eventID") {
        return match id.as_str() {
            Some(id) => Ok((data.as_bytes().to_vec(), id.to_owned())),
            None => Err(("InvalidEventData", "eventID is not a string".into())),
        };
    }
    let mut seed = b"orgtrail/http/v1\0".to_vec();
    seed.extend_from_slice(ev.id.as_bytes());
    seed.push(0);
    seed.extend_from_slice(data.as_bytes());
    let id = orgtrail_core::derived_event_id(&seed);
    let rest = data[1..].trim_start();
    let bytes = if rest.starts_with('}') {
        format!("{{\"eventID\":\"{id}\"}}")
    } else {
        format!("{{\"eventID\":\"{id}\",{rest}")
    };
    Ok((bytes.into_bytes(), id))
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A `PutAuditEvents` body, checked: the events to spool, and the per-event answers.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// The valid events, in request order.
    pub accepted: Vec<CloudTrailEvent>,
    /// `{"id","eventID"}` for each accepted event.
    pub successful: Vec<serde_json::Value>,
    /// `{"id","errorCode","errorMessage"}` for each refused event.
    pub failed: Vec<serde_json::Value>,
}

/// Parses and checks a `PutAuditEvents` body (no I/O). `Err` is the message of an
/// `InvalidRequest` answer: the body as a whole is not a request of 1 to [`MAX_EVENTS`] events.
pub fn parse_body(body: &[u8]) -> Result<ParsedBody, String> {
    let req: Request = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not a PutAuditEvents request ({{\"auditEvents\":[...]}}): {e}")
    })?;
    if req.audit_events.is_empty() || req.audit_events.len() > MAX_EVENTS {
        return Err(format!(
            "a request holds 1 to {MAX_EVENTS} auditEvents, this one {}",
            req.audit_events.len()
        ));
    }
    let mut out = ParsedBody::default();
    let mut ids = std::collections::HashSet::new();
    for ev in &req.audit_events {
        let fail =
            |code: &str, msg: String| json!({"id": ev.id, "errorCode": code, "errorMessage": msg});
        if !valid_id(&ev.id) {
            out.failed.push(fail(
                "InvalidId",
                "id must be 1 to 128 characters of letters, digits, - and _".into(),
            ));
            continue;
        }
        if !ids.insert(ev.id.clone()) {
            out.failed.push(fail(
                "DuplicatedAuditEventId",
                "the id appears twice in this request".into(),
            ));
            continue;
        }
        if let Some(sum) = &ev.event_data_checksum {
            let want = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(ev.event_data.as_bytes()));
            if *sum != want {
                out.failed.push(fail(
                    "InvalidChecksum",
                    "eventDataChecksum is not the base64 SHA-256 of eventData".into(),
                ));
                continue;
            }
        }
        let (bytes, event_id) = match event_bytes(ev) {
            Ok(x) => x,
            Err((code, msg)) => {
                out.failed.push(fail(code, msg));
                continue;
            }
        };
        match CloudTrailEvent::parse(bytes) {
            Ok(e) => {
                out.accepted.push(e);
                out.successful
                    .push(json!({"id": ev.id, "eventID": event_id}));
            }
            Err(e) => out.failed.push(fail("InvalidEventData", e.to_string())),
        }
    }
    Ok(out)
}

async fn put(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let ParsedBody {
        accepted,
        successful,
        failed,
    } = match parse_body(&body) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, "InvalidRequest", message),
    };
    // Hand the events over and answer only once they are durable.
    let ctx2 = ctx.clone();
    let durable = tokio::task::spawn_blocking(move || {
        for e in accepted {
            if !ctx2.event(e) {
                return Err("the agent is stopping".to_string());
            }
        }
        ctx2.durable()
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = durable {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("the events could not be made durable: {e}; retry the request"),
        );
    }
    for f in &failed {
        // Refused to the caller, who has the reason; nothing of it is kept.
        tracing::warn!(source = %ctx.name, id = %f["id"], code = %f["errorCode"], "audit event refused");
    }
    axum::Json(json!({"successful": successful, "failed": failed})).into_response()
}

/// Serves the endpoint on `listener` until the agent stops.
pub async fn serve(
    ctx: Ctx,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let app = Router::new()
        .route("/", axum::routing::post(put))
        .route("/PutAuditEvents", axum::routing::post(put))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(ctx));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| format!("http source: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_event_without_an_event_id_gets_a_stable_one() {
        let ev = AuditEvent {
            id: "req-1".into(),
            event_data: r#"{"eventTime":"2026-11-24T10:00:00Z","eventSource":"app.example","eventName":"Login"}"#.into(),
            event_data_checksum: None,
        };
        let (b1, id1) = event_bytes(&ev).unwrap();
        let (b2, id2) = event_bytes(&ev).unwrap();
        assert_eq!((b1.clone(), id1.clone()), (b2, id2));
        let parsed = CloudTrailEvent::parse(b1).unwrap();
        assert_eq!(parsed.fields().event_id, id1);
        assert_eq!(parsed.fields().event_name, "Login");
    }
}
