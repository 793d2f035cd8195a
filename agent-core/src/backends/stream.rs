//! The one SSE reading loop every streaming backend shares: bytes from the connection,
//! through [`SseDecoder`], into a protocol's [`StreamAssembler`], out as [`StreamEvent`]s.
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
use super::protocol::StreamAssembler;
use super::sse::SseDecoder;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::Usage;
use crate::model::{ChatResponse, ChatStream, StreamEvent, response_events};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

struct Driver<A> {
    body: ByteStream,
    decoder: SseDecoder,
    assembler: Option<A>,
    queue: VecDeque<Result<StreamEvent, ModelError>>,
    idle: Duration,
    last_event: Instant,
    provider: String,
    model: String,
    /// The request's estimated input tokens, for an answer that reports no usage.
    input_estimate: u64,
}

/// Streams a response: an event stream through the protocol's `assembler`; a whole JSON
/// body (a server that ignored `stream: true`, or answered an error as JSON) through
/// `parse_whole`, replayed as events. An answer without usage gets an estimate.
pub(crate) async fn stream_response<A: StreamAssembler>(
    response: reqwest::Response,
    config: &HttpConfig,
    provider: &str,
    model: &str,
    assembler: A,
    input_estimate: u64,
    parse_whole: impl FnOnce(&[u8]) -> Result<ChatResponse, ModelError>,
) -> Result<ChatStream, ModelError> {
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if is_event_stream {
        let driver = Driver {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::default(),
            assembler: Some(assembler),
            queue: VecDeque::new(),
            idle: config.stream_idle_timeout,
            last_event: Instant::now(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            input_estimate,
        };
        return Ok(Box::pin(futures::stream::unfold(
            driver,
            |mut driver| async move {
                let item = driver.next_item().await?;
                Some((item, driver))
            },
        )));
    }
    let interrupted = |message: String| {
        ModelError::new(ModelErrorKind::StreamInterrupted, message).with_provider(provider, model)
    };
    let bytes = tokio::time::timeout(config.request_timeout, response.bytes())
        .await
        .map_err(|_| interrupted("the response body timed out".into()))?
        .map_err(|e| interrupted(format!("reading the response failed: {e}")))?;
    let mut parsed = parse_whole(&bytes)?;
    if parsed.usage == Usage::default() {
        parsed.estimate_usage(input_estimate);
    }
    Ok(Box::pin(futures::stream::iter(
        response_events(parsed).into_iter().map(Ok),
    )))
}

impl<A: StreamAssembler> Driver<A> {
    fn interrupted(&self, message: String) -> ModelError {
        ModelError::new(ModelErrorKind::StreamInterrupted, message)
            .with_provider(self.provider.clone(), self.model.clone())
    }

    async fn next_item(&mut self) -> Option<Result<StreamEvent, ModelError>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            self.assembler.as_ref()?;
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
            let Some(assembler) = self.assembler.as_mut() else {
                return;
            };
            self.last_event = Instant::now();
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            match assembler.push(data) {
                Ok(events) => {
                    self.queue.extend(events.into_iter().map(Ok));
                    if assembler.is_done() {
                        self.complete();
                    }
                }
                Err(error) => self.fail(error),
            }
        }
    }

    fn complete(&mut self) {
        if let Some(assembler) = self.assembler.take() {
            let raw = self.decoder.take_raw();
            let input_estimate = self.input_estimate;
            let answer = assembler.finish(raw).map(|mut response| {
                if response.usage == Usage::default() {
                    // Unknown, not zero: the server sent no usage.
                    response.estimate_usage(input_estimate);
                }
                StreamEvent::Completed(response)
            });
            self.queue.push_back(answer);
        }
    }

    fn fail(&mut self, error: ModelError) {
        self.assembler = None;
        self.queue.push_back(Err(error));
    }
}
