//! Opening paths beneath the root without ever leaving it.
//!
//! Every path is opened relative to a directory handle taken on the root when the tools were
//! built, one component at a time, with `O_NOFOLLOW` at every step: a symbolic link anywhere
//! in the path is refused, never followed, so a folder swapped for a link between a check
//! and a use cannot lead outside (there is no check-then-open: the handle that was checked
//! is the one that is used). Files are opened non-blocking and checked on the opened handle
//! (a FIFO or device swapped in never blocks a thread), and a file with more than one hard
//! link is refused: a link inside the root can name any file the user owns.
//!
//! This module never resolves `..`: the caller's path parser refuses it first.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use agent_core::ToolError;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// What a name inside a folder is, without following a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Folder,
    Link,
    Other,
}

pub(crate) fn kind_of(stat: &FileStat) -> Kind {
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFREG {
        Kind::File
    } else if kind == SFlag::S_IFDIR {
        Kind::Folder
    } else if kind == SFlag::S_IFLNK {
        Kind::Link
    } else {
        Kind::Other
    }
}

/// The kind of `name` in `dir`, not following a link; `None` when it does not exist.
pub(crate) fn stat_at(dir: &OwnedFd, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NONBLOCK);

/// A fresh handle on the root folder itself.
pub(crate) fn reopen(root: &OwnedFd) -> Result<OwnedFd, ToolError> {
    openat(root, ".", DIR_FLAGS, Mode::empty())
        .map_err(|e| ToolError::failed(format!("cannot open the allowed folder: {e}")))
}

/// Opens the folder named by `parts` beneath `root`, refusing links at every step.
/// `shown` is the model's path, for messages.
pub(crate) fn open_folder(
    root: &OwnedFd,
    parts: &[OsString],
    shown: &str,
) -> Result<OwnedFd, ToolError> {
    walk(root, parts, shown, false)
}

/// [`open_folder`], refusing to pass through a git folder (one that holds `HEAD`, `objects`
/// and `refs`, whatever its name: a bare repository, a submodule's or worktree's git folder):
/// its config and hooks run code at a person's next git command.
pub(crate) fn open_folder_for_writing(
    root: &OwnedFd,
    parts: &[OsString],
    shown: &str,
) -> Result<OwnedFd, ToolError> {
    walk(root, parts, shown, true)
}

fn walk(
    root: &OwnedFd,
    parts: &[OsString],
    shown: &str,
    refuse_git: bool,
) -> Result<OwnedFd, ToolError> {
    let mut current = reopen(root)?;
    for part in parts {
        if refuse_git && is_git_folder(&current) {
            return Err(ToolError::permission_denied(format!(
                "`{shown}` is inside a git folder; writing there could make git run code, so \
                 it is refused"
            )));
        }
        current = match openat(&current, part.as_os_str(), DIR_FLAGS, Mode::empty()) {
            Ok(next) => next,
            Err(errno) => return Err(explain(&current, part, errno, shown)),
        };
    }
    if refuse_git && is_git_folder(&current) {
        return Err(ToolError::permission_denied(format!(
            "`{shown}` is inside a git folder; writing there could make git run code, so it \
             is refused"
        )));
    }
    Ok(current)
}

/// Whether a folder is a git folder: `HEAD` beside `objects/` and `refs/`.
fn is_git_folder(folder: &OwnedFd) -> bool {
    let kind = |name: &str| {
        stat_at(folder, OsStr::new(name))
            .ok()
            .flatten()
            .map(|s| kind_of(&s))
    };
    kind("HEAD") == Some(Kind::File)
        && kind("objects") == Some(Kind::Folder)
        && kind("refs") == Some(Kind::Folder)
}

/// Why opening `name` in `dir` failed, in words for the model.
pub(crate) fn explain(dir: &OwnedFd, name: &OsStr, errno: Errno, shown: &str) -> ToolError {
    let name_shown = escape(name);
    match stat_at(dir, name).ok().flatten().map(|s| kind_of(&s)) {
        Some(Kind::Link) => ToolError::permission_denied(format!(
            "`{shown}`: `{name_shown}` is a symbolic link; links are never followed"
        )),
        Some(Kind::File) if errno == Errno::ENOTDIR => ToolError::invalid_arguments(format!(
            "`{shown}`: `{name_shown}` is a file, not a folder"
        )),
        Some(Kind::Other) => ToolError::permission_denied(format!(
            "`{shown}`: `{name_shown}` is not a regular file or folder (device, pipe or socket)"
        )),
        None => ToolError::invalid_arguments(format!(
            "`{shown}` does not exist; use list_files to see what is there"
        )),
        _ => ToolError::failed(format!("cannot open `{shown}`: {errno}")),
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
    /// Write, creating the file when it does not exist.
    Create,
}

/// Opens the regular file `name` in `dir` and checks the opened handle: a regular file with
/// one link. Never follows a link, never blocks on a FIFO, never opens a device.
pub(crate) fn open_file(
    dir: &OwnedFd,
    name: &OsStr,
    access: Access,
    shown: &str,
) -> Result<(File, FileStat), ToolError> {
    // A first look without opening: opening a device can have effects of its own.
    match stat_at(dir, name) {
        Ok(Some(stat)) => check_regular(&stat, shown)?,
        Ok(None) if access == Access::Create => {}
        Ok(None) => {
            return Err(ToolError::invalid_arguments(format!(
                "`{shown}` does not exist; use list_files to see what is there"
            )));
        }
        Err(e) => return Err(ToolError::failed(format!("cannot open `{shown}`: {e}"))),
    }
    let base = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let flags = match access {
        Access::Read => base | OFlag::O_RDONLY,
        Access::ReadWrite => base | OFlag::O_RDWR,
        Access::Create => base | OFlag::O_WRONLY | OFlag::O_CREAT,
    };
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o644))
        .map_err(|errno| explain(dir, name, errno, shown))?;
    // The handle is what counts: whatever the name pointed at a moment ago.
    let stat = fstat(&fd).map_err(|e| ToolError::failed(format!("cannot open `{shown}`: {e}")))?;
    check_regular(&stat, shown)?;
    Ok((File::from(fd), stat))
}

fn check_regular(stat: &FileStat, shown: &str) -> Result<(), ToolError> {
    match kind_of(stat) {
        Kind::File => {}
        Kind::Folder => {
            return Err(ToolError::invalid_arguments(format!(
                "`{shown}` is a folder; use list_files"
            )));
        }
        Kind::Link => {
            return Err(ToolError::permission_denied(format!(
                "`{shown}` is a symbolic link; links are never followed"
            )));
        }
        Kind::Other => {
            return Err(ToolError::permission_denied(format!(
                "`{shown}` is not a regular file (device, pipe or socket)"
            )));
        }
    }
    if stat.st_nlink > 1 {
        return Err(ToolError::permission_denied(format!(
            "`{shown}` has {} hard links; a file with more than one link may be a file \
             outside the allowed folder, so it is neither read nor written",
            stat.st_nlink
        )));
    }
    Ok(())
}

/// A name as the model may see it: control characters (newlines, escapes) escaped, so a
/// file name can never forge lines of a listing or a terminal sequence.
pub(crate) fn escape(name: &OsStr) -> String {
    let lossy = String::from_utf8_lossy(name.as_bytes());
    if !lossy.chars().any(char::is_control) {
        return lossy.into_owned();
    }
    lossy
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(escape(OsStr::new("a\nb")), "a\\nb");
        assert_eq!(escape(OsStr::new("x\u{1b}[31m")), "x\\u{1b}[31m");
        assert_eq!(escape(OsStr::new("plain name.txt")), "plain name.txt");
    }
}
