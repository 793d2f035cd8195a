//! File tools confined to one directory: `read_file`, `list_files`, `search_files`
//! (read-only) and `write_file`, `edit_file` (side-effecting).
//!
//! Every path a model gives is parsed (no `..`, no absolute path outside the root, no NUL)
//! and then opened relative to a handle on the root, one component at a time, refusing a
//! symbolic link at every step: nothing is checked by name and opened later,
//! so a folder swapped for a link during a call never leads outside. Only regular files with
//! a single hard link are read or written (no devices, FIFOs, sockets, or links to files
//! elsewhere), within size caps; writes into `.git` are refused unless allowed. Listings show
//! control characters in names escaped. `search_files` bounds the files it visits, the bytes
//! it returns, the length of each line, and stops when its call is cancelled or times out.
//! File I/O runs on tokio's blocking pool, so a slow disk never stalls the run's task.

mod beneath;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::{Tool, ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use beneath::{Access, Kind, escape, kind_of, open_file, open_folder, stat_at};
use schemars::JsonSchema;
use serde::Deserialize;

/// The shared configuration of the file tools.
#[derive(Clone, Debug)]
pub struct FileTools {
    root: Arc<PathBuf>,
    handle: Arc<OwnedFd>,
    max_read_bytes: u64,
    max_write_bytes: u64,
    max_search_bytes: usize,
    search_time: Duration,
    git_writes: bool,
}

/// A path given by a model, parsed: the folders on the way and the last name.
struct Parsed {
    folders: Vec<OsString>,
    name: Option<OsString>,
    shown: String,
}

impl Parsed {
    fn all(&self) -> Vec<OsString> {
        let mut all = self.folders.clone();
        all.extend(self.name.clone());
        all
    }
}

impl FileTools {
    /// File tools confined to `root` (which must exist). Caps: 1 MiB per read, 1 MiB per
    /// write, 64 KiB and 10 s per search.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root.as_ref())?;
        let handle = std::fs::File::open(&root)?;
        if !handle.metadata()?.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(FileTools {
            root: Arc::new(root),
            handle: Arc::new(OwnedFd::from(handle)),
            max_read_bytes: 1 << 20,
            max_write_bytes: 1 << 20,
            max_search_bytes: 64 << 10,
            search_time: Duration::from_secs(10),
            git_writes: false,
        })
    }

    /// Sets the largest read, in bytes.
    #[must_use]
    pub fn max_read_bytes(mut self, bytes: u64) -> Self {
        self.max_read_bytes = bytes;
        self
    }

    /// Sets the largest write, in bytes.
    #[must_use]
    pub fn max_write_bytes(mut self, bytes: u64) -> Self {
        self.max_write_bytes = bytes;
        self
    }

    /// Sets the most bytes of matches `search_files` returns (default 64 KiB).
    #[must_use]
    pub fn max_search_bytes(mut self, bytes: usize) -> Self {
        self.max_search_bytes = bytes;
        self
    }

    /// Sets how long one `search_files` call may walk (default 10 s); it also stops when
    /// its call is cancelled or times out.
    #[must_use]
    pub fn search_time(mut self, limit: Duration) -> Self {
        self.search_time = limit;
        self
    }

    /// Lets `write_file` and `edit_file` write inside `.git` folders. Off by default: a
    /// model that writes `.git/config` (`core.fsmonitor`, `core.pager`) or `.git/hooks/*`
    /// runs code the next time a person uses git in that folder.
    #[must_use]
    pub fn allow_git_writes(mut self) -> Self {
        self.git_writes = true;
        self
    }

    /// The root every path is confined to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-only tools: `read_file`, `list_files`, `search_files`.
    pub fn read_only_tools(&self) -> Vec<Arc<dyn Tool>> {
        vec![
            Arc::new(ReadFile(self.clone())),
            Arc::new(ListFiles(self.clone())),
            Arc::new(SearchFiles(self.clone())),
        ]
    }

