//! The local model (`local:`, llama.cpp) measured: load time, prompt and generation speed,
//! the grammar's cost, peak RSS, the quickstart end to end, and a score on ten simple tool
//! tasks.
//!
//! ```text
//! cargo run --release -p agent-tests --features local --example local_bench
//! cargo run --release -p agent-tests --features local --example local_bench -- --threads 1
//! cargo run --release -p agent-tests --features local --example local_bench -- --no-grammar
//! cargo run --release -p agent-tests --features local --example local_bench -- --context 4096
//! ```
//!
//! Uses `AGENT_LOCAL_MODEL`, else the default model in the user's cache. Every task offers
//! the same four tools (calculator, clock, read_file, weather); a task scores when the
//! model's first call names the right tool and its result is the right one.

use std::sync::Arc;
use std::time::Instant;

use agent_core::backends::local::{DEFAULT_MODEL, LocalConfig, LocalModel, resolve_model_path};
use agent_core::{LlmAgent, Message, Tool, tool_fn};
use agent_tests::proc_stats::peak_rss_mib;
use agent_tools::{Calculator, Clock, FileTools};

struct Task {
    question: &'static str,
    tool: &'static str,
    /// What the first call's result must contain (`TODAY`: today's date).
    result: &'static str,
    /// What the final answer must contain (`TODAY`: today's date).
    answer: &'static str,
}

