//! The local model (`local:`, llama.cpp) on twenty arithmetic questions of its own: powers,
//! roots, percentages and multi-step word problems, none of them among the calculator's
//! examples. A question scores when the final answer states the right number; an answer
//! that states a number no tool result gave is counted apart (an invented result).
//!
//! ```text
//! cargo run -p agent-tests --features local --example local_arith
//! ```
//!
//! Uses `AGENT_LOCAL_MODEL`, else the default model in the user's cache.

use std::sync::Arc;

use agent_core::backends::local::{DEFAULT_MODEL, LocalConfig, LocalModel, resolve_model_path};
use agent_core::{LlmAgent, Message};
use agent_tools::Calculator;

/// A question and the number its answer must state.
const QUESTIONS: [(&str, &str); 20] = [
    ("What is 7 to the power of 3?", "343"),
    ("What is the square root of 2,025?", "45"),
    ("What is the cube root of 512?", "8"),
    ("What is 9 squared minus 17?", "64"),
    ("What is 2 to the power of 12?", "4096"),
    ("A pen costs 3 euros. How much do 14 pens cost?", "42"),
    ("What is 18% of 450?", "81"),
    (
        "I have 250 euros, then spend 37 euros and 48 euros. How much is left?",
        "165",
    ),
    (
        "A train runs at 84 km per hour for 3.5 hours. How far does it go?",
        "294",
    ),
    ("What is 1,000 divided by 8, plus 19?", "144"),
    ("What is the square root of 169, times 4?", "52"),
    ("What is 5 cubed plus 2 cubed?", "133"),
    (
        "28 students each need 3 notebooks, sold in packs of 4. How many packs are needed?",
        "21",
    ),
    ("What is 15 to the power of 2, divided by 9?", "25"),
    ("What is 3.5 times 12, minus 6?", "36"),
    ("What is 11 times 13 times 2?", "286"),
    ("What is 40% of 75, plus the square root of 81?", "39"),
    (
        "A garden is 24 metres long and 15 metres wide. What is its area in square metres?",
        "360",
    ),
    ("What is 10 to the power of 4, minus 1?", "9999"),
    ("5 apples cost 4 euros. How much do 35 apples cost?", "28"),
];

/// The numbers in a text, thousands separators removed (`4,096` is 4096).
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let digit_follows = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() || (c == '.' && !current.is_empty() && digit_follows) {
            current.push(c);
        } else if c == ',' && !current.is_empty() && digit_follows {
            // A thousands separator: skip it.
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .map(|n| n.strip_suffix(".0").map(str::to_owned).unwrap_or(n))
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let home = std::env::var("HOME").ok().map(std::path::PathBuf::from);
    let path = resolve_model_path(
        DEFAULT_MODEL,
        std::env::var("AGENT_LOCAL_MODEL").ok().as_deref(),
        home.as_deref(),
    )?;
    let model = Arc::new(LocalModel::new(LocalConfig::new(&path)));
    let (mut right, mut invented) = (0, 0);
    for (question, expected) in QUESTIONS {
        let agent = LlmAgent::builder(model.clone())
            .instructions(
                "You are a careful assistant. Use the calculator tool for every calculation, \
                 then answer in one short sentence.",
            )
            .tool(Calculator::new())
            .max_turns(4)
            .build()?;
        let (calls, results, text) = match agent.ask(question).await {
            Ok(r) => {
                let calls: Vec<String> = r
                    .new_messages
                    .iter()
                    .filter_map(Message::as_assistant)
                    .flat_map(|a| a.tool_calls.iter())
                    .map(|c| c.arguments.clone())
                    .collect();
                let results: Vec<String> = r
                    .new_messages
                    .iter()
                    .filter_map(|m| match m {
                        Message::Tool(t) => Some(t.content.clone()),
                        _ => None,
                    })
                    .collect();
                (calls, results, r.text)
            }
            Err(e) => (Vec::new(), Vec::new(), format!("error: {e}")),
        };
        let stated = numbers(&text);
        let ok = stated.iter().any(|n| n == expected);
        // A number in the answer that is in neither the question nor any tool result.
        let given: Vec<String> = results
            .iter()
            .flat_map(|r| numbers(r))
            .chain(numbers(question))
            .collect();
        let made_up = !ok && stated.iter().any(|n| !given.contains(n));
        right += usize::from(ok);
        invented += usize::from(made_up);
        println!(
            "{} {:<84} {}",
            if ok {
                "ok  "
            } else if made_up {
                "INV "
            } else {
                "MISS"
            },
            question,
            calls.join(" | ")
        );
        println!(
            "       results: {} → {}",
            results.join(" | "),
            text.chars().take(100).collect::<String>()
        );
    }
    println!();
    println!("model: {}", path.display());
    println!(
        "score: {right}/{} right; {invented} answers stated a number no tool result gave",
        QUESTIONS.len()
    );
    Ok(())
}
