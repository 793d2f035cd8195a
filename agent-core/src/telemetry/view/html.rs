//! The trace page: one HTML file with its style inline, no script and no link, so it opens
//! from a file on a machine without network.

use std::fmt::Write;

use super::{AgentRun, TraceView, Turn, ms, usd};

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 4px; }
.summary, .agent-totals { color: #57606a; margin: 0 0 8px; }
.legend span { display: inline-block; margin-right: 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px; }
.model { background: #4c8bf5; } .tool { background: #f5a623; } .framework { background: #b0b7c0; }
section.agent { border: 1px solid #d0d7de; border-radius: 6px; padding: 12px; margin: 12px 0; }
section.agent section.agent { margin-left: 16px; background: #f6f8fa; }
.timeline { margin: 8px 0 12px; }
.turn-row { display: flex; align-items: center; height: 20px; }
.turn-row .label { width: 64px; color: #57606a; font-size: 12px; }
.track { position: relative; flex: 1; height: 14px; background: #f0f2f4; }
.bar { position: absolute; top: 0; height: 14px; display: flex; min-width: 2px; }
.seg { height: 14px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: right; padding: 3px 8px; border-bottom: 1px solid #eaeef2; white-space: nowrap; }
th:first-child, td:first-child, td.notes, th.notes, td.model-name { text-align: left; }
td.notes { white-space: normal; }
tr.total td { font-weight: 600; border-top: 2px solid #d0d7de; }
tr.tools > td { text-align: left; color: #57606a; font-size: 12px; }
.error { color: #cf222e; font-weight: 600; }
.retry { color: #9a6700; font-weight: 600; }
";

/// The page.
pub(super) fn render(view: &TraceView) -> String {
    let totals = view.totals();
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        out,
        "<title>Agent trace: {} run{}</title><style>{STYLE}</style></head><body>",
        view.runs.len(),
        plural(view.runs.len())
    );
    out.push_str("<h1>Agent trace</h1>");
    let _ = write!(
        out,
        "<p class=\"summary\" id=\"summary\">{} run{} · model {} ms · tools {} ms · \
         framework {} ms · <span class=\"tokens\">{} input / {} output tokens</span> · \
         <span class=\"cost\">{}</span>{}{}</p>",
        view.runs.len(),
        plural(view.runs.len()),
        ms(totals.model_us),
        ms(totals.tool_us),
        ms(totals.framework_us),
        totals.input_tokens,
        totals.output_tokens,
        usd(totals.cost_usd),
        if totals.retries > 0 {
            format!(
                " · <span class=\"retry\">{}</span>",
                count(totals.retries, "retry", "retries")
            )
        } else {
            String::new()
        },
        if totals.errors > 0 {
            format!(
                " · <span class=\"error\">{}</span>",
                count(totals.errors, "error", "errors")
            )
        } else {
            String::new()
        },
    );
    out.push_str(
        "<p class=\"legend\"><span><i class=\"swatch model\"></i>model</span>\
         <span><i class=\"swatch tool\"></i>tools</span>\
         <span><i class=\"swatch framework\"></i>framework (the time the framework adds)</span></p>",
    );
    if view.runs.is_empty() {
        out.push_str("<p>No agent run in this trace file.</p>");
    }
    for run in &view.runs {
        agent(&mut out, run, 0);
    }
    out.push_str("</body></html>\n");
    out
}

fn agent(out: &mut String, run: &AgentRun, depth: usize) {
    let _ = write!(
        out,
        "<section class=\"agent\" data-agent=\"{}\" data-depth=\"{depth}\"><h2>{}",
        escape(&run.name),
        escape(&run.name)
    );
    if !run.model.is_empty() {
        let _ = write!(out, " <small>{}</small>", escape(&run.model));
    }
    if let Some(error) = &run.error {
        let _ = write!(
            out,
            " <span class=\"error\">failed: {}</span>",
            escape(error)
        );
    }
    out.push_str("</h2>");
    let own = &run.own;
    let _ = write!(
        out,
        "<p class=\"agent-totals\">{} ms · {} turn{} · this agent: {} input / {} output tokens, \
         {}{}</p>",
        ms(run.duration_us),
        run.turns.len(),
        plural(run.turns.len()),
        own.input_tokens,
        own.output_tokens,
        usd(own.cost_usd),
        if run.total != run.own {
            format!(
                " · with nested agents: {} input / {} output tokens, {}",
                run.total.input_tokens,
                run.total.output_tokens,
                usd(run.total.cost_usd)
            )
        } else {
            String::new()
        },
    );
    timeline(out, run);
    out.push_str(
        "<table class=\"turns\"><thead><tr><th>turn</th><th class=\"notes\">model</th>\
         <th>model ms</th><th>tool ms</th><th>framework ms</th><th>input</th><th>output</th>\
         <th>cost</th><th class=\"notes\">retries and errors</th></tr></thead><tbody>",
    );
    for turn in &run.turns {
        turn_rows(out, turn, depth);
    }
    let _ = write!(
        out,
        "</tbody><tfoot><tr class=\"total\"><td>total</td><td></td>\
         <td class=\"model-ms\">{}</td><td class=\"tool-ms\">{}</td>\
         <td class=\"framework-ms\">{}</td><td class=\"input\">{}</td>\
         <td class=\"output\">{}</td><td class=\"cost\">{}</td><td class=\"notes\">{}</td>\
         </tr></tfoot></table></section>",
        ms(own.model_us),
        ms(own.tool_us),
        ms(own.framework_us),
        own.input_tokens,
        own.output_tokens,
        usd(own.cost_usd),
        notes_total(own.retries, own.errors),
    );
}

fn timeline(out: &mut String, run: &AgentRun) {
    let span = run.duration_us.max(1) as f64;
    out.push_str("<div class=\"timeline\">");
    for turn in &run.turns {
        let left = (turn.start_us.saturating_sub(run.start_us)) as f64 / span * 100.0;
        let width = turn.duration_us as f64 / span * 100.0;
        let part = |us: u64| {
            if turn.duration_us == 0 {
                0.0
            } else {
                us as f64 / turn.duration_us as f64 * 100.0
            }
        };
        let _ = write!(
            out,
            "<div class=\"turn-row\" data-turn=\"{n}\"><span class=\"label\">turn {n}</span>\
             <div class=\"track\"><div class=\"bar\" style=\"left:{left:.2}%;width:{width:.2}%\" \
             title=\"turn {n}: model {m} ms, tools {t} ms, framework {f} ms\">\
             <div class=\"seg model\" style=\"width:{pm:.2}%\"></div>\
             <div class=\"seg tool\" style=\"width:{pt:.2}%\"></div>\
             <div class=\"seg framework\" style=\"width:{pf:.2}%\"></div></div></div></div>",
            n = turn.number,
            m = ms(turn.model_us),
            t = ms(turn.tool_us),
            f = ms(turn.framework_us),
            pm = part(turn.model_us),
            pt = part(turn.tool_us),
            pf = part(turn.framework_us),
        );
    }
    out.push_str("</div>");
}

fn turn_rows(out: &mut String, turn: &Turn, depth: usize) {
    let mut notes = String::new();
    if turn.retries > 0 {
        let _ = write!(
            notes,
            "<span class=\"retry\">{} retr{}</span> ",
            turn.retries,
            if turn.retries == 1 { "y" } else { "ies" }
        );
    }
    if let Some(error) = &turn.error {
        let _ = write!(
            notes,
            "<span class=\"error\">model failed: {}</span> ",
            escape(error)
        );
    }
    for tool in &turn.tools {
        if let Some(error) = &tool.error {
            let _ = write!(
                notes,
                "<span class=\"error\">{} failed: {}</span> ",
                escape(&tool.name),
                escape(error)
            );
        }
    }
    let _ = write!(
        out,
        "<tr class=\"turn\" data-turn=\"{}\"><td>{}</td><td class=\"model-name\">{}</td>\
         <td class=\"model-ms\">{}</td><td class=\"tool-ms\">{}</td>\
         <td class=\"framework-ms\">{}</td><td class=\"input\">{}</td><td class=\"output\">{}</td>\
         <td class=\"cost\">{}</td><td class=\"notes\">{}</td></tr>",
        turn.number,
        turn.number,
        escape(&turn.model),
        ms(turn.model_us),
        ms(turn.tool_us),
        ms(turn.framework_us),
        turn.input_tokens,
        turn.output_tokens,
        usd(turn.cost_usd),
        notes.trim_end(),
    );
    if turn.tools.is_empty() {
        return;
    }
    out.push_str("<tr class=\"tools\"><td colspan=\"9\">tools: ");
    let calls: Vec<String> = turn
        .tools
        .iter()
        .map(|t| {
            let class = if t.error.is_some() { " error" } else { "" };
            format!(
                "<span class=\"tool-call{class}\">{} ({} ms)</span>",
                escape(&t.name),
                ms(t.duration_us)
            )
        })
        .collect();
    out.push_str(&calls.join(" · "));
    for tool in &turn.tools {
        for nested in &tool.agents {
            agent(out, nested, depth + 1);
        }
    }
    out.push_str("</td></tr>");
}

fn notes_total(retries: u64, errors: u64) -> String {
    let mut notes = Vec::new();
    if retries > 0 {
        let text = count(retries, "retry", "retries");
        notes.push(format!("<span class=\"retry\">{text}</span>"));
    }
    if errors > 0 {
        let text = count(errors, "error", "errors");
        notes.push(format!("<span class=\"error\">{text}</span>"));
    }
    notes.join(" ")
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Text safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