const TASKS: [Task; 10] = [
    Task {
        question: "What is 12.5% of 3,280, plus the square root of 1,764?",
        tool: "calculator",
        result: "452",
        answer: "452",
    },
    Task {
        question: "What is 17 times 23?",
        tool: "calculator",
        result: "391",
        answer: "391",
    },
    Task {
        question: "What is 2 to the power of 10, minus 24?",
        tool: "calculator",
        result: "1000",
        answer: "1000",
    },
    Task {
        question: "How much is 144 divided by 12?",
        tool: "calculator",
        result: "12",
        answer: "12",
    },
    Task {
        question: "What is today's date?",
        tool: "clock",
        result: "TODAY",
        answer: "TODAY",
    },
    Task {
        question: "What time is it in Tokyo right now?",
        tool: "clock",
        result: "+09",
        answer: "Tokyo",
    },
    Task {
        question: "How many days are there between 2024-01-01 and 2024-03-01?",
        tool: "clock",
        result: "\"days\":60",
        answer: "60",
    },
    Task {
        question: "Read the file notes.txt and tell me what it says.",
        tool: "read_file",
        result: "buy milk",
        answer: "milk",
    },
    Task {
        question: "What's the weather like in Lyon?",
        tool: "weather",
        result: "Lyon",
        answer: "Lyon",
    },
    Task {
        question: "What date is 30 days after 2025-01-15?",
        tool: "clock",
        result: "2025-02-14",
        answer: "2025-02-14",
    },
];

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let home = std::env::var("HOME").ok().map(std::path::PathBuf::from);
    let path = resolve_model_path(
        DEFAULT_MODEL,
        std::env::var("AGENT_LOCAL_MODEL").ok().as_deref(),
        home.as_deref(),
    )?;
    let mut config = LocalConfig::new(&path);
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        config.threads = args.get(i + 1).and_then(|t| t.parse().ok());
    }
    if let Some(n) = args
        .iter()
        .position(|a| a == "--context")
        .and_then(|i| args.get(i + 1))
        .and_then(|t| t.parse().ok())
    {
        config.context_size = n;
    }
    config.grammar = !args.iter().any(|a| a == "--no-grammar");
    let model = Arc::new(LocalModel::new(config.clone()));

    let folder = tempfile::tempdir()?;
    std::fs::write(
        folder.path().join("notes.txt"),
        "Remember to buy milk and eggs.\n",
    )?;
    let files = FileTools::new(folder.path())?;
    let read_file = files
        .read_only_tools()
        .into_iter()
        .find(|t| t.name() == "read_file")
        .ok_or("no read_file tool")?;
    let weather = tool_fn(
        "weather",
        "Current weather in a city.",
        |a: WeatherArgs, _| async move { Ok(format!("Sunny, 21°C in {}", a.city)) },
    )
    .with_example(
        "Is it raining in Berlin?",
        serde_json::json!({"city": "Berlin"}),
    );
    // (FnTool examples have no outcome; the ready tools' examples do.)
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(Calculator::new()),
        Arc::new(Clock::new()),
        read_file,
        Arc::new(weather),
    ];

    // The quickstart, end to end (includes waiting for the model to load).
    let started = Instant::now();
    let quickstart = LlmAgent::builder(model.clone())
        .instructions(
            "You are a careful assistant. Use the calculator tool for every calculation, \
             then answer in one short sentence.",
        )
        .tool(Calculator::new())
        .build()?;
    let answer = quickstart.ask(TASKS[0].question).await?;
    let quickstart_time = started.elapsed();
    let load = model.stats();

    let now = Tool::call(
        &Clock::new(),
        serde_json::json!({"action": "now"}),
        &agent_core::ToolContext::detached(),
    )
    .await?
    .into_content();
    let today = serde_json::from_str::<serde_json::Value>(&now)?["date"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let mut score = 0;
    let mut answered = 0;
    for task in &TASKS {
        let agent = LlmAgent::builder(model.clone())
            .instructions("You are a careful assistant. Use a tool whenever one fits.")
            .tools(tools.clone())
            .max_turns(4)
            .build()?;
        let result = agent.ask(task.question).await;
        let (call, output, text) = match &result {
            Ok(r) => {
                let call = r.new_messages.iter().find_map(|m| match m {
                    Message::Assistant(a) => a.tool_calls.first().cloned(),
                    _ => None,
                });
                let output = r.new_messages.iter().find_map(|m| match m {
                    Message::Tool(t) => Some(t.content.clone()),
                    _ => None,
                });
                (call, output, r.text.clone())
            }
            Err(e) => (None, None, format!("error: {e}")),
        };
        let today_key = format!("\"date\":\"{today}\"");
        let expected = if task.result == "TODAY" {
            today_key.as_str()
        } else {
            task.result
        };
        let in_answer = if task.answer == "TODAY" {
            today.as_str()
        } else {
            task.answer
        };
        let ok = call.as_ref().is_some_and(|c| c.name == task.tool)
            && output.as_deref().is_some_and(|o| o.contains(expected));
        score += usize::from(ok);
        answered += usize::from(ok && text.contains(in_answer));
        println!(
            "{} {:<62} {}",
            if ok { "ok  " } else { "MISS" },
            task.question,
            call.map(|c| format!("{} {}", c.name, c.arguments))
                .unwrap_or_else(|| "(no call)".into())
        );
        println!("       → {}", text.chars().take(120).collect::<String>());
    }

    let stats = model.stats();
    let secs = |d: std::time::Duration| d.as_secs_f64();
    println!();
    println!("model: {}", path.display());
    println!(
        "generation threads at the end: {} ({} changes for other processes' load), grammar: {}, chat template: {}",
        stats.threads, stats.thread_changes, config.grammar, stats.chat_template
    );
    println!("load: {:.2} s", secs(load.load_time));
    println!(
        "quickstart end to end: {:.2} s → {}",
        secs(quickstart_time),
        answer.text
    );
    println!(
        "prompt: {} tokens in {:.2} s = {:.0} tokens/s ({} more reused from the KV cache)",
        stats.prompt_tokens,
        secs(stats.prompt_time),
        stats.prompt_tokens as f64 / secs(stats.prompt_time).max(1e-9),
        stats.reused_tokens
    );
    println!(
        "generation: {} tokens in {:.2} s = {:.1} tokens/s",
        stats.generated_tokens,
        secs(stats.generation_time),
        stats.generated_tokens as f64 / secs(stats.generation_time).max(1e-9)
    );
    println!(
        "score: {score}/10 right tool and result; {answered}/10 also right in the final answer"
    );
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
    Ok(())
}
