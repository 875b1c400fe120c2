//! The HTTP face of the metrics: a blocking `tiny_http` server on a thread of its own.
//!
//! | path           | what                                                        |
//! |----------------|-------------------------------------------------------------|
//! | `/metrics`     | Prometheus text format 0.0.4                                |
//! | `/status.json` | the same [`Snapshot`](super::Snapshot), as JSON              |
//! | `/`            | the status page (`status.html`: inline CSS and JS, no build) |
//!
//! Each request reads the counters once; nothing is computed between requests.

use std::net::SocketAddr;

use tiny_http::{Header, Response, Server};

use super::{exposition, metrics, Snapshot};
use crate::error::{Error, Result};

/// The status page: one self-contained file.
const PAGE: &str = include_str!("status.html");

/// Binds `addr` and serves requests from a thread of its own, for the life of the process.
pub(super) fn spawn(addr: &str) -> Result<SocketAddr> {
    let server = Server::http(addr).map_err(|e| Error::Net {
        addr: addr.to_string(),
        what: "cannot listen for metrics (--metrics-listen: is the port in use, or the address not local?)",
        source: std::io::Error::other(e.to_string()),
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .expect("an IP listener has an IP address");
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (body, content_type, status) = respond(request.url());
                let header =
                    Header::from_bytes("Content-Type", content_type).expect("a valid header");
                let response = Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header)
                    .with_header(
                        Header::from_bytes("Cache-Control", "no-store").expect("a valid header"),
                    );
                // A client that went away is its own business.
                let _ = request.respond(response);
            }
        })
        .map_err(|e| Error::usage(format!("cannot start the metrics thread: {e}")))?;
    Ok(bound)
}

/// The body, content type and status of a request for `url`.
fn respond(url: &str) -> (String, &'static str, u16) {
    let path = url.split('?').next().unwrap_or(url);
    let Some(m) = metrics() else {
        return (String::new(), "text/plain", 503);
    };
    match path {
        "/metrics" => (
            exposition::encode(m, &Snapshot::take(m)),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            200,
        ),
        "/status.json" => (
            serde_json::to_string(&Snapshot::take(m)).expect("a snapshot serialises"),
            "application/json",
            200,
        ),
        "/" | "/index.html" => (PAGE.to_string(), "text/html; charset=utf-8", 200),
        _ => (
            "not found: try /, /metrics or /status.json\n".to_string(),
            "text/plain; charset=utf-8",
            404,
        ),
    }
}
