//! Argument policies: what each known program may be given.
//!
//! A program is only as safe as its most dangerous option (`find -exec`, `tar
//! --to-command`, `wc --files0-from`, `git -c core.pager=...`), so arguments are checked by
//! allow-list, never by deny-list: each known program lists the options it may take and what
//! their values are (a path, a number, plain text), and every other option is refused. Every
//! path, as an operand or an option's value, must stay inside the root: no absolute path
//! outside it, no `..`, nothing under `/proc` or `/dev`. Programs without a policy may only
//! be given paths inside the root (no options at all). Programs that run other programs or
//! code (`env`, `xargs`, `timeout`, shells, interpreters, `sed`, `awk`) cannot be allowed.
//!
//! GNU option parsing is followed where it matters: options may come after operands, `--`
//! ends them, a long option's value may follow `=`, short options may be grouped and a
//! short option's value may be attached (`-n5`). Abbreviated long options (`--files0`) are
//! refused because only exact names are on the lists.

use std::path::{Component, Path};

use Val::{Archive, Flag, Number, Path as P, Text};

/// What an option (or an operand) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    /// A flag: no value.
    Flag,
    /// A path that must stay inside the root.
    Path,
    /// Text the program does not open (a pattern, a format, a revision).
    Text,
    /// A number (digits, an optional sign, a unit suffix).
    Number,
    /// An archive file: a path, never `host:path` (which tar reaches through a remote
    /// shell).
    Archive,
}

/// One allowed option: its spellings and what it takes.
#[derive(Clone, Copy, Debug)]
struct Opt(&'static [&'static str], Val);

/// How the non-option arguments of a program are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operands {
    /// Paths.
    Paths,
    /// A pattern first (unless `-e`/`-f` gave one), then paths.
    PatternThenPaths,
    /// Text the program does not open.
    Text,
    /// At most one path (the second operand of `uniq` is an output file).
    OnePath,
    /// Only a `+FORMAT` (`date MMDDhhmm` would set the clock).
    Format,
}

/// The policy of one program.
#[derive(Clone, Copy, Debug)]
struct Policy {
    options: &'static [Opt],
    operands: Operands,
    /// `head -5` (an option that is only digits).
    digit_options: bool,
}

mod find;
mod git;
mod programs;

use find::check_find;
pub use git::GIT_READ_ONLY;
use git::check_git;
pub(crate) use git::{git_arguments, git_environment};
use programs::*;

fn policy(program: &str) -> Option<Policy> {
    let (options, operands, digit_options) = match program {
        "ls" => (LS, Operands::Paths, false),
        "cat" => (CAT, Operands::Paths, false),
        "head" | "tail" => (HEAD_TAIL, Operands::Paths, true),
        "wc" => (WC, Operands::Paths, false),
        "grep" => (GREP, Operands::PatternThenPaths, false),
        "sort" => (SORT, Operands::Paths, false),
        "uniq" => (UNIQ, Operands::OnePath, false),
        "cut" => (CUT, Operands::Paths, false),
        "diff" => (DIFF, Operands::Paths, false),
        "echo" => (ECHO, Operands::Text, false),
        "stat" => (STAT, Operands::Paths, false),
        "du" => (DU, Operands::Paths, false),
        "file" => (FILE, Operands::Paths, false),
        "tree" => (TREE, Operands::Paths, false),
        "pwd" => (PWD, Operands::Text, false),
        "date" => (DATE, Operands::Format, false),
        "tar" => (TAR, Operands::Paths, false),
        _ => return None,
    };
    Some(Policy {
        options,
        operands,
        digit_options,
    })
}

/// The programs with an argument policy of their own (besides `find` and `git`, which have
/// grammars of their own).
pub const KNOWN_PROGRAMS: &[&str] = &[
    "cat", "date", "diff", "du", "echo", "file", "find", "git", "grep", "head", "ls", "pwd",
    "sort", "stat", "tail", "tar", "tree", "uniq", "wc",
];

/// Whether a program has an argument policy of its own.
pub(crate) fn has_policy(program: &str) -> bool {
    matches!(program, "find" | "git") || policy(program).is_some()
}

