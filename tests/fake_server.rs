//! A fake HTTP/1.1 server on 127.0.0.1 for backend tests: it records every request and
//! answers with whatever the test's handler says, whole or in timed chunks (to split SSE
//! events, and UTF-8 characters, across network reads). Whole replies keep the connection
//! alive; streamed ones end their body by closing it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request asked for a stream.
    pub fn wants_stream(&self) -> bool {
        self.json()["stream"] == Value::Bool(true)
    }
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// Pieces of the body, each written after its delay.
    chunks: Vec<(Duration, Vec<u8>)>,
    /// Whether to send a `content-length` (whole bodies) or end the body by closing.
    sized: bool,
    /// How long to wait before answering at all (a model's latency).
    latency: Duration,
}

impl Reply {
    /// A JSON body with a status.
    pub fn json(status: u16, body: &Value) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![(Duration::ZERO, body.to_string().into_bytes())],
            sized: true,
            latency: Duration::ZERO,
        }
    }

    /// A raw body with a status and content type.
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            chunks: vec![(Duration::ZERO, body.into())],
            sized: true,
            latency: Duration::ZERO,
        }
    }

    /// An SSE stream of `data:` events, each in its own write, ending with `data: [DONE]`.
    pub fn sse(events: &[Value]) -> Self {
        let mut chunks: Vec<Vec<u8>> = events
            .iter()
            .map(|e| format!("data: {e}\n\n").into_bytes())
            .collect();
        chunks.push(b"data: [DONE]\n\n".to_vec());
        Self::stream_chunks(chunks.into_iter().map(|c| (Duration::ZERO, c)).collect())
    }

    /// A 200 `text/event-stream` body written exactly in these pieces, after these delays.
    pub fn stream_chunks(chunks: Vec<(Duration, Vec<u8>)>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks,
            sized: false,
            latency: Duration::ZERO,
        }
    }

    /// Waits this long before sending anything.
    pub fn after(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// The server. Dropping it stops accepting connections.
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeServer {
    /// Starts a server; `handler` gets each request and its 0-based number.
    pub async fn start(
        handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(handler, true, 0).await
    }

    /// Starts a server on a chosen port (0: any), optionally without keeping the requests
    /// (under load; `requests()` then holds empty placeholders, one per request).
    pub async fn start_with(
        handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
        record: bool,
        port: u16,
    ) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, handler, recorded, record).await;
                });
            }
        });
        FakeServer {
            addr,
            requests,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    record: bool,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    // Keep-alive: serve requests on this connection until the client closes it or a reply
    // ends its body by closing.
    loop {
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            let n = socket.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end + 4);
        while buf.len() < length {
            let n = socket.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let request = Recorded {
            method,
            path,
            headers,
            body,
        };
        let index = {
            let mut all = recorded.lock().expect("lock");
            if record {
                all.push(request.clone());
            } else {
                all.push(Recorded {
                    method: String::new(),
                    path: String::new(),
                    headers: Vec::new(),
                    body: Vec::new(),
                });
            }
            all.len() - 1
        };
        let reply = handler(&request, index);
        if !reply.latency.is_zero() {
            tokio::time::sleep(reply.latency).await;
        }
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if reply.sized {
            let total: usize = reply.chunks.iter().map(|(_, c)| c.len()).sum();
            head.push_str(&format!("content-length: {total}\r\n"));
        } else {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        if reply.sized && reply.chunks.iter().all(|(d, _)| d.is_zero()) {
            // One write for head and body.
            let mut whole = head.into_bytes();
            for (_, chunk) in &reply.chunks {
                whole.extend_from_slice(chunk);
            }
            socket.write_all(&whole).await?;
            continue;
        }
        socket.write_all(head.as_bytes()).await?;
        socket.flush().await?;
        for (delay, chunk) in reply.chunks {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            socket.write_all(&chunk).await?;
            socket.flush().await?;
        }
        if !reply.sized {
            socket.shutdown().await?;
            return Ok(());
        }
    }
}

/// An OpenAI-compatible model in two turns: it calls `calculator` with `6*7`, then, given
/// the tool's result, answers `It is <result>.` (for tests that run an example against a
/// server named by `AGENT_MODEL`).
pub fn calculator_six_times_seven(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    if last["role"] == "tool" {
        let text = format!("It is {}.", last["content"].as_str().unwrap_or_default());
        Reply::json(
            200,
            &serde_json::json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}),
        )
    } else {
        Reply::json(
            200,
            &serde_json::json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "calculator", "arguments": "{\"expression\":\"6*7\"}"}}]}, "finish_reason": "tool_calls"}]}),
        )
    }
}

/// Retries after 1 to 5 ms instead of the real backoff (up to three, the default count):
/// for tests of what a retry does, not of how long it waits.
pub fn quick_retries() -> agent_core::backends::RetryPolicy {
    agent_core::backends::RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..Default::default()
    }
}

/// The `openai` backend on a fake server, with this model, key and retry policy.
pub fn openai_on(
    server: &FakeServer,
    model: &str,
    key: &str,
    retry: agent_core::backends::RetryPolicy,
) -> Result<agent_core::OpenAiCompatible, agent_core::ModelError> {
    agent_core::OpenAiCompatible::builder("openai")?
        .model(model)
        .base_url(server.base_url())
        .api_key(key)
        .http_config(agent_core::backends::HttpConfig {
            retry,
            ..Default::default()
        })
        .build()
}