    /// All five tools: the read-only ones plus `write_file` and `edit_file`.
    pub fn all_tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut tools = self.read_only_tools();
        tools.push(Arc::new(WriteFile(self.clone())));
        tools.push(Arc::new(EditFile(self.clone())));
        tools
    }

    /// Resolves a path given by a model to a path inside the root, or says why not. Every
    /// folder on the way is opened beneath the root's handle with links refused, and the
    /// last component must not be a link either; `must_exist: false` allows a new last
    /// component (for writing).
    ///
    /// The result is a path: what it names can still change after this returns. The tools
    /// of this module never use it to open anything (they open through handles); it is for
    /// callers that need a path, such as a program's working folder.
    pub fn resolve(&self, path: &str, must_exist: bool) -> Result<PathBuf, ToolError> {
        let parsed = self.parse(path)?;
        let folder = open_folder(&self.handle, &parsed.folders, &parsed.shown)?;
        if let Some(name) = &parsed.name {
            match stat_at(&folder, name) {
                Ok(Some(stat)) if kind_of(&stat) == Kind::Link => {
                    return Err(ToolError::permission_denied(format!(
                        "`{}` is a symbolic link; links are never followed",
                        parsed.shown
                    )));
                }
                Ok(Some(_)) => {}
                Ok(None) if !must_exist => {}
                Ok(None) => {
                    return Err(ToolError::invalid_arguments(format!(
                        "`{}` does not exist; use list_files to see what is there",
                        parsed.shown
                    )));
                }
                Err(e) => {
                    return Err(ToolError::failed(format!(
                        "cannot look at `{}`: {e}",
                        parsed.shown
                    )));
                }
            }
        }
        let mut full = self.root.as_ref().clone();
        full.extend(parsed.all());
        Ok(full)
    }

    /// Parses a model's path into components beneath the root.
    fn parse(&self, path: &str) -> Result<Parsed, ToolError> {
        if path.contains('\0') {
            return Err(denied("the path contains a NUL byte"));
        }
        let shown = escape(std::ffi::OsStr::new(path));
        let given = Path::new(path.trim());
        let relative = if given.is_absolute() {
            given.strip_prefix(self.root.as_path()).map_err(|_| {
                denied(format!(
                    "`{shown}` is outside the allowed directory; use a path relative to it"
                ))
            })?
        } else {
            given
        };
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_os_string()),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(denied(format!(
                        "`{shown}` contains `..`; paths may not leave the allowed directory"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(denied(format!("`{shown}` is not a relative path")));
                }
            }
        }
        let name = parts.pop();
        let shown = if parts.is_empty() && name.is_none() {
            ".".to_owned()
        } else {
            shown
        };
        Ok(Parsed {
            folders: parts,
            name,
            shown,
        })
    }

    /// Opens the folder a model named.
    fn open_folder(&self, path: &str) -> Result<(OwnedFd, String), ToolError> {
        let parsed = self.parse(path)?;
        let fd = open_folder(&self.handle, &parsed.all(), &parsed.shown)?;
        Ok((fd, parsed.shown))
    }

    /// Opens the file a model named.
    fn open_file(
        &self,
        path: &str,
        access: Access,
    ) -> Result<(std::fs::File, nix::sys::stat::FileStat, String), ToolError> {
        let parsed = self.parse(path)?;
        let Some(name) = &parsed.name else {
            return Err(ToolError::invalid_arguments(
                "give a file name, not the allowed folder itself",
            ));
        };
        if access != Access::Read && !self.git_writes && touches_git(&parsed) {
            return Err(denied(format!(
                "`{}` is inside a `.git` folder; writing there could make git run code, so \
                 it is refused",
                parsed.shown
            )));
        }
        let folder = if access == Access::Read || self.git_writes {
            open_folder(&self.handle, &parsed.folders, &parsed.shown)?
        } else {
            beneath::open_folder_for_writing(&self.handle, &parsed.folders, &parsed.shown)?
        };
        let (file, stat) = open_file(&folder, name, access, &parsed.shown)?;
        Ok((file, stat, parsed.shown))
    }
}

