//! The trace page: turns a trace file (written with `AGENT_TRACE_FILE=run.jsonl`, or
//! `Telemetry::new().trace_file(..)`) into one self-contained HTML page, or a terminal
//! summary with `--text`.
//!
//! ```text
//! cargo run --example trace_view -- run.jsonl > run.html
//! cargo run --example trace_view -- --text run.jsonl
//! ```

use std::process::ExitCode;

use agent_core::telemetry::view::TraceView;

const USAGE: &str = "usage: trace_view [--text] TRACE_FILE.jsonl  (HTML on standard output)";

fn main() -> ExitCode {
    let mut text = false;
    let mut path = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--text" => text = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if other.starts_with('-') => {
                eprintln!("trace_view: unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
            other if path.is_none() => path = Some(other.to_owned()),
            _ => {
                eprintln!("trace_view: one trace file at a time\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let content = match std::fs::read_to_string(&path) {
        Ok(content) => content,
        Err(e) => {
            eprintln!("trace_view: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let view = match TraceView::parse(&content) {
        Ok(view) => view,
        Err(e) => {
            eprintln!("trace_view: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if text {
        print!("{}", view.to_text());
    } else {
        print!("{}", view.to_html());
    }
    ExitCode::SUCCESS
}
