//! `find`'s grammar: starting points, then read-only tests and actions.

use std::path::Path;

use super::{Refusal, check_path};

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

pub(super) fn check_find(args: &[String], root: &Path) -> Result<(), Refusal> {
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
