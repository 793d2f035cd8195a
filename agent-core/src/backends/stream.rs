//! The one SSE reading loop every streaming backend shares: bytes from the connection,
//! through [`SseDecoder`], into a backend's own assembler, out as [`StreamEvent`]s.
//!
//! It owns the idle timeout (reset only by events, never by comments or keep-alives) and
//! turns a broken connection into a typed error. What an event means, when the answer is
//! complete, and whether an end of stream is clean are the backend's decisions.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::http::HttpConfig;
use super::sse::SseDecoder;
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{ChatResponse, ChatStream, StreamEvent, response_events};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// What a backend does with the stream: `push` takes one event's data and returns the
/// events it produced and whether the answer is complete; `finish` assembles the answer
/// (given any leftover lines that were not SSE, such as a bare JSON error object).
pub(crate) struct SseHandler<S, P, F> {
    pub state: S,
    pub push: P,
    pub finish: F,
}

struct Driver<S, P, F> {
    body: ByteStream,
    decoder: SseDecoder,
    handler: Option<SseHandler<S, P, F>>,
    queue: VecDeque<Result<StreamEvent, ModelError>>,
    idle: Duration,
    last_event: Instant,
    provider: &'static str,
    model: String,
}

/// Streams a response: an event stream through `handler`; a whole JSON body (a server that
/// ignored `stream: true`, or answered an error as JSON) through `parse_whole`, replayed as
/// events.
pub(crate) async fn stream_response<S, P, F>(
    response: reqwest::Response,
    config: &HttpConfig,
    provider: &'static str,
    model: String,
    handler: SseHandler<S, P, F>,
    parse_whole: impl FnOnce(&[u8]) -> Result<ChatResponse, ModelError>,
) -> Result<ChatStream, ModelError>
where
    S: Send + 'static,
    P: FnMut(&mut S, &str) -> Result<(Vec<StreamEvent>, bool), ModelError> + Send + 'static,
    F: FnOnce(S, Option<String>) -> Result<ChatResponse, ModelError> + Send + 'static,
{
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if is_event_stream {
        return Ok(stream_sse(
            response.bytes_stream(),
            config.stream_idle_timeout,
            provider,
            model,
            handler,
        ));
    }
    let interrupted = |message: String| {
        ModelError::new(ModelErrorKind::StreamInterrupted, message)
            .with_provider(provider, model.clone())
    };
    let bytes = tokio::time::timeout(config.request_timeout, response.bytes())
        .await
        .map_err(|_| interrupted("the response body timed out".into()))?
        .map_err(|e| interrupted(format!("reading the response failed: {e}")))?;
    let parsed = parse_whole(&bytes)?;
    Ok(Box::pin(futures::stream::iter(
        response_events(parsed).into_iter().map(Ok),
    )))
}

/// Streams an SSE body through a backend's handler.
fn stream_sse<S, P, F>(
    body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    idle: Duration,
    provider: &'static str,
    model: String,
    handler: SseHandler<S, P, F>,
) -> ChatStream
where
    S: Send + 'static,
    P: FnMut(&mut S, &str) -> Result<(Vec<StreamEvent>, bool), ModelError> + Send + 'static,
    F: FnOnce(S, Option<String>) -> Result<ChatResponse, ModelError> + Send + 'static,
{
    let driver = Driver {
        body: Box::pin(body),
        decoder: SseDecoder::default(),
        handler: Some(handler),
        queue: VecDeque::new(),
        idle,
        last_event: Instant::now(),
        provider,
        model,
    };
    Box::pin(futures::stream::unfold(driver, |mut driver| async move {
        let item = driver.next_item().await?;
        Some((item, driver))
    }))
}

impl<S, P, F> Driver<S, P, F>
where
    P: FnMut(&mut S, &str) -> Result<(Vec<StreamEvent>, bool), ModelError>,
    F: FnOnce(S, Option<String>) -> Result<ChatResponse, ModelError>,
{
    fn interrupted(&self, message: String) -> ModelError {
        ModelError::new(ModelErrorKind::StreamInterrupted, message)
            .with_provider(self.provider, self.model.clone())
    }

    async fn next_item(&mut self) -> Option<Result<StreamEvent, ModelError>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            self.handler.as_ref()?;
            let deadline = self.last_event + self.idle;
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => {
                    let error = self.interrupted(format!(
                        "no data for {}s (keep-alives do not count); giving up on the stream",
                        self.idle.as_secs()
                    ));
                    self.fail(error);
                }
                Ok(Some(Ok(bytes))) => {
                    let events = self.decoder.push(&bytes);
                    self.handle(events);
                }
                Ok(Some(Err(e))) => {
                    let error = self.interrupted(format!("the connection broke: {e}"));
                    self.fail(error);
                }
                Ok(None) => {
                    let last: Vec<_> = self.decoder.finish().into_iter().collect();
                    self.handle(last);
                    self.complete();
                }
            }
        }
    }

    fn handle(&mut self, events: Vec<super::sse::SseEvent>) {
        for event in events {
            let Some(handler) = self.handler.as_mut() else {
                return;
            };
            self.last_event = Instant::now();
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            match (handler.push)(&mut handler.state, data) {
                Ok((events, done)) => {
                    self.queue.extend(events.into_iter().map(Ok));
                    if done {
                        self.complete();
                    }
                }
                Err(error) => self.fail(error),
            }
        }
    }

    fn complete(&mut self) {
        if let Some(handler) = self.handler.take() {
            let raw = self.decoder.take_raw();
            self.queue
                .push_back((handler.finish)(handler.state, raw).map(StreamEvent::Completed));
        }
    }

    fn fail(&mut self, error: ModelError) {
        self.handler = None;
        self.queue.push_back(Err(error));
    }
}
