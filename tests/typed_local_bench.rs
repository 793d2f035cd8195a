//! Typed answers on the local model measured: the twenty extraction tasks of
//! `agent_tests::extraction`, asked three ways, each answer taken as first written (no
//! retry): how many parse and follow the type, how many are right, and the time per
//! generated token (the grammar's cost is the difference between the first two rows).
//!
//! ```text
//! cargo run --release -p agent-tests --features local --example typed_local_bench
//! ```
//!
//! 1. native: the answer line decoded under the grammar compiled from the type's schema;
//! 2. native, grammar off: the same prompt (fields and a worked example), free decoding;
//! 3. prompted: the schema in the instructions only, free decoding.

use std::sync::Arc;

use agent_core::backends::local::{LocalConfig, LocalModel};
use agent_core::output::{Output, OutputMode};
use agent_core::{LlmAgent, RunContext};
use agent_tests::extraction::{INSTRUCTIONS, Order, is_correct, tasks};
use agent_tests::local_model_path;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = local_model_path()?;
    println!("| setup | valid | correct | ms per generated token |");
    println!("|---|---|---|---|");
    for (label, grammar, mode) in [
        ("native, grammar", true, OutputMode::Native),
        ("native, no grammar", false, OutputMode::Native),
        ("prompted, no grammar", false, OutputMode::Prompted),
    ] {
        let mut config = LocalConfig::new(&path);
        config.grammar = grammar;
        let model = Arc::new(LocalModel::new(config));
        let agent = LlmAgent::builder(model.clone())
            .instructions(INSTRUCTIONS)
            .build()?;
        let output = Output::<Order>::new().mode(mode).max_retries(0);
        let ctx = RunContext::new();
        let (mut valid, mut correct) = (0, 0);
        for (sentence, want) in tasks() {
            if let Ok(typed) = agent.run_as(sentence, &ctx, &output).await {
                valid += 1;
                correct += usize::from(is_correct(&typed.value, &want));
            }
        }
        let stats = model.stats();
        let per_token =
            stats.generation_time.as_secs_f64() * 1000.0 / stats.generated_tokens.max(1) as f64;
        println!("| {label} | {valid}/20 | {correct}/20 | {per_token:.1} |");
    }
    Ok(())
}
