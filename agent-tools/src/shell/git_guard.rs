//! Puts the root repository's `.git/config` and `.git/hooks` back as they were before a
//! program ran.
//!
//! A program allowed to write in the root (`tar -x`, `cp`) could reach `.git` through a link
//! or an archive member, and a `core.fsmonitor`, a filter driver or a hook written there
//! would run code at a person's next `git status`, outside any sandbox. Landlock cannot
//! exclude one folder from the root it allows, so the shell checks afterwards: anything
//! changed in those places is undone, and the model is told.
//!
//! Only the root's own repository is guarded; the argument policies refuse any path that
//! names `.git`, and the file tools refuse writes into git folders.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The largest file kept for restoring; larger hooks are unusual enough to be removed.
const MAX_KEPT: u64 = 1 << 20;

/// What `.git/config` and `.git/hooks/*` held.
#[derive(Debug)]
pub(crate) struct Snapshot {
    git: PathBuf,
    config: Option<Vec<u8>>,
    hooks: BTreeMap<OsString, Vec<u8>>,
    restored: bool,
}

/// The content of a regular file (not through a link), if it is one and not too large.
fn regular(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_KEPT {
        return None;
    }
    std::fs::read(path).ok()
}

fn hooks_in(git: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let hooks = git.join("hooks");
    let is_dir = std::fs::symlink_metadata(&hooks).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return BTreeMap::new();
    }
    std::fs::read_dir(&hooks)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| {
            let content = regular(&entry.path()).unwrap_or_default();
            (entry.file_name(), content)
        })
        .collect()
}

impl Snapshot {
    /// Notes the state, when the root holds a `.git` folder (not a link).
    pub(crate) fn take(root: &Path) -> Option<Snapshot> {
        let git = root.join(".git");
        if !std::fs::symlink_metadata(&git).is_ok_and(|m| m.is_dir()) {
            return None;
        }
        Some(Snapshot {
            config: regular(&git.join("config")),
            hooks: hooks_in(&git),
            git,
            restored: false,
        })
    }

    /// Undoes any change; says what was undone, if anything.
    pub(crate) fn restore(mut self) -> Option<String> {
        self.undo()
    }

    fn undo(&mut self) -> Option<String> {
        self.restored = true;
        let mut undone = Vec::new();
        if !std::fs::symlink_metadata(&self.git).is_ok_and(|m| m.is_dir()) {
            // `.git` itself was replaced: put the folder back with what was kept.
            let _ = std::fs::remove_file(&self.git);
            let _ = std::fs::create_dir(&self.git);
            undone.push(".git".to_owned());
        }
        let config = self.git.join("config");
        if regular(&config) != self.config {
            replace(&config, self.config.as_deref());
            undone.push(".git/config".to_owned());
        }
        let now = hooks_in(&self.git);
        if now != self.hooks {
            let hooks = self.git.join("hooks");
            for name in now.keys() {
                if !self.hooks.contains_key(name) {
                    replace(&hooks.join(name), None);
                }
            }
            for (name, content) in &self.hooks {
                if now.get(name) != Some(content) {
                    replace(&hooks.join(name), Some(content));
                }
            }
            undone.push(".git/hooks".to_owned());
        }
        (!undone.is_empty()).then(|| {
            format!(
                "[the program changed {}; the change was undone: programs may not change a \
                 repository's config or hooks]",
                undone.join(" and ")
            )
        })
    }
}

/// Replaces whatever is at `path` (a file, a link, a folder) by `content`, or removes it.
fn replace(path: &Path, content: Option<&[u8]>) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
    if let Some(content) = content {
        let _ = std::fs::write(path, content);
    }
}

impl Drop for Snapshot {
    /// A call that ends early (timeout, cancellation, an error) is undone too.
    fn drop(&mut self) {
        if !self.restored {
            let _ = self.undo();
        }
    }
}