/// Whether a path names `.git` (any case: some file systems ignore case) or something in it.
fn touches_git(parsed: &Parsed) -> bool {
    parsed
        .all()
        .iter()
        .any(|part| part.to_string_lossy().eq_ignore_ascii_case(".git"))
}

fn denied(message: impl Into<String>) -> ToolError {
    ToolError::permission_denied(message)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ToolError::failed(format!("the file operation failed: {e}")))?
}

// ------------------------------------------------------------------------- read_file

/// Arguments of `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// Path relative to the allowed folder.
    pub path: String,
    /// First line to return (1-based). Default: 1.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// Last line to return (inclusive). Default: the end.
    #[serde(default)]
    pub end_line: Option<u64>,
}

struct ReadFile(FileTools);

#[async_trait]
impl TypedTool for ReadFile {
    type Args = ReadArgs;
    fn name(&self) -> &str {
        "read_file"
    }
    fn description(&self) -> &str {
        "Reads a text file in the allowed folder, whole or a range of lines (start_line, \
         end_line, 1-based, inclusive). Large files must be read in ranges."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }
    fn examples(&self) -> Vec<agent_core::ToolExample> {
        vec![
            agent_core::ToolExample::new(
                "Show me what todo.md says.",
                serde_json::json!({"path": "todo.md"}),
            )
            .with_outcome("1: - call the plumber", "It says: call the plumber."),
        ]
    }
    async fn call(&self, args: ReadArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let files = self.0.clone();
        blocking(move || {
            let (file, stat, shown) = files.open_file(&args.path, Access::Read)?;
            let size = u64::try_from(stat.st_size).unwrap_or(0);
            let ranged = args.start_line.is_some() || args.end_line.is_some();
            if !ranged && size > files.max_read_bytes {
                return Err(ToolError::invalid_arguments(format!(
                    "`{shown}` is {} bytes, more than the {} a read may return; read a range of \
                     lines with start_line and end_line",
                    size, files.max_read_bytes
                )));
            }
            let start = args.start_line.unwrap_or(1).max(1);
            let end = args.end_line.unwrap_or(u64::MAX);
            if end < start {
                return Err(ToolError::invalid_arguments(
                    "end_line is before start_line",
                ));
            }
            let mut out = String::new();
            let mut total = 0u64;
            for (i, line) in BufReader::new(file.take(files.max_read_bytes.saturating_mul(64)))
                .lines()
                .enumerate()
            {
                let number = i as u64 + 1;
                let line = line.map_err(|_| {
                    ToolError::invalid_arguments(format!("`{shown}` is not UTF-8 text"))
                })?;
                total = number;
                if number < start || number > end {
                    continue;
                }
                if (out.len() + line.len()) as u64 > files.max_read_bytes {
                    out.push_str(&format!(
                        "[stopped at line {number}: the read cap of {} bytes was reached]\n",
                        files.max_read_bytes
                    ));
                    break;
                }
                out.push_str(&line);
                out.push('\n');
            }
            if ranged {
                out.push_str(&format!("[lines {start}-{} of {total}]", end.min(total)));
            }
            Ok(ToolOutput::Text(out))
        })
        .await
    }
}

// ------------------------------------------------------------------------- list_files

/// Arguments of `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Folder relative to the allowed folder. Default: the allowed folder itself.
    #[serde(default)]
    pub path: Option<String>,
}

struct ListFiles(FileTools);

