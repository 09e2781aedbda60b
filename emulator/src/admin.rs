//! The admin API: health, request counters, the request log, the clock,
//! reset and fault injection.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::faults::Fault;
use crate::state::State;
use crate::{json_response, Reply, Request};

fn ok(v: serde_json::Value) -> Reply {
    Reply::Send(json_response(StatusCode::OK, &v))
}

fn bad(status: StatusCode, msg: impl Into<String>) -> Reply {
    Reply::Send(json_response(status, &json!({"error": msg.into()})))
}

fn clock(state: &State) -> serde_json::Value {
    let now = state.now();
    json!({
        "offset_seconds": state.clock.offset(),
        "now": crate::util::rfc3339(now),
        "now_seconds": now,
    })
}

/// Handles one admin request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    let path = req.path.trim_end_matches('/');
    match (&req.method, path) {
        (&Method::GET, "/health") => ok(json!({"status": "ok"})),
        (&Method::GET, "/stats") => ok(json!(state.faults.stats())),
        (&Method::GET, "/requests") => {
            let since = match req.query("since").map(str::parse::<u64>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return bad(
                        StatusCode::BAD_REQUEST,
                        "query parameter `since` must be a place in the log (a number)",
                    )
                }
            };
            let (requests, last) = state.requests.since(since);
            ok(json!({"requests": requests, "last": last}))
        }
        (&Method::POST, "/reset") => {
            state.faults.reset();
            state.clock.set_offset(state.config.clock_offset);
            if req.query("keys").is_some_and(|v| v == "true" || v == "1") {
                if let Err(e) = state.reset_to_seed() {
                    return bad(StatusCode::INTERNAL_SERVER_ERROR, e);
                }
            }
            ok(json!({"status": "reset"}))
        }
        (&Method::GET, "/clock") => ok(clock(state)),
        (&Method::POST, "/clock") => {
            if req.too_large {
                return bad(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            let body = match crate::util::json_object(&req.body) {
                Ok(b) => b,
                Err(e) => return bad(StatusCode::BAD_REQUEST, e),
            };
            let offset = match body.get("offset") {
                Some(serde_json::Value::String(s)) => crate::util::parse_offset(s),
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .ok_or_else(|| format!("offset {n} is not a whole number of seconds")),
                _ => Err("`offset` is required: a duration such as \"-1h\" or seconds".into()),
            };
            match offset {
                Ok(secs) => {
                    state.clock.set_offset(secs);
                    ok(clock(state))
                }
                Err(e) => bad(StatusCode::BAD_REQUEST, e),
            }
        }
        (&Method::POST, "/metadata/select") => {
            let (Some(cloud), Some(instance)) = (req.query("cloud"), req.query("instance")) else {
                return bad(
                    StatusCode::BAD_REQUEST,
                    "query parameters `cloud` and `instance` are required",
                );
            };
            match crate::metadata::select(state, cloud, instance) {
                Ok(()) => ok(json!({"cloud": cloud, "instance": instance})),
                Err(e) => bad(StatusCode::NOT_FOUND, e),
            }
        }
        (&Method::GET, "/faults") => ok(json!(state.faults.list())),
        (&Method::DELETE, "/faults") => {
            state.faults.clear();
            ok(json!({"status": "cleared"}))
        }
        (&Method::POST, "/faults") => {
            if req.too_large {
                return bad(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            let rules: Vec<Fault> = match serde_json::from_slice::<serde_json::Value>(&req.body) {
                Ok(v @ serde_json::Value::Array(_)) => match serde_json::from_value(v) {
                    Ok(r) => r,
                    Err(e) => return bad(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
                },
                Ok(v) => match serde_json::from_value(v) {
                    Ok(r) => vec![r],
                    Err(e) => return bad(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
                },
                Err(e) => return bad(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
            };
            for r in &rules {
                if let Err(e) = r.validate() {
                    return bad(StatusCode::BAD_REQUEST, e);
                }
            }
            let n = rules.len();
            if let Err(e) = state.faults.add_all(rules) {
                return bad(StatusCode::BAD_REQUEST, e);
            }
            ok(json!({"added": n}))
        }
        _ => bad(
            StatusCode::NOT_FOUND,
            format!("no admin route {} {}", req.method, req.path),
        ),
    }
}
