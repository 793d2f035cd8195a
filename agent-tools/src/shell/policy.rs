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

use Val::{Archive, Flag, Number, Path as P, Text};

const LS: &[Opt] = &[
    Opt(
        &[
            "-a",
            "-A",
            "-l",
            "-h",
            "-R",
            "-S",
            "-t",
            "-r",
            "-1",
            "-d",
            "-F",
            "-i",
            "-s",
            "-X",
            "-U",
            "-p",
            "-g",
            "-o",
            "-n",
            "--all",
            "--almost-all",
            "--human-readable",
            "--recursive",
            "--reverse",
            "--classify",
            "--directory",
            "--size",
            "--inode",
            "--numeric-uid-gid",
            "--group-directories-first",
            "--full-time",
        ],
        Flag,
    ),
    Opt(
        &["--sort", "--color", "--time-style", "--format", "--time"],
        Text,
    ),
];
const CAT: &[Opt] = &[Opt(
    &[
        "-n",
        "-b",
        "-s",
        "-A",
        "-E",
        "-T",
        "-v",
        "-e",
        "-t",
        "--number",
        "--number-nonblank",
        "--squeeze-blank",
        "--show-all",
        "--show-ends",
        "--show-tabs",
        "--show-nonprinting",
    ],
    Flag,
)];
const HEAD_TAIL: &[Opt] = &[
    Opt(
        &["-q", "-v", "--quiet", "--silent", "--verbose", "-z"],
        Flag,
    ),
    Opt(&["-n", "-c", "--lines", "--bytes"], Number),
];
const WC: &[Opt] = &[Opt(
    &[
        "-c",
        "-m",
        "-l",
        "-L",
        "-w",
        "--bytes",
        "--chars",
        "--lines",
        "--max-line-length",
        "--words",
    ],
    Flag,
)];
const GREP: &[Opt] = &[
    Opt(
        &[
            "-i",
            "-v",
            "-n",
            "-c",
            "-l",
            "-L",
            "-r",
            "-w",
            "-x",
            "-E",
            "-F",
            "-G",
            "-P",
            "-o",
            "-q",
            "-s",
            "-h",
            "-H",
            "-I",
            "-y",
            "--ignore-case",
            "--invert-match",
            "--line-number",
            "--count",
            "--files-with-matches",
            "--files-without-match",
            "--recursive",
            "--word-regexp",
            "--line-regexp",
            "--extended-regexp",
            "--fixed-strings",
            "--basic-regexp",
            "--perl-regexp",
            "--only-matching",
            "--quiet",
            "--no-messages",
            "--no-filename",
            "--with-filename",
        ],
        Flag,
    ),
    Opt(
        &[
            "--include",
            "--exclude",
            "--exclude-dir",
            "--color",
            "--colour",
        ],
        Text,
    ),
    Opt(
        &[
            "-A",
            "-B",
            "-C",
            "-m",
            "--after-context",
            "--before-context",
            "--context",
            "--max-count",
        ],
        Number,
    ),
    Opt(&["-e", "--regexp"], Text),
    Opt(&["-f", "--file"], P),
];
const SORT: &[Opt] = &[
    Opt(
        &[
            "-r",
            "-n",
            "-u",
            "-f",
            "-b",
            "-h",
            "-V",
            "-M",
            "-g",
            "-s",
            "-d",
            "-i",
            "-c",
            "-C",
            "--reverse",
            "--numeric-sort",
            "--unique",
            "--ignore-case",
            "--ignore-leading-blanks",
            "--human-numeric-sort",
            "--version-sort",
            "--month-sort",
            "--general-numeric-sort",
            "--stable",
            "--dictionary-order",
            "--check",
        ],
        Flag,
    ),
    Opt(&["-k", "-t", "--key", "--field-separator"], Text),
];
const UNIQ: &[Opt] = &[
    Opt(
        &[
            "-c",
            "-d",
            "-u",
            "-i",
            "-D",
            "--count",
            "--repeated",
            "--unique",
            "--ignore-case",
        ],
        Flag,
    ),
    Opt(
        &[
            "-f",
            "-s",
            "-w",
            "--skip-fields",
            "--skip-chars",
            "--check-chars",
        ],
        Number,
    ),
];
const CUT: &[Opt] = &[
    Opt(&["-s", "--complement", "--only-delimited"], Flag),
    Opt(
        &[
            "-d",
            "-f",
            "-c",
            "-b",
            "--delimiter",
            "--fields",
            "--characters",
            "--bytes",
        ],
        Text,
    ),
];
const DIFF: &[Opt] = &[
    Opt(
        &[
            "-u",
            "-r",
            "-q",
            "-N",
            "-i",
            "-w",
            "-b",
            "-B",
            "-y",
            "-a",
            "--brief",
            "--recursive",
            "--new-file",
            "--ignore-case",
            "--ignore-all-space",
            "--ignore-space-change",
            "--ignore-blank-lines",
            "--strip-trailing-cr",
            "--side-by-side",
            "--text",
        ],
        Flag,
    ),
    Opt(&["-U", "--unified"], Number),
    Opt(&["--color"], Text),
];
const ECHO: &[Opt] = &[Opt(&["-n", "-e", "-E"], Flag)];
const STAT: &[Opt] = &[
    Opt(&["-t", "--terse"], Flag),
    Opt(&["-c", "--format", "--printf"], Text),
];
const DU: &[Opt] = &[
    Opt(
        &[
            "-s",
            "-h",
            "-a",
            "-c",
            "-b",
            "-k",
            "-m",
            "-x",
            "--summarize",
            "--human-readable",
            "--all",
            "--total",
            "--apparent-size",
        ],
        Flag,
    ),
    Opt(&["-d", "--max-depth"], Number),
];
const FILE: &[Opt] = &[Opt(
    &[
        "-b",
        "-i",
        "-z",
        "--brief",
        "--mime",
        "--mime-type",
        "--mime-encoding",
    ],
    Flag,
)];
const TREE: &[Opt] = &[
    Opt(
        &[
            "-a",
            "-d",
            "-f",
            "-F",
            "-s",
            "-h",
            "--noreport",
            "--dirsfirst",
        ],
        Flag,
    ),
    Opt(&["-L"], Number),
    Opt(&["-I", "-P"], Text),
];
const PWD: &[Opt] = &[Opt(&["-L", "-P"], Flag)];
const DATE: &[Opt] = &[
    Opt(&["-u", "-R", "--utc", "--rfc-email"], Flag),
    Opt(&["-d", "--date", "-I", "--iso-8601"], Text),
];
const TAR: &[Opt] = &[
    Opt(
        &[
            "-t",
            "-x",
            "-c",
            "-v",
            "-z",
            "-j",
            "-J",
            "-k",
            "--list",
            "--extract",
            "--get",
            "--create",
            "--verbose",
            "--gzip",
            "--bzip2",
            "--xz",
            "--keep-old-files",
            "--no-same-owner",
            "--no-same-permissions",
            "--wildcards",
        ],
        Flag,
    ),
    Opt(&["-f", "--file"], Archive),
    Opt(&["-C", "--directory"], P),
    Opt(&["--exclude"], Text),
    Opt(&["--strip-components"], Number),
];

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