#[async_trait]
impl TypedTool for ListFiles {
    type Args = ListArgs;
    fn name(&self) -> &str {
        "list_files"
    }
    fn description(&self) -> &str {
        "Lists a folder inside the allowed folder: names, kinds (file, folder, link) and sizes."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }
    async fn call(&self, args: ListArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let files = self.0.clone();
        blocking(move || {
            let (folder, shown) = files.open_folder(args.path.as_deref().unwrap_or("."))?;
            let (names, more) = read_names(&folder, MAX_LISTED)
                .map_err(|e| ToolError::failed(format!("cannot list `{shown}`: {e}")))?;
            let mut entries: Vec<String> = names
                .iter()
                .map(|name| {
                    let shown_name = escape(name);
                    match stat_at(&folder, name).ok().flatten() {
                        Some(stat) => match kind_of(&stat) {
                            Kind::Link => format!("link   {shown_name}"),
                            Kind::Folder => format!("folder {shown_name}/"),
                            Kind::File => {
                                format!("file   {shown_name} ({} bytes)", stat.st_size)
                            }
                            Kind::Other => format!("other  {shown_name}"),
                        },
                        None => format!("other  {shown_name}"),
                    }
                })
                .collect();
            entries.sort();
            if more {
                entries.push(format!("[only the first {MAX_LISTED} entries are shown]"));
            }
            if entries.is_empty() {
                return Ok(format!("`{shown}` is empty").into());
            }
            Ok(entries.join("\n").into())
        })
        .await
    }
}

const MAX_LISTED: usize = 1000;

/// The names in a folder (not `.` and `..`), at most `limit`, and whether there were more.
fn read_names(folder: &OwnedFd, limit: usize) -> nix::Result<(Vec<OsString>, bool)> {
    use std::os::unix::ffi::OsStrExt;
    let mut dir =
        nix::dir::Dir::from_fd(folder.try_clone().map_err(|_| nix::errno::Errno::EMFILE)?)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if names.len() == limit {
            return Ok((names, true));
        }
        names.push(std::ffi::OsStr::from_bytes(bytes).to_os_string());
    }
    Ok((names, false))
}

// ------------------------------------------------------------------------- search_files

/// Arguments of `search_files`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Text to look for (plain text, case-sensitive).
    pub text: String,
    /// Folder to search, relative to the allowed folder. Default: all of it.
    #[serde(default)]
    pub path: Option<String>,
}

struct SearchFiles(FileTools);

const MAX_MATCHES: usize = 200;
/// Lines longer than this are cut in results (minified files are one long line).
const MAX_LINE_CHARS: usize = 300;
/// Files and folders one search looks at, at most.
const MAX_VISITED: usize = 50_000;
/// Folder depth one search descends, at most.
const MAX_DEPTH: usize = 64;

#[async_trait]
impl TypedTool for SearchFiles {
    type Args = SearchArgs;
    fn name(&self) -> &str {
        "search_files"
    }
    fn description(&self) -> &str {
        "Searches the text files under a folder for a piece of text and returns matching lines \
         as path:line: text (at most 200, long lines cut). Symbolic links are not followed."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }
    async fn call(&self, args: SearchArgs, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        if args.text.is_empty() {
            return Err(ToolError::invalid_arguments("`text` must not be empty"));
        }
        let files = self.0.clone();
        // The walk runs on a blocking thread, which a timeout cannot stop from outside: it
        // watches the call's cancellation (fired on timeout and on cancel) and its own clock.
        let cancel = ctx.cancel.clone();
        blocking(move || {
            let (start, shown) = files.open_folder(args.path.as_deref().unwrap_or("."))?;
            let prefix = if shown == "." {
                String::new()
            } else {
                format!("{shown}/")
            };
            let deadline = Instant::now() + files.search_time;
            let mut search = Search {
                files: &files,
                text: &args.text,
                matches: Vec::new(),
                bytes: 0,
                visited: 0,
                stopped: None,
                deadline,
                cancel: &cancel,
            };
            let mut stack = vec![(start, prefix, 0usize)];
            while let Some((folder, prefix, depth)) = stack.pop() {
                if search.out_of_time() {
                    break;
                }
                let Ok((mut names, _)) = read_names(&folder, MAX_VISITED) else {
                    continue;
                };
                names.sort();
                // Folders are pushed in reverse so the walk visits them in name order.
                let mut folders = Vec::new();
                for name in names {
                    search.visited += 1;
                    if search.visited > MAX_VISITED {
                        search.stopped = Some(format!("{MAX_VISITED} entries were visited"));
                        break;
                    }
                    let Ok(Some(stat)) = stat_at(&folder, &name) else {
                        continue;
                    };
                    let path = format!("{prefix}{}", escape(&name));
                    match kind_of(&stat) {
                        Kind::Folder if depth < MAX_DEPTH => {
                            if let Ok(fd) = open_folder(&folder, std::slice::from_ref(&name), &path)
                            {
                                folders.push((fd, format!("{path}/"), depth + 1));
                            }
                        }
                        Kind::File => search.file(&folder, &name, &path),
                        _ => {}
                    }
                    if search.stopped.is_some() {
                        break;
                    }
                }
                stack.extend(folders.into_iter().rev());
            }
            if search.matches.is_empty() && search.stopped.is_none() {
                return Ok(format!("no line contains `{}`", args.text).into());
            }
            let mut out = search.matches.join("\n");
            if let Some(why) = search.stopped {
                out.push_str(&format!("\n[search stopped early: {why}]"));
            }
            Ok(out.into())
        })
        .await
    }
}

