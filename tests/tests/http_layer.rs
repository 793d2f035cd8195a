//! The HTTP layer every backend shares, against a hyper server on 127.0.0.1 that counts the
//! connections it accepts and speaks HTTP/1.1 and HTTP/2 in clear text on one port: models
//! built one by one share one connection pool, HTTP/2 with prior knowledge carries
//! concurrent requests on one socket, and `request_timeout` bounds a whole request, body
//! included. Nothing here touches the internet.

// The fake server's helpers sit outside #[test] functions, where clippy's test exemption
// does not reach; a failed setup step should fail the test loudly.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_core::backends::openai::OpenAiCompatible;
use agent_core::backends::{HttpConfig, HttpVersion, RetryPolicy};
use agent_core::prelude::*;
use agent_core::{ChatRequest, ModelErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// What the server does with a request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers "hello" at once.
    Answer,
    /// Sends its headers and the first half of the body, then nothing.
    StallBody,
}

struct Server {
    url: String,
    connections: Arc<AtomicUsize>,
    /// The HTTP versions of the requests it answered, in order.
    versions: Arc<std::sync::Mutex<Vec<hyper::Version>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn completion() -> Bytes {
    Bytes::from(
        json!({"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
        .to_string(),
    )
}

async fn serve(behaviour: Behaviour) -> Server {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), versions.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().expect("lock").push(request.version());
                            let _ = request.into_body().collect().await?;
                            let body = completion();
                            let response = match behaviour {
                                Behaviour::Answer => {
                                    hyper::Response::new(Full::new(body).map_err(never).boxed())
                                }
                                Behaviour::StallBody => {
                                    let half = body.slice(..body.len() / 2);
                                    let total = body.len();
                                    let chunks = futures::stream::once(async move {
                                        Ok::<_, hyper::Error>(hyper::body::Frame::data(half))
                                    })
                                    .chain(futures::stream::pending());
                                    let mut response = hyper::Response::new(BodyExt::boxed(
                                        StreamBody::new(chunks),
                                    ));
                                    response.headers_mut().insert(
                                        hyper::header::CONTENT_LENGTH,
                                        hyper::header::HeaderValue::from(total),
                                    );
                                    response
                                }
                            };
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server {
        url,
        connections,
        versions,
        task,
    }
}

fn never(never: std::convert::Infallible) -> hyper::Error {
    match never {}
}

fn model(url: &str, config: HttpConfig) -> OpenAiCompatible {
    OpenAiCompatible::builder("openai-compatible")
        .expect("preset")
        .model("m")
        .base_url(url)
        .http_config(config)
        .build()
        .expect("model")
}

fn hi() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_built_one_by_one_share_one_connection_pool() {
    let server = serve(Behaviour::Answer).await;
    // A server that makes an agent per request: fifty models, one after the other.
    for _ in 0..50 {
        let model = model(&server.url, HttpConfig::default());
        let response = model.chat(&hi()).await.expect("answer");
        assert_eq!(response.message.content, "hello");
    }
    // Without a shared pool each model opens its own: 50. With it, one connection serves
    // them all, give or take a request that starts before hyper has put the previous one's
    // connection back in the pool.
    let connections = server.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 10,
        "{connections} connections for 50 models built one by one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_carries_concurrent_requests_on_one_socket() {
    let server = serve(Behaviour::Answer).await;
    let config = HttpConfig {
        version: HttpVersion::Http2PriorKnowledge,
        ..HttpConfig::default()
    };
    let model = Arc::new(model(&server.url, config));
    // One request first, so the connection exists before the burst.
    model.chat(&hi()).await.expect("answer");
    let burst = futures::future::join_all((0..64).map(|_| {
        let model = model.clone();
        async move { model.chat(&hi()).await }
    }))
    .await;
    for response in burst {
        assert_eq!(response.expect("answer").message.content, "hello");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let versions = server.versions.lock().expect("lock").clone();
    assert_eq!(versions.len(), 65);
    assert!(versions.iter().all(|v| *v == hyper::Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_only_and_the_default_speak_http1_to_a_clear_text_server() {
    let server = serve(Behaviour::Answer).await;
    for version in [HttpVersion::Http1Only, HttpVersion::Negotiate] {
        let config = HttpConfig {
            version,
            ..HttpConfig::default()
        };
        model(&server.url, config)
            .chat(&hi())
            .await
            .expect("answer");
    }
    let versions = server.versions.lock().expect("lock").clone();
    assert_eq!(versions, vec![hyper::Version::HTTP_11; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_bounds_the_whole_request_body_included() {
    let server = serve(Behaviour::StallBody).await;
    let config = HttpConfig {
        request_timeout: Duration::from_millis(300),
        retry: RetryPolicy::none(),
        ..HttpConfig::default()
    };
    let started = std::time::Instant::now();
    let error = model(&server.url, config)
        .chat(&hi())
        .await
        .expect_err("a body that never ends");
    assert_eq!(error.kind, ModelErrorKind::Timeout, "{error}");
    // Generous: proves the stall was cut by the deadline, not by anything later.
    assert!(started.elapsed() < Duration::from_secs(30));
}
