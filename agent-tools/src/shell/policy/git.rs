//! `git`: read-only commands, their options, and the configuration that overrides a
//! repository's own.

use std::path::Path;

use super::Val::{Flag, Number, Text};
use super::{Opt, Refusal, check_path, parse};

/// Read-only git commands, and the options each may take (besides those all share).
const GIT_COMMANDS: &[(&str, &[Opt])] = &[
    (
        "status",
        &[
            Opt(
                &[
                    "-s",
                    "-b",
                    "--short",
                    "--branch",
                    "--porcelain",
                    "--ignored",
                ],
                Flag,
            ),
            Opt(&["--untracked-files"], Text),
        ],
    ),
    ("log", GIT_HISTORY),
    ("show", GIT_HISTORY),
    ("diff", GIT_HISTORY),
    (
        "shortlog",
        &[Opt(
            &["-s", "-n", "-e", "--summary", "--numbered", "--email"],
            Flag,
        )],
    ),
    (
        "blame",
        &[
            Opt(&["-w", "-s", "-e", "--show-email"], Flag),
            Opt(&["-L"], Text),
        ],
    ),
    (
        "ls-files",
        &[Opt(
            &[
                "-c",
                "-m",
                "-o",
                "-d",
                "--cached",
                "--modified",
                "--others",
                "--deleted",
                "--exclude-standard",
            ],
            Flag,
        )],
    ),
    (
        "rev-parse",
        &[Opt(
            &[
                "--short",
                "--abbrev-ref",
                "--show-toplevel",
                "--is-inside-work-tree",
                "--verify",
                "--symbolic-full-name",
            ],
            Flag,
        )],
    ),
    (
        "describe",
        &[Opt(&["--tags", "--always", "--long", "--dirty"], Flag)],
    ),
    (
        "grep",
        &[
            Opt(
                &[
                    "-i",
                    "-n",
                    "-l",
                    "-c",
                    "-w",
                    "-v",
                    "-E",
                    "-F",
                    "--ignore-case",
                    "--line-number",
                    "--files-with-matches",
                    "--count",
                    "--word-regexp",
                    "--invert-match",
                    "--extended-regexp",
                    "--fixed-strings",
                ],
                Flag,
            ),
            Opt(&["-e"], Text),
        ],
    ),
];

const GIT_HISTORY: &[Opt] = &[
    Opt(
        &[
            "--oneline",
            "--stat",
            "--shortstat",
            "--numstat",
            "--name-only",
            "--name-status",
            "--graph",
            "--decorate",
            "--no-decorate",
            "--abbrev-commit",
            "--no-merges",
            "--merges",
            "--reverse",
            "--first-parent",
            "--follow",
            "--cached",
            "--staged",
            "--word-diff",
            "-p",
            "--patch",
            "-s",
            "--no-patch",
            "-w",
            "--ignore-all-space",
            "--all",
            "--summary",
        ],
        Flag,
    ),
    Opt(&["-n", "--max-count", "-U", "--unified", "--skip"], Number),
    Opt(
        &[
            "--since", "--until", "--after", "--before", "--author", "--grep", "--format",
            "--pretty", "--date",
        ],
        Text,
    ),
];

const GIT_SHARED: &[Opt] = &[Opt(&["--no-color", "--color", "-q", "--quiet"], Flag)];

/// The read-only git commands.
pub const GIT_READ_ONLY: &[&str] = &[
    "status",
    "log",
    "show",
    "diff",
    "shortlog",
    "blame",
    "ls-files",
    "rev-parse",
    "describe",
    "grep",
];

pub(super) fn check_git(args: &[String], root: &Path) -> Result<(), Refusal> {
    let Some((command, rest)) = args.split_first() else {
        return Err("give a git command, e.g. `status`".into());
    };
    let Some((_, options)) = GIT_COMMANDS.iter().find(|(name, _)| name == command) else {
        return Err(format!(
            "`git {command}` is not allowed (global options such as `-c` and commands that \
             write, fetch or run hooks are refused); allowed: {}",
            GIT_READ_ONLY.join(", ")
        ));
    };
    let (_, operands) = parse(
        &format!("git {command}"),
        &merged(options),
        false,
        rest,
        root,
    )?;
    // Revisions (`HEAD~2..HEAD`) and paths: neither may name anything outside the root.
    for operand in operands {
        check_path(operand, root)?;
    }
    Ok(())
}

fn merged(options: &[Opt]) -> Vec<Opt> {
    options.iter().chain(GIT_SHARED).copied().collect()
}
/// What git is run with besides the model's arguments: configuration that takes precedence
/// over the repository's own (`.git/config` could name a pager, an fsmonitor, hooks or an
/// external diff, all of which run programs), and flags that switch off text conversion
/// filters.
pub(crate) fn git_environment() -> Vec<(String, String)> {
    let config = [
        ("core.fsmonitor", "false"),
        ("core.hooksPath", "/dev/null"),
        ("core.pager", "cat"),
        ("core.sshCommand", "false"),
        ("core.askPass", ""),
        ("core.editor", "false"),
        ("diff.external", ""),
        ("protocol.allow", "never"),
        ("credential.helper", ""),
        ("uploadpack.packObjectsHook", ""),
        ("safe.bareRepository", "explicit"),
        ("log.showSignature", "false"),
        ("gpg.program", "false"),
        ("core.gitProxy", "false"),
    ];
    let mut env = vec![
        ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
        ("GIT_CONFIG_GLOBAL".to_owned(), "/dev/null".to_owned()),
        ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
        ("GIT_PAGER".to_owned(), "cat".to_owned()),
        ("GIT_OPTIONAL_LOCKS".to_owned(), "0".to_owned()),
        ("GIT_CONFIG_COUNT".to_owned(), config.len().to_string()),
    ];
    for (i, (key, value)) in config.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), (*key).to_owned()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), (*value).to_owned()));
    }
    env
}

/// The arguments git actually gets: `--no-pager`, the command, the flags that switch off
/// external diff and text conversion where the command has them, then the model's.
pub(crate) fn git_arguments(args: &[String]) -> Vec<String> {
    let mut out = vec!["--no-pager".to_owned()];
    let Some((command, rest)) = args.split_first() else {
        return out;
    };
    out.push(command.clone());
    match command.as_str() {
        "log" | "show" | "diff" => {
            out.push("--no-ext-diff".into());
            out.push("--no-textconv".into());
        }
        "grep" | "blame" => out.push("--no-textconv".into()),
        _ => {}
    }
    out.extend(rest.iter().cloned());
    out
}