/// One search's progress and bounds.
struct Search<'a> {
    files: &'a FileTools,
    text: &'a str,
    matches: Vec<String>,
    bytes: usize,
    visited: usize,
    stopped: Option<String>,
    deadline: Instant,
    cancel: &'a tokio_util::sync::CancellationToken,
}

impl Search<'_> {
    /// Whether the call was cancelled or the search time ran out (noted in `stopped`).
    fn out_of_time(&mut self) -> bool {
        if self.cancel.is_cancelled() {
            self.stopped = Some("the call was cancelled or timed out".into());
        } else if Instant::now() > self.deadline {
            self.stopped = Some(format!(
                "the search time of {} s ran out",
                self.files.search_time.as_secs_f64()
            ));
        }
        self.stopped.is_some()
    }

    fn file(&mut self, folder: &OwnedFd, name: &std::ffi::OsStr, path: &str) {
        // Checked before every file: one wide folder can hold thousands.
        if self.out_of_time() {
            return;
        }
        // Opened like every other read: no link, no FIFO, one hard link; a file swapped for
        // something else after the listing is refused, not followed.
        let Ok((file, stat)) = open_file(folder, name, Access::Read, path) else {
            return;
        };
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > self.files.max_read_bytes {
            return;
        }
        let mut content = Vec::new();
        if file
            .take(self.files.max_read_bytes)
            .read_to_end(&mut content)
            .is_err()
            || content.contains(&0)
        {
            return; // unreadable or binary
        }
        let content = String::from_utf8_lossy(&content);
        for (i, line) in content.lines().enumerate() {
            if !line.contains(self.text) {
                continue;
            }
            let line = line.trim_end();
            let shown = match line.char_indices().nth(MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}[… line cut]", &line[..cut]),
                None => line.to_owned(),
            };
            let entry = format!("{path}:{}: {}", i + 1, escape(std::ffi::OsStr::new(&shown)));
            if self.bytes + entry.len() > self.files.max_search_bytes {
                self.stopped = Some(format!(
                    "the results reached {} bytes",
                    self.files.max_search_bytes
                ));
                return;
            }
            self.bytes += entry.len() + 1;
            self.matches.push(entry);
            if self.matches.len() >= MAX_MATCHES {
                self.stopped = Some(format!("{MAX_MATCHES} matches were found"));
                return;
            }
        }
    }
}

// ------------------------------------------------------------------------- write_file

/// Arguments of `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// Path relative to the allowed folder; its folder must exist.
    pub path: String,
    /// The whole new content of the file.
    pub content: String,
}

struct WriteFile(FileTools);

