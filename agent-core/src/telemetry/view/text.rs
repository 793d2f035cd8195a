//! The trace as text: one block per agent run, one line per turn, nested agents indented.

use std::fmt::Write;

use super::{AgentRun, TraceView, ms, usd};

/// The summary.
pub(super) fn render(view: &TraceView) -> String {
    let totals = view.totals();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} run(s): model {} ms, tools {} ms, framework {} ms; {} input / {} output tokens; {}; \
         {} retries; {} errors",
        view.runs.len(),
        ms(totals.model_us),
        ms(totals.tool_us),
        ms(totals.framework_us),
        totals.input_tokens,
        totals.output_tokens,
        usd(totals.cost_usd),
        totals.retries,
        totals.errors,
    );
    for run in &view.runs {
        agent(&mut out, run, 0);
    }
    out
}

fn agent(out: &mut String, run: &AgentRun, depth: usize) {
    let pad = "    ".repeat(depth);
    let _ = writeln!(
        out,
        "{pad}agent {} ({}) {} ms, {} turn(s){}",
        run.name,
        if run.model.is_empty() {
            "?"
        } else {
            &run.model
        },
        ms(run.duration_us),
        run.turns.len(),
        run.error
            .as_ref()
            .map(|e| format!(" FAILED: {e}"))
            .unwrap_or_default(),
    );
    for turn in &run.turns {
        let mut notes = String::new();
        if turn.retries > 0 {
            let _ = write!(notes, " RETRIES {}", turn.retries);
        }
        if let Some(error) = &turn.error {
            let _ = write!(notes, " MODEL FAILED: {error}");
        }
        for tool in &turn.tools {
            if let Some(error) = &tool.error {
                let _ = write!(notes, " TOOL {} FAILED: {error}", tool.name);
            }
        }
        let tools: Vec<String> = turn
            .tools
            .iter()
            .map(|t| format!("{} {} ms", t.name, ms(t.duration_us)))
            .collect();
        let _ = writeln!(
            out,
            "{pad}  turn {}: model {} ms, tools {} ms, framework {} ms; {} in / {} out; {}{}{}",
            turn.number,
            ms(turn.model_us),
            ms(turn.tool_us),
            ms(turn.framework_us),
            turn.input_tokens,
            turn.output_tokens,
            usd(turn.cost_usd),
            if tools.is_empty() {
                String::new()
            } else {
                format!(" [{}]", tools.join(", "))
            },
            notes,
        );
        for tool in &turn.tools {
            for nested in &tool.agents {
                agent(out, nested, depth + 1);
            }
        }
    }
    let own = &run.own;
    let _ = writeln!(
        out,
        "{pad}  total: model {} ms, tools {} ms, framework {} ms; {} in / {} out; {}",
        ms(own.model_us),
        ms(own.tool_us),
        ms(own.framework_us),
        own.input_tokens,
        own.output_tokens,
        usd(own.cost_usd),
    );
    if run.total != run.own {
        let _ = writeln!(
            out,
            "{pad}  with nested agents: {} in / {} out; {}",
            run.total.input_tokens,
            run.total.output_tokens,
            usd(run.total.cost_usd),
        );
    }
}