// ------------------------------------------------------------------------------- find

/// `find` tests and actions that only read, with the number of values each takes (the value
/// is a path for `-newer`).
const FIND_PREDICATES: &[(&str, usize)] = &[
    ("-name", 1),
    ("-iname", 1),
    ("-path", 1),
    ("-ipath", 1),
    ("-wholename", 1),
    ("-regex", 1),
    ("-iregex", 1),
    ("-type", 1),
    ("-size", 1),
    ("-mtime", 1),
    ("-mmin", 1),
    ("-atime", 1),
    ("-ctime", 1),
    ("-newer", 1),
    ("-perm", 1),
    ("-maxdepth", 1),
    ("-mindepth", 1),
    ("-empty", 0),
    ("-print", 0),
    ("-print0", 0),
    ("-prune", 0),
    ("-not", 0),
    ("!", 0),
    ("(", 0),
    (")", 0),
    ("-o", 0),
    ("-or", 0),
    ("-a", 0),
    ("-and", 0),
    ("-true", 0),
    ("-false", 0),
    ("-readable", 0),
    ("-executable", 0),
    ("-depth", 0),
    ("-xdev", 0),
    ("-mount", 0),
    ("-noleaf", 0),
];

fn check_find(args: &[String], root: &Path) -> Result<(), Refusal> {
    let mut rest = args.iter();
    let mut in_expression = false;
    while let Some(arg) = rest.next() {
        let arg = arg.as_str();
        let starts_expression = arg.starts_with('-') || matches!(arg, "!" | "(" | ")");
        if !in_expression && !starts_expression {
            check_path(arg, root)?; // a starting point
            continue;
        }
        in_expression = true;
        if matches!(arg, "-H" | "-L" | "-P") {
            return Err(format!("`find {arg}` (following links) is not allowed"));
        }
        let Some((_, values)) = FIND_PREDICATES.iter().find(|(name, _)| *name == arg) else {
            let allowed: Vec<&str> = FIND_PREDICATES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "`find` does not allow `{arg}` (tests and actions that run programs, delete or \
                 write files are refused); allowed: {}",
                allowed.join(" ")
            ));
        };
        for _ in 0..*values {
            let value = rest
                .next()
                .ok_or_else(|| format!("`{arg}` needs a value"))?;
            if arg == "-newer" {
                check_path(value, root)?;
            }
        }
    }
    Ok(())
}

// -------------------------------------------------------------------------------- git

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

fn check_git(args: &[String], root: &Path) -> Result<(), Refusal> {
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
