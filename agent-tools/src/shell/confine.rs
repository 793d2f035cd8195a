//! Confinement of the programs the shell runs, beyond the argument checks.
//!
//! Two layers, each used when the machine offers it, and reported by [`confinement`]:
//!
//! - **Landlock** (Linux ≥ 5.13): the program may write only inside the root and a private
//!   temporary folder, read only there, in the system folders programs need (`/usr`, `/bin`,
//!   `/sbin`, `/lib*`) and in a few harmless files of `/etc`, and open nothing under `/proc`,
//!   `/sys`, `/home` or anywhere else. It may run only itself, its script interpreter, the
//!   helpers its policy names and the files of library folders (the dynamic loader,
//!   `git-core`): never a file in the root, never another program on PATH, so a missed
//!   option that runs a program fails. No device nodes, FIFOs or sockets can be made. With
//!   Linux ≥ 6.7 it cannot open TCP connections, and with ≥ 6.12 it cannot signal processes
//!   outside its sandbox. The rules are applied to a short-lived thread that
//!   only starts the program (Landlock restricts the calling thread and what it starts), so
//!   the agent's own process is never restricted. Even an option the argument policy missed
//!   cannot reach outside.
//! - **A PID namespace** (util-linux `unshare`, when the kernel and the user's rights allow
//!   it; as root always): the program is process 1 of a namespace of its own, so when the call
//!   ends, times out or is cancelled, the kernel ends every process it started, including
//!   those that left its process group with `setsid`. The namespace also has no network. A
//!   user namespace is used where it can be, even for root, so root's capabilities (setting
//!   the clock, making devices) do not reach the machine.
//!   Without it, the process group and every live descendant are killed; a process that
//!   detached itself and whose parent already exited is then out of reach.
//!
//! On other systems neither layer exists: the argument policies still apply.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How far the shell's programs are confined on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Confinement {
    /// Landlock restricts what the programs can open (`Full` on Linux ≥ 6.12, `Partial` on
    /// older kernels with Landlock, `None` without it).
    pub filesystem: Level,
    /// Programs run in their own PID namespace: every process they start ends with the call.
    pub process_tree: bool,
    /// Programs cannot open network connections (a network namespace, or Landlock's TCP
    /// rules).
    pub network: bool,
}

/// How much of a confinement layer is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Everything this library asks for.
    Full,
    /// Part of it: an older kernel lacks some rules (say, TCP or signal scoping).
    Partial,
    /// Nothing: the kernel lacks the feature, or this is not Linux.
    None,
}

/// What this machine offers, probed once per process (a Landlock ruleset on a throwaway
/// thread, and one `unshare` run).
pub fn confinement() -> &'static Confinement {
    static PROBED: OnceLock<Confinement> = OnceLock::new();
    PROBED.get_or_init(probe)
}

/// The `unshare` arguments that work here, if any.
pub(crate) fn namespace_prefix() -> Option<&'static [&'static str]> {
    confinement();
    NAMESPACE.get().copied().flatten()
}

static NAMESPACE: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();

const AS_USER: &[&str] = &[
    "--user",
    "--map-current-user",
    "--pid",
    "--net",
    "--fork",
    "--kill-child",
];
const AS_ROOT: &[&str] = &["--pid", "--net", "--fork", "--kill-child"];

#[cfg(target_os = "linux")]
fn probe() -> Confinement {
    let scratch = std::env::temp_dir();
    let (level, network) = std::thread::scope(|s| {
        s.spawn(|| restrict(&scratch, &scratch, &[]))
            .join()
            .unwrap_or((Level::None, false))
    });
    let system_path = "/usr/local/bin:/usr/bin:/bin";
    let runs: Vec<PathBuf> = ["unshare", "true"]
        .iter()
        .filter_map(|p| find_program(p, system_path))
        .collect();
    // The namespace is probed under the same rules the programs will run under. A user
    // namespace is preferred even for root: inside it, root's capabilities do not reach the
    // machine (no clock setting, no device nodes, no mounts).
    let namespace = [AS_USER, AS_ROOT].into_iter().find(|flags| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = restrict(&scratch, &scratch, &runs);
                std::process::Command::new("unshare")
                    .args(*flags)
                    .args(["--", "true"])
                    .env_clear()
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })
            .join()
            .unwrap_or(false)
        })
    });
    let _ = NAMESPACE.set(namespace);
    Confinement {
        filesystem: level,
        process_tree: namespace.is_some(),
        network: network || namespace.is_some(),
    }
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Confinement {
    let _ = NAMESPACE.set(None);
    Confinement {
        filesystem: Level::None,
        process_tree: false,
        network: false,
    }
}

