//! A custom typed tool: the schema the model sees is derived from `ConvertArgs`, the
//! arguments are checked against it before `call` runs, and `call` gets a typed struct.
//!
//! ```text
//! cargo run --example custom_tool
//! cargo run --example custom_tool -- "How warm is 21 °C in Fahrenheit?"
//! ```

use std::process::ExitCode;

use agent_core::ChatResponse;
use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript, task_from_args};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// A temperature scale.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Scale {
    Celsius,
    Fahrenheit,
    Kelvin,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ConvertArgs {
    /// The temperature to convert.
    value: f64,
    /// The scale `value` is in.
    from: Scale,
    /// The scale to convert to.
    to: Scale,
}

/// Converts temperatures between scales.
struct ConvertTemperature;

#[async_trait]
impl TypedTool for ConvertTemperature {
    type Args = ConvertArgs;

    fn name(&self) -> &str {
        "convert_temperature"
    }

    fn description(&self) -> &str {
        "Converts a temperature between celsius, fahrenheit and kelvin."
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }

    async fn call(&self, args: ConvertArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let kelvin = match args.from {
            Scale::Celsius => args.value + 273.15,
            Scale::Fahrenheit => (args.value - 32.0) * 5.0 / 9.0 + 273.15,
            Scale::Kelvin => args.value,
        };
        if kelvin < 0.0 {
            return Err(ToolError::invalid_arguments(format!(
                "{} {:?} is below absolute zero",
                args.value, args.from
            )));
        }
        let converted = match args.to {
            Scale::Celsius => kelvin - 273.15,
            Scale::Fahrenheit => (kelvin - 273.15) * 9.0 / 5.0 + 32.0,
            Scale::Kelvin => kelvin,
        };
        let rounded = (converted * 100.0).round() / 100.0;
        Ok(json!({ "value": rounded, "scale": format!("{:?}", args.to).to_lowercase() }).into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let question = task_from_args("How warm is 21 °C in Fahrenheit?");
    exit_code(run(&question).await)
}

async fn run(question: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = choose_model(|| {
        // Offline: always converts 21 °C to °F, then reports the tool's answer.
        ScriptedModel::new()
            .then_tool_call(
                "convert_temperature",
                json!({"value": 21, "from": "celsius", "to": "fahrenheit"}),
            )
            .then_reply(|req| {
                let answer = last_tool_output(req).map_or_else(String::new, |(out, _)| out);
                Ok(ChatResponse::text(format!("The conversion gave {answer}.")))
            })
    })?;
    let agent = LlmAgent::builder(model)
        .instructions("Answer temperature questions with the convert_temperature tool.")
        .tool(ConvertTemperature)
        .build()?;
    println!("question: {question}");
    print_transcript(&agent.ask(question).await?);
    Ok(())
}