/// Programs that run other programs, or run code they are given: allowing one would allow
/// everything.
const NEVER: &[&str] = &[
    "env",
    "xargs",
    "nice",
    "ionice",
    "timeout",
    "nohup",
    "setsid",
    "stdbuf",
    "chroot",
    "sudo",
    "su",
    "doas",
    "runuser",
    "time",
    "watch",
    "strace",
    "ltrace",
    "gdb",
    "busybox",
    "toybox",
    "sh",
    "bash",
    "dash",
    "zsh",
    "fish",
    "ksh",
    "mksh",
    "csh",
    "tcsh",
    "exec",
    "eval",
    "command",
    "builtin",
    "flock",
    "unshare",
    "nsenter",
    "setpriv",
    "capsh",
    "prlimit",
    "taskset",
    "chrt",
    "numactl",
    "script",
    "expect",
    "parallel",
    "ssh",
    "scp",
    "sed",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "perl",
    "python",
    "python2",
    "python3",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "bun",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "wish",
    "Rscript",
    "make",
    "cmake",
    "ninja",
    "npm",
    "npx",
    "cargo",
    "pip",
    "pip3",
    "vim",
    "vi",
    "nvim",
    "nano",
    "emacs",
    "ed",
    "ex",
    "less",
    "more",
    "man",
    "at",
    "batch",
    "crontab",
    "systemd-run",
    "docker",
    "podman",
    "bwrap",
    "firejail",
    "socat",
    "nc",
    "ncat",
    "netcat",
    "curl",
    "wget",
    "dd",
    "install",
    "kill",
    "pkill",
    "killall",
    "xdg-open",
    "open",
    "osascript",
    "sqlite3",
    "psql",
    "mysql",
];

/// Why a program can never be allowed, if it cannot.
pub(crate) fn never_allowed(program: &str) -> Option<String> {
    let bare = program.rsplit('/').next().unwrap_or(program);
    let versioned = bare.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if NEVER.contains(&bare) || NEVER.contains(&versioned) {
        return Some(format!(
            "`{program}` runs other programs or code it is given, so allowing it would allow \
             everything; it cannot be on the shell's allow-list"
        ));
    }
    if program.contains('/') {
        return Some(format!(
            "`{program}`: allow programs by bare name (they are looked up on PATH)"
        ));
    }
    None
}

/// A refused argument, in words for the model.
pub(crate) type Refusal = String;

/// Checks a program's arguments. `root` is the sandbox root (absolute paths inside it are
/// fine).
pub(crate) fn check(program: &str, args: &[String], root: &Path) -> Result<(), Refusal> {
    for arg in args {
        if arg.contains('\0') {
            return Err("an argument contains a NUL byte".into());
        }
    }
    match program {
        "find" => return check_find(args, root),
        "git" => return check_git(args, root),
        // Old-style `tar xIf prog archive` bundles options without a dash.
        "tar" if args.first().is_some_and(|a| !a.starts_with('-')) => {
            return Err(
                "give tar's options with dashes (`-xf archive.tar`), not bundled as the first \
                 word"
                    .into(),
            );
        }
        _ => {}
    }
    match policy(program) {
        Some(policy) => check_with(program, &policy, args, root),
        None => check_unknown(program, args, root),
    }
}

fn check_unknown(program: &str, args: &[String], root: &Path) -> Result<(), Refusal> {
    for arg in args {
        if arg.starts_with('-') && arg != "-" {
            return Err(format!(
                "`{program}` has no argument policy, so it may only be given file paths inside \
                 the folder, not options like `{arg}`"
            ));
        }
        if arg.starts_with(['@', '+', '~']) || arg.contains([':', '=']) {
            return Err(format!(
                "`{program}` has no argument policy, so it may only be given plain file paths; \
                 `{arg}` could be read as an option file, a remote location or a setting"
            ));
        }
        check_path(arg, root)?;
    }
    Ok(())
}

/// Whether a path names a `.git` folder (any case) or something in it.
pub(crate) fn names_git(arg: &str) -> bool {
    Path::new(arg)
        .components()
        .any(|c| c.as_os_str().to_string_lossy().eq_ignore_ascii_case(".git"))
}

/// A path argument: inside the root, no `..`, not under `/proc`, `/dev` or `/sys`.
pub(crate) fn check_path(arg: &str, root: &Path) -> Result<(), Refusal> {
    let path = Path::new(arg);
    if path.is_absolute() && !path.starts_with(root) {
        return Err(format!(
            "`{arg}` is outside the allowed folder; use a path relative to it"
        ));
    }
    for system in ["/proc", "/dev", "/sys"] {
        if path.starts_with(system) {
            return Err(format!("`{arg}`: system paths are not allowed"));
        }
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "`{arg}` contains `..`; paths may not leave the allowed folder"
        ));
    }
    if names_git(arg) {
        return Err(format!(
            "`{arg}` names a `.git` folder; programs may not be pointed into one (its config \
             and hooks run code)"
        ));
    }
    Ok(())
}