/// System folders programs may read (not run from: see [`LIBRARY_DIRS`]).
const SYSTEM_READ: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Library folders: their files may be run, since the dynamic loader and programs' own
/// helpers (`git-core`) live there. They are not on any PATH, and absolute paths are refused
/// as arguments, so a model cannot name one to run.
const LIBRARY_DIRS: &[&str] = &[
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local/lib",
    "/usr/local/libexec",
    "/nix/store",
];

/// The files of `/etc` programs commonly need; the rest of `/etc` (shadow passwords, host
/// keys, TLS private keys, credentials of other services) is not readable.
const ETC_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/magic",
    "/etc/magic.mime",
    "/etc/mime.types",
    "/etc/locale.alias",
    "/etc/default/locale",
];

/// Restricts the calling thread (and what it starts from now on): the root and the private
/// folder may be read and written but nothing in them run and no device made; the system
/// folders and a few files of `/etc` may be read; only `runs` (the program, its interpreter,
/// its helpers) and files in the library folders may be run; nothing else may be opened.
/// Returns the level reached and whether TCP is cut off.
#[cfg(target_os = "linux")]
pub(crate) fn restrict(root: &Path, private: &Path, runs: &[PathBuf]) -> (Level, bool) {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    };
    let abi = ABI::V6;
    let build = || -> Result<(Level, bool), landlock::RulesetError> {
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))?
            .handle_access(AccessNet::from_all(abi))?
            .scope(Scope::from_all(abi))?
            .create()?;
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        for dir in SYSTEM_READ {
            if let Ok(fd) = PathFd::new(dir) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, read))?;
            }
        }
        for dir in LIBRARY_DIRS {
            if let Ok(fd) = PathFd::new(dir) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, read | AccessFs::Execute))?;
            }
        }
        for file in ETC_FILES {
            if let Ok(fd) = PathFd::new(file) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::ReadFile))?;
            }
        }
        // Work folders: everything but running files and making device nodes, FIFOs or
        // sockets (a model can write a script there; it can never run it).
        let work = AccessFs::from_all(abi)
            & !(AccessFs::Execute
                | AccessFs::MakeChar
                | AccessFs::MakeBlock
                | AccessFs::MakeFifo
                | AccessFs::MakeSock);
        for dir in [root, private] {
            if let Ok(fd) = PathFd::new(dir) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, work))?;
            }
        }
        for file in runs {
            if let Ok(fd) = PathFd::new(file) {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, AccessFs::ReadFile | AccessFs::Execute))?;
            }
        }
        for (device, access) in [
            (
                "/dev/null",
                AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
            ),
            ("/dev/zero", AccessFs::ReadFile.into()),
            ("/dev/urandom", AccessFs::ReadFile.into()),
            ("/dev/random", AccessFs::ReadFile.into()),
        ] {
            if let Ok(fd) = PathFd::new(device) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
            }
        }
        let status = ruleset.restrict_self()?;
        let level = match status.ruleset {
            RulesetStatus::FullyEnforced => Level::Full,
            RulesetStatus::PartiallyEnforced => Level::Partial,
            _ => Level::None,
        };
        // TCP rules arrived with ABI 4; a partially enforced ruleset may lack them.
        let tcp = level == Level::Full;
        Ok((level, tcp))
    };
    build().unwrap_or((Level::None, false))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn restrict(_root: &Path, _private: &Path, _runs: &[PathBuf]) -> (Level, bool) {
    (Level::None, false)
}

/// The interpreter a script names on its `#!` line, if it is a script.
pub(crate) fn interpreter(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    let path = text.split_whitespace().next()?;
    Some(PathBuf::from(path))
}

/// Finds a program on `path` (a PATH value), as the child would.
pub(crate) fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Every live descendant of `pid` (Linux; empty elsewhere), read from `/proc`, to be killed
/// along with the process group when no PID namespace holds them.
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields follow the last `)`.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A private, empty folder for one call (HOME and TMPDIR), removed when dropped.
#[derive(Debug)]
pub(crate) struct PrivateDir(PathBuf);

impl PrivateDir {
    pub(crate) fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "agent-shell-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
