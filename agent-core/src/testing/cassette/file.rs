//! The cassette file: a pretty-printed JSON document a person can read and review in a pull
//! request, holding the model's names and each interaction in order: the canonical request,
//! then the answer (a response, the events of a stream, or an error).
//!
//! This module only converts between our types and the file; it must never decide what
//! matches or write a file that still holds something shaped like a key.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::secrets::find_key_pattern;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::Usage;
use crate::model::{ChatResponse, StreamEvent};

/// The format tag written at the top of every cassette.
pub(crate) const FORMAT: &str = "agent-cassette/1";

/// A whole cassette.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CassetteFile {
    pub(crate) format: String,
    /// The recorded model's provider and name, given back by the replaying model.
    pub(crate) provider: String,
    pub(crate) model: String,
    pub(crate) interactions: Vec<Interaction>,
}

/// One request and what came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interaction {
    /// The canonical request, secrets removed.
    pub(crate) request: Value,
    /// A whole answer (`chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<ChatResponse>,
    /// The events of a streamed answer (`chat_stream`), in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<Vec<RecordedEvent>>,
    /// The error the call (or the stream, after its events) ended with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<RecordedError>,
}

/// A stream event as written to a cassette.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum RecordedEvent {
    TextDelta {
        text: String,
    },
    ReasoningDelta {
        text: String,
    },
    ToolCallStarted {
        index: usize,
        id: String,
        name: String,
    },
    ToolCallDelta {
        index: usize,
        arguments: String,
    },
    Usage {
        usage: Usage,
    },
    Completed {
        response: ChatResponse,
    },
}

impl From<&StreamEvent> for RecordedEvent {
    fn from(event: &StreamEvent) -> Self {
        match event {
            StreamEvent::TextDelta(text) => RecordedEvent::TextDelta { text: text.clone() },
            StreamEvent::ReasoningDelta(text) => {
                RecordedEvent::ReasoningDelta { text: text.clone() }
            }
            StreamEvent::ToolCallStarted { index, id, name } => RecordedEvent::ToolCallStarted {
                index: *index,
                id: id.clone(),
                name: name.clone(),
            },
            StreamEvent::ToolCallDelta { index, arguments } => RecordedEvent::ToolCallDelta {
                index: *index,
                arguments: arguments.clone(),
            },
            StreamEvent::Usage(usage) => RecordedEvent::Usage { usage: *usage },
            StreamEvent::Completed(response) => RecordedEvent::Completed {
                response: response.clone(),
            },
        }
    }
}

impl From<RecordedEvent> for StreamEvent {
    fn from(event: RecordedEvent) -> Self {
        match event {
            RecordedEvent::TextDelta { text } => StreamEvent::TextDelta(text),
            RecordedEvent::ReasoningDelta { text } => StreamEvent::ReasoningDelta(text),
            RecordedEvent::ToolCallStarted { index, id, name } => {
                StreamEvent::ToolCallStarted { index, id, name }
            }
            RecordedEvent::ToolCallDelta { index, arguments } => {
                StreamEvent::ToolCallDelta { index, arguments }
            }
            RecordedEvent::Usage { usage } => StreamEvent::Usage(usage),
            RecordedEvent::Completed { response } => StreamEvent::Completed(response),
        }
    }
}

/// A model error as written to a cassette.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordedError {
    pub(crate) kind: ModelErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_ms: Option<u64>,
}

impl From<&ModelError> for RecordedError {
    fn from(e: &ModelError) -> Self {
        RecordedError {
            kind: e.kind,
            status: e.status,
            code: e.code.clone(),
            message: e.message.clone(),
            retry_after_ms: e.retry_after.map(|d| d.as_millis() as u64),
        }
    }
}

impl RecordedError {
    pub(crate) fn to_error(&self, provider: &str, model: &str) -> ModelError {
        ModelError {
            kind: self.kind,
            provider: provider.to_owned(),
            model: model.to_owned(),
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
            retry_after: self.retry_after_ms.map(Duration::from_millis),
        }
    }
}

/// Why a cassette could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CassetteError {
    /// The file could not be read or written.
    #[error("cassette {path}: {message}")]
    Io {
        /// The cassette's path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The file is not a cassette this version reads.
    #[error("cassette {path} is not a valid cassette: {message}")]
    Format {
        /// The cassette's path.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Something shaped like a key survived scrubbing; nothing was written.
    #[error(
        "cassette {path} NOT saved: interaction {interaction} still holds something shaped like a key \
         (`{pattern}…`); name the secret with `CassetteModel::builder(..).secret(..)` or remove it"
    )]
    KeyFound {
        /// The cassette's path.
        path: String,
        /// The interaction (from 0) holding it.
        interaction: usize,
        /// The key's prefix (never the key).
        pattern: String,
    },
    /// A request matched no recorded interaction (the first such request is reported).
    #[error("{0}")]
    Mismatch(String),
    /// Recorded interactions were never requested.
    #[error(
        "cassette {path}: {} recorded interaction(s) never used: {}; the agent sent fewer or other requests than were recorded \
         (re-record with AGENT_CASSETTE=all if that is intended)",
        unused.len(),
        unused.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(", ")
    )]
    Unused {
        /// The cassette's path.
        path: String,
        /// The interactions (from 0) never used.
        unused: Vec<usize>,
    },
    /// The cassette cannot be used as configured (a missing file in replay mode, no model to
    /// record with, a stream still open when it was finished).
    #[error("cassette {path}: {message}")]
    Usage {
        /// The cassette's path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl CassetteFile {
    pub(crate) fn load(path: &Path) -> Result<Self, CassetteError> {
        let text = std::fs::read_to_string(path).map_err(|e| CassetteError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let file: CassetteFile =
            serde_json::from_str(&text).map_err(|e| CassetteError::Format {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if file.format != FORMAT {
            return Err(CassetteError::Format {
                path: path.display().to_string(),
                message: format!("format `{}`, expected `{FORMAT}`", file.format),
            });
        }
        Ok(file)
    }

    /// Writes the file (through a temporary file and a rename, so a failed write leaves the
    /// old cassette whole), after checking that no interaction holds a key pattern.
    pub(crate) fn save(&self, path: &Path) -> Result<(), CassetteError> {
        let show = || path.display().to_string();
        for (i, interaction) in self.interactions.iter().enumerate() {
            let text = serde_json::to_string(interaction).map_err(|e| CassetteError::Format {
                path: show(),
                message: e.to_string(),
            })?;
            if let Some((pattern, _)) = find_key_pattern(&text) {
                return Err(CassetteError::KeyFound {
                    path: show(),
                    interaction: i,
                    pattern: pattern.trim().to_owned(),
                });
            }
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CassetteError::Format {
            path: show(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let io = |e: std::io::Error| CassetteError::Io {
            path: show(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
