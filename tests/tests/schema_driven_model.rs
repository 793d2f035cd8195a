//! `SchemaDrivenModel` on every tool of `agent-tools`: each is called once, with arguments
//! its schema accepts (the loop's own checks pass them: a refused call would have no
//! `ToolCallStarted`), and the run ends with the summary.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::run::RunEvent;
use agent_core::schema::ArgumentValidator;
use agent_core::testing::{SUMMARY_HEADING, SchemaDrivenModel};
use agent_core::{Tool, ToolSet};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::{Calculator, Clock, FileTools, HttpFetch, SearxNg, Shell, WebSearch};
use futures::StreamExt;
use serde_json::json;

async fn every_tool(root: &std::path::Path, search: &FakeServer) -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(Calculator::new()),
        Arc::new(Clock::new()),
        // Only the fake server may be fetched: generated URLs never leave the machine.
        Arc::new(HttpFetch::new().allow_host("127.0.0.1")),
        Arc::new(Shell::new(root, ["ls", "cat"]).unwrap()),
        Arc::new(WebSearch::new(Arc::new(
            SearxNg::new(format!("http://{}", search.addr())).unwrap(),
        ))),
    ];
    tools.extend(FileTools::new(root).unwrap().all_tools());
    tools
}

#[tokio::test]
async fn every_agent_tools_tool_is_called_once_with_arguments_its_schema_accepts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let search = FakeServer::start(|_, _| Reply::json(200, &json!({"results": []}))).await;
    let tools = every_tool(dir.path(), &search).await;
    let names: Vec<String> = tools.iter().map(|t| t.name().to_owned()).collect();
    assert!(names.len() >= 10, "{names:?}");
    let specs = ToolSet::new(tools.clone()).unwrap().specs().clone();

    let model = Arc::new(SchemaDrivenModel::new(2026));
    let agent = LlmAgent::builder(model.clone())
        .tools(tools)
        .max_turns(names.len() as u32 + 1)
        .build()
        .unwrap();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = agent.run_stream("Call every tool", &ctx).collect().await;

    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        if let RunEvent::ToolCallStarted { name, .. } = event {
            *started.entry(name.clone()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(
        started, expected,
        "each tool passes the checks and runs exactly once"
    );

    let calls = model.calls();
    assert_eq!(calls.len(), names.len());
    for call in &calls {
        let spec = specs.iter().find(|s| s.name == call.name).unwrap();
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        ArgumentValidator::new(&spec.parameters)
            .unwrap()
            .validate(&args)
            .unwrap_or_else(|e| panic!("{}: {e:?}", call.name));
    }
    let Some(RunEvent::Finished(result)) = events.last() else {
        panic!("the run did not finish: {:?}", events.last());
    };
    assert!(result.text.starts_with(SUMMARY_HEADING), "{}", result.text);
    for name in &names {
        assert!(
            result.text.contains(&format!("- {name}: ")),
            "{name} missing from {}",
            result.text
        );
    }
}

#[tokio::test]
async fn the_same_seed_generates_the_same_calls() {
    let dir = tempfile::tempdir().unwrap();
    let search = FakeServer::start(|_, _| Reply::json(200, &json!({"results": []}))).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let model = Arc::new(SchemaDrivenModel::new(7));
        let agent = LlmAgent::builder(model.clone())
            .tools(every_tool(dir.path(), &search).await)
            .max_turns(20)
            .build()
            .unwrap();
        agent.ask("go").await.unwrap();
        runs.push(
            model
                .calls()
                .into_iter()
                .map(|c| (c.name, c.arguments))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(runs[0], runs[1]);
}
