//! The OTLP sink of the `otel` feature set: a trivial HTTP server on loopback, on a thread and
//! runtime of its own, that accepts `POST /v1/traces`, counts the exports and their bytes, and
//! answers an empty (valid) protobuf `ExportTraceServiceResponse`. It decodes nothing: it only
//! stands in for a collector so the gateway's exporter does its real work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What the sink received so far.
#[derive(Debug, Default)]
pub struct SinkCounts {
    pub exports: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct OtlpSink {
    pub addr: SocketAddr,
    pub counts: Arc<SinkCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpSink {
    pub fn start() -> anyhow::Result<OtlpSink> {
        let counts = Arc::new(SinkCounts::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_counts = counts.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener =
                        match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                            .await
                            .and_then(|l| l.local_addr().map(|a| (l, a)))
                        {
                            Ok((l, a)) => {
                                let _ = ready_tx.send(Ok(a));
                                l
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                    tokio::select! {
                        () = accept_loop(listener, thread_counts) => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("starting the OTLP sink thread")?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the OTLP sink did not start")?
            .context("starting the OTLP sink")?;
        Ok(OtlpSink {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The endpoint the gateway's configuration names (`BENCH_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Exports received so far.
    pub fn exports(&self) -> u64 {
        self.counts.exports.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.counts.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, counts: Arc<SinkCounts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, counts.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    counts: Arc<SinkCounts>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let accepted = req.method() == Method::POST && req.uri().path() == "/v1/traces";
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::new()));
    if accepted {
        counts.exports.fetch_add(1, Ordering::Relaxed);
        counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
    } else {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(response)
}