fn check_value(kind: Val, option: &str, value: &str, root: &Path) -> Result<(), Refusal> {
    match kind {
        Flag => Ok(()),
        Text => Ok(()),
        P => check_path(value, root),
        Archive if value.contains(':') => Err(format!(
            "`{option} {value}`: an archive name with `:` names a remote archive; use a local path"
        )),
        Archive => check_path(value, root),
        Number => {
            let digits = value.trim_start_matches(['+', '-']);
            let digits = digits.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!("`{option}` takes a number, not `{value}`"))
            }
        }
    }
}

fn find_opt(options: &[Opt], name: &str) -> Option<Val> {
    options
        .iter()
        .find(|Opt(names, _)| names.contains(&name))
        .map(|Opt(_, kind)| *kind)
}

fn allowed_list(options: &[Opt]) -> String {
    let mut names: Vec<&str> = options
        .iter()
        .flat_map(|Opt(n, _)| n.iter().copied())
        .collect();
    names.sort_unstable();
    names.join(" ")
}

/// Splits arguments into options (checked against `options`) and operands.
fn parse<'a>(
    program: &str,
    options: &[Opt],
    digit_options: bool,
    args: &'a [String],
    root: &Path,
) -> Result<(Vec<&'a str>, Vec<&'a str>), Refusal> {
    let refuse = |arg: &str| {
        format!(
            "`{program}` does not allow the option `{arg}`; allowed: {}",
            allowed_list(options)
        )
    };
    let mut given = Vec::new();
    let mut operands = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let arg = arg.as_str();
        if arg == "--" {
            operands.extend(rest.by_ref().map(String::as_str));
            break;
        }
        if arg == "-" || !arg.starts_with('-') {
            operands.push(arg);
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (format!("--{name}"), Some(value)),
                None => (arg.to_owned(), None),
            };
            let kind = find_opt(options, &name).ok_or_else(|| refuse(&name))?;
            if kind != Flag {
                let value = match inline {
                    Some(value) => value,
                    None => rest
                        .next()
                        .ok_or_else(|| format!("`{name}` needs a value"))?
                        .as_str(),
                };
                check_value(kind, &name, value, root)?;
            } else if inline.is_some() {
                return Err(format!("`{name}` takes no value"));
            }
            given.push(arg);
            continue;
        }
        let cluster = &arg[1..];
        if digit_options && cluster.chars().all(|c| c.is_ascii_digit()) {
            given.push(arg);
            continue;
        }
        for (i, c) in cluster.char_indices() {
            let name = format!("-{c}");
            let kind = find_opt(options, &name).ok_or_else(|| refuse(&name))?;
            if kind == Flag {
                continue;
            }
            let attached = &cluster[i + c.len_utf8()..];
            let value = if attached.is_empty() {
                rest.next()
                    .ok_or_else(|| format!("`{name}` needs a value"))?
                    .as_str()
            } else {
                attached
            };
            check_value(kind, &name, value, root)?;
            break;
        }
        given.push(arg);
    }
    Ok((given, operands))
}

fn check_with(program: &str, policy: &Policy, args: &[String], root: &Path) -> Result<(), Refusal> {
    let (given, operands) = parse(program, policy.options, policy.digit_options, args, root)?;
    let paths: &[&str] = match policy.operands {
        Operands::Text => return Ok(()),
        Operands::Format => {
            return match operands.iter().find(|o| !o.starts_with('+')) {
                Some(other) => Err(format!(
                    "`{program}` takes only a `+FORMAT` operand here, not `{other}`"
                )),
                None => Ok(()),
            };
        }
        Operands::Paths => &operands,
        Operands::OnePath => {
            if operands.len() > 1 {
                return Err(format!(
                    "`{program}` takes at most one file here (a second one would be written)"
                ));
            }
            &operands
        }
        Operands::PatternThenPaths => {
            let pattern_given = given.iter().any(|g| {
                g.starts_with("--regexp") || g.starts_with("--file") || {
                    let cluster = g.strip_prefix('-').unwrap_or("");
                    !g.starts_with("--") && (cluster.contains('e') || cluster.contains('f'))
                }
            });
            if pattern_given || operands.is_empty() {
                &operands
            } else {
                &operands[1..]
            }
        }
    };
    for path in paths {
        check_path(path, root)?;
    }
    Ok(())
}

/// Programs a program may run besides itself (under Landlock nothing else can run).
pub(crate) fn helpers(program: &str) -> &'static [&'static str] {
    match program {
        "tar" => &["gzip", "bzip2", "xz"],
        _ => &[],
    }
}

/// The arguments tar actually gets: archives are always local files (`host:path` would be
/// reached through a remote shell), nothing is extracted into `.git` (hooks and config
/// would run code in git), and ownership and modes come from the user, not the archive.
pub(crate) fn tar_arguments(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [
        "--force-local",
        "--no-same-owner",
        "--no-same-permissions",
        "--exclude=.git",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    out.extend(args.iter().cloned());
    out
}