#[async_trait]
impl TypedTool for WriteFile {
    type Args = WriteArgs;
    fn name(&self) -> &str {
        "write_file"
    }
    fn description(&self) -> &str {
        "Creates or replaces a text file in the allowed folder with the given content."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::side_effecting()
    }
    async fn call(&self, args: WriteArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let files = self.0.clone();
        blocking(move || {
            if args.content.len() as u64 > files.max_write_bytes {
                return Err(ToolError::invalid_arguments(format!(
                    "the content is {} bytes, more than the {} a write may hold",
                    args.content.len(),
                    files.max_write_bytes
                )));
            }
            let (file, _, shown) = files.open_file(&args.path, Access::Create)?;
            replace_content(file, &shown, args.content.as_bytes())?;
            Ok(format!("wrote {} bytes to `{shown}`", args.content.len()).into())
        })
        .await
    }
}

/// Replaces the whole content of an opened (and checked) file.
fn replace_content(mut file: std::fs::File, shown: &str, bytes: &[u8]) -> Result<(), ToolError> {
    let failed = |e: std::io::Error| ToolError::failed(format!("cannot write `{shown}`: {e}"));
    file.set_len(0).map_err(failed)?;
    file.rewind().map_err(failed)?;
    file.write_all(bytes).map_err(failed)
}

// ------------------------------------------------------------------------- edit_file

/// Arguments of `edit_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EditArgs {
    /// Path relative to the allowed folder.
    pub path: String,
    /// The exact text to replace; it must occur exactly once unless `replace_all` is true.
    pub old_text: String,
    /// The text to put instead.
    pub new_text: String,
    /// Replace every occurrence instead of requiring exactly one.
    #[serde(default)]
    pub replace_all: bool,
}

struct EditFile(FileTools);

#[async_trait]
impl TypedTool for EditFile {
    type Args = EditArgs;
    fn name(&self) -> &str {
        "edit_file"
    }
    fn description(&self) -> &str {
        "Replaces an exact piece of text in a file of the allowed folder. The text must occur \
         exactly once (include enough surrounding text), unless replace_all is true."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::side_effecting()
    }
    async fn call(&self, args: EditArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        if args.old_text.is_empty() {
            return Err(ToolError::invalid_arguments("`old_text` must not be empty"));
        }
        let files = self.0.clone();
        blocking(move || {
            let (mut file, stat, shown) = files.open_file(&args.path, Access::ReadWrite)?;
            if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > files.max_read_bytes {
                return Err(ToolError::invalid_arguments(format!("`{shown}` is too large to edit")));
            }
            let mut content = String::new();
            (&mut file)
                .take(files.max_read_bytes)
                .read_to_string(&mut content)
                .map_err(|_| ToolError::invalid_arguments(format!("`{shown}` is not UTF-8 text")))?;
            let count = content.matches(&args.old_text).count();
            // The size is known before the replacement is made: a one-byte `old_text` that
            // occurs a million times with a large `new_text` must not build gigabytes first.
            let edited_len = (content.len() as u64)
                .saturating_sub(count as u64 * args.old_text.len() as u64)
                .saturating_add((count as u64).saturating_mul(args.new_text.len() as u64));
            if count > 0 && (count == 1 || args.replace_all) && edited_len > files.max_write_bytes
            {
                return Err(ToolError::invalid_arguments("the edited file would be too large"));
            }
            let edited = match (count, args.replace_all) {
                (0, _) => {
                    return Err(ToolError::invalid_arguments(format!(
                        "`old_text` does not occur in `{shown}`; read the file and copy the text exactly"
                    )));
                }
                (1, _) | (_, true) => content.replace(&args.old_text, &args.new_text),
                (n, false) => {
                    return Err(ToolError::invalid_arguments(format!(
                        "`old_text` occurs {n} times in `{shown}`; include more surrounding text, \
                         or set replace_all"
                    )));
                }
            };
            replace_content(file, &shown, edited.as_bytes())?;
            Ok(format!("replaced {count} occurrence(s) in `{shown}`").into())
        })
        .await
    }
}
