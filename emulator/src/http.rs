//! Requests and answers as every emulated service sees them: the body read
//! (bounded by [`crate::MAX_BODY`]), the query parsed, and JSON answers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};

use crate::{util, MAX_BODY};

/// A request as the handlers see it: the body already read (bounded).
#[derive(Debug)]
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was larger than [`MAX_BODY`] and was not read.
    pub too_large: bool,
}

impl Request {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a handler decided.
pub(crate) enum Reply {
    /// Send this response.
    Send(Response<Full<Bytes>>),
    /// Close the connection without an answer (injected fault).
    Drop,
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) async fn read_request(req: hyper::Request<Incoming>) -> Request {
    let (parts, body) = req.into_parts();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let query = util::parse_query(&raw_query);
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (body, too_large) = if declared.is_some_and(|n| n > MAX_BODY as u64) {
        (Bytes::new(), true)
    } else {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => (c.to_bytes(), false),
            Err(_) => (Bytes::new(), true),
        }
    };
    Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        too_large,
    }
}
