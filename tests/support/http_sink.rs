//! A local HTTP server that takes PUTs, standing in for a bucket's presigned URLs: it can fail
//! the first requests, fail them all, or stall in the middle of a body (to crash the sender
//! mid-delivery), and keeps every body it accepted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Answers `status` to the first `count` requests, then accepts.
    FailFirst {
        count: u32,
        status: u16,
    },
    AlwaysFail {
        status: u16,
    },
    /// Reads `after_bytes` of the first request's body, then never answers; accepts later ones.
    StallFirst {
        after_bytes: usize,
    },
}

#[derive(Default)]
struct Seen {
    requests: u32,
    stalled_at: Option<usize>,
    /// Accepted bodies by request path, with their content type.
    accepted: HashMap<String, (Vec<u8>, String)>,
}

pub struct HttpSink {
    pub address: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl HttpSink {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, behaviour, Arc::clone(&seen))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { address, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn requests(&self) -> u32 {
        self.seen.lock().unwrap().requests
    }

    /// The body and content type accepted at `path`, if any.
    pub fn accepted(&self, path: &str) -> Option<(Vec<u8>, String)> {
        self.seen.lock().unwrap().accepted.get(path).cloned()
    }

    /// Waits until the first request stalled; returns how many body bytes it had read.
    pub async fn stalled(&self) -> usize {
        for _ in 0..3000 {
            if let Some(read) = self.seen.lock().unwrap().stalled_at {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no request stalled");
    }
}

async fn handle(
    request: Request<Incoming>,
    behaviour: Behaviour,
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let number = {
        let mut seen = seen.lock().unwrap();
        seen.requests += 1;
        seen.requests
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = request.into_body();
    let mut content = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            content.extend_from_slice(&data);
        }
        if let Behaviour::StallFirst { after_bytes } = behaviour {
            if number == 1 && content.len() >= after_bytes {
                seen.lock().unwrap().stalled_at = Some(content.len());
                std::future::pending::<()>().await;
            }
        }
    }
    let refuse = match behaviour {
        Behaviour::FailFirst { count, status } => (number <= count).then_some(status),
        Behaviour::AlwaysFail { status } => Some(status),
        Behaviour::StallFirst { .. } => None,
    };
    let status = match refuse {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None => {
            seen.lock()
                .unwrap()
                .accepted
                .insert(path, (content, content_type));
            StatusCode::OK
        }
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    Ok(response)
}
