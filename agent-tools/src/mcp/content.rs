//! Turning an MCP tool result into what the model reads, and our tool output into an MCP
//! result.

use agent_core::{ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

/// What the model reads for an MCP `tools/call` result: text and structured content as
/// text/JSON, other content types as a one-line placeholder; `isError` results become a
/// [`ToolError`] with the server's text, so the model can read what went wrong.
pub(crate) fn result_to_output(
    tool: &str,
    result: CallToolResult,
) -> Result<ToolOutput, ToolError> {
    let is_error = result.is_error == Some(true);
    let text = blocks_to_text(&result.content);
    if is_error {
        let message = if text.trim().is_empty() {
            format!("`{tool}` reported an error without a message.")
        } else {
            text
        };
        return Err(ToolError::failed(message));
    }
    // Servers write the text for a model to read, and are asked to repeat structured
    // content there as JSON; structured content alone is passed on as JSON.
    match result.structured_content {
        Some(structured) if result.content.is_empty() && !structured.is_null() => {
            Ok(ToolOutput::Json(structured))
        }
        _ => Ok(ToolOutput::Text(text)),
    }
}

/// Joins the blocks of a result, one per paragraph.
pub(crate) fn blocks_to_text(blocks: &[ContentBlock]) -> String {
    let parts: Vec<String> = blocks.iter().map(block_to_text).collect();
    parts.join("\n")
}

fn block_to_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(i) => format!(
            "[image omitted: {}, {}]",
            i.mime_type,
            approx_size(i.data.len())
        ),
        ContentBlock::Audio(a) => format!(
            "[audio omitted: {}, {}]",
            a.mime_type,
            approx_size(a.data.len())
        ),
        ContentBlock::Resource(r) => match &r.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => format!(
                "[binary resource omitted: {uri}, {}, {}]",
                mime_type.as_deref().unwrap_or("unknown type"),
                approx_size(blob.len())
            ),
            _ => "[resource of an unsupported kind omitted]".to_owned(),
        },
        ContentBlock::ResourceLink(link) => {
            let mut s = format!("[resource link: {}", link.uri);
            if !link.name.is_empty() {
                s.push_str(&format!(" ({})", link.name));
            }
            if let Some(d) = &link.description {
                s.push_str(&format!(": {d}"));
            }
            s.push(']');
            s
        }
        _ => "[content of an unsupported type omitted]".to_owned(),
    }
}

/// The decoded size of base64 data, for placeholders.
fn approx_size(base64_len: usize) -> String {
    let bytes = base64_len / 4 * 3;
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KB", bytes as f64 / (1 << 10) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Our tool's outcome as an MCP result: text as a text block; JSON as a text block of compact
/// JSON, and also as `structuredContent` when it is an object; errors as `isError` results
/// with the message the model should read.
pub(crate) fn output_to_result(outcome: Result<ToolOutput, ToolError>) -> CallToolResult {
    match outcome {
        Ok(ToolOutput::Json(value)) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            if value.is_object() {
                result.structured_content = Some(value);
            }
            result
        }
        Ok(output) => CallToolResult::success(vec![ContentBlock::text(output.into_content())]),
        Err(error) => CallToolResult::error(vec![ContentBlock::text(error.message)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{EmbeddedResource, ImageContent, TextContent};
    use serde_json::json;

    #[test]
    fn text_blocks_are_joined_and_images_become_placeholders() {
        let result = CallToolResult::success(vec![
            ContentBlock::Text(TextContent::new("first")),
            ContentBlock::Image(ImageContent::new("A".repeat(4000), "image/png")),
            ContentBlock::Resource(EmbeddedResource::new(
                ResourceContents::TextResourceContents {
                    uri: "file:///a.txt".into(),
                    mime_type: None,
                    text: "inside".into(),
                    meta: None,
                },
            )),
        ]);
        let out = result_to_output("t", result).unwrap().into_content();
        assert_eq!(
            out,
            "first\n[image omitted: image/png, 2.9 KB]\n[resource file:///a.txt]\ninside"
        );
    }

    #[test]
    fn is_error_results_become_tool_errors_with_the_servers_text() {
        let result = CallToolResult::error(vec![ContentBlock::text("Access denied: /etc")]);
        let err = result_to_output("read_file", result).unwrap_err();
        assert_eq!(err.message, "Access denied: /etc");
        let empty = CallToolResult::error(vec![]);
        let err = result_to_output("read_file", empty).unwrap_err();
        assert!(err.message.contains("`read_file` reported an error"));
    }

    #[test]
    fn text_is_preferred_and_structured_content_alone_is_json() {
        let mut result = CallToolResult::success(vec![ContentBlock::text("Allowed: /tmp")]);
        result.structured_content = Some(json!({"content": "Allowed: /tmp"}));
        assert_eq!(
            result_to_output("x", result).unwrap(),
            ToolOutput::Text("Allowed: /tmp".into())
        );
        let mut result = CallToolResult::success(vec![]);
        result.structured_content = Some(json!({"t": 1}));
        assert_eq!(
            result_to_output("x", result).unwrap(),
            ToolOutput::Json(json!({"t": 1}))
        );
    }

    #[test]
    fn our_outputs_round_trip() {
        let r = output_to_result(Ok(ToolOutput::Json(json!({"a": 1}))));
        assert_eq!(r.structured_content, Some(json!({"a": 1})));
        assert_eq!(blocks_to_text(&r.content), "{\"a\":1}");
        let r = output_to_result(Ok(ToolOutput::Json(json!(452))));
        assert_eq!(r.structured_content, None);
        assert_eq!(blocks_to_text(&r.content), "452");
        let r = output_to_result(Err(ToolError::failed("no")));
        assert_eq!(r.is_error, Some(true));
        assert_eq!(blocks_to_text(&r.content), "no");
    }
}
