//! File tools confined to one directory: `read_file`, `list_files`, `search_files`
//! (read-only) and `write_file`, `edit_file` (side-effecting).
//!
//! Every path a model gives is resolved against the root and refused when it could reach
//! outside: `..` components, absolute paths outside the root, and symlinks anywhere in the
//! path whose target lies outside. Only regular files are read or written (no devices,
//! FIFOs or sockets), within size caps. File I/O runs on tokio's blocking pool, so a slow
//! disk never stalls the run's task.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use agent_core::{Tool, ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// The shared configuration of the file tools.
#[derive(Clone, Debug)]
pub struct FileTools {
    root: Arc<PathBuf>,
    max_read_bytes: u64,
    max_write_bytes: u64,
}

impl FileTools {
    /// File tools confined to `root` (which must exist). Caps: 1 MiB per read, 1 MiB per
    /// write.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(FileTools {
            root: Arc::new(root),
            max_read_bytes: 1 << 20,
            max_write_bytes: 1 << 20,
        })
    }

    /// Sets the largest read, in bytes.
    pub fn max_read_bytes(mut self, bytes: u64) -> Self {
        self.max_read_bytes = bytes;
        self
    }

    /// Sets the largest write, in bytes.
    pub fn max_write_bytes(mut self, bytes: u64) -> Self {
        self.max_write_bytes = bytes;
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

    /// Resolves a path given by a model to a path inside the root, or says why not.
    /// `must_exist: false` allows a new final component (for writing).
    pub fn resolve(&self, path: &str, must_exist: bool) -> Result<PathBuf, ToolError> {
        if path.contains('\0') {
            return Err(denied("the path contains a NUL byte"));
        }
        let given = Path::new(path.trim());
        let relative = if given.is_absolute() {
            given.strip_prefix(self.root.as_path()).map_err(|_| {
                denied(format!(
                    "`{path}` is outside the allowed directory; use a path relative to it"
                ))
            })?
        } else {
            given
        };
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(denied(format!(
                        "`{path}` contains `..`; paths may not leave the allowed directory"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(denied(format!("`{path}` is not a relative path")));
                }
            }
        }
        let full = self.root.join(&clean);
        match fs::canonicalize(&full) {
            // Exists: every symlink on the way is resolved; the result must stay inside.
            Ok(real) => {
                if !real.starts_with(self.root.as_path()) {
                    return Err(denied(format!(
                        "`{path}` leads outside the allowed directory through a symbolic link"
                    )));
                }
                Ok(real)
            }
            Err(_) if !must_exist => {
                // A new file: its parent must exist inside the root, and the name must not be
                // a dangling symlink.
                let name = clean
                    .file_name()
                    .ok_or_else(|| ToolError::invalid_arguments("give a file name"))?;
                let parent = full.parent().unwrap_or(self.root.as_path());
                let real_parent = fs::canonicalize(parent).map_err(|_| {
                    ToolError::invalid_arguments(format!(
                        "the folder of `{path}` does not exist; write into an existing folder"
                    ))
                })?;
                if !real_parent.starts_with(self.root.as_path()) {
                    return Err(denied(format!(
                        "`{path}` leads outside the allowed directory through a symbolic link"
                    )));
                }
                let target = real_parent.join(name);
                if fs::symlink_metadata(&target).is_ok() {
                    return Err(denied(format!(
                        "`{path}` is a symbolic link that leads nowhere allowed"
                    )));
                }
                Ok(target)
            }
            Err(_) => Err(ToolError::invalid_arguments(format!(
                "`{path}` does not exist; use list_files to see what is there"
            ))),
        }
    }

    /// Shows a resolved path relative to the root, for messages.
    fn show(&self, path: &Path) -> String {
        let relative = path.strip_prefix(self.root.as_path()).unwrap_or(path);
        let shown = relative.display().to_string();
        if shown.is_empty() { ".".into() } else { shown }
    }
}

fn denied(message: impl Into<String>) -> ToolError {
    ToolError::permission_denied(message)
}

/// Refuses anything that is not a regular file (devices, FIFOs, sockets, folders).
fn regular_file(path: &Path, shown: &str) -> Result<fs::Metadata, ToolError> {
    let meta =
        fs::metadata(path).map_err(|e| ToolError::failed(format!("cannot read `{shown}`: {e}")))?;
    if meta.is_dir() {
        return Err(ToolError::invalid_arguments(format!(
            "`{shown}` is a folder; use list_files"
        )));
    }
    if !meta.is_file() {
        return Err(denied(format!(
            "`{shown}` is not a regular file (device, pipe or socket)"
        )));
    }
    Ok(meta)
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
            let path = files.resolve(&args.path, true)?;
            let shown = files.show(&path);
            let meta = regular_file(&path, &shown)?;
            let ranged = args.start_line.is_some() || args.end_line.is_some();
            if !ranged && meta.len() > files.max_read_bytes {
                return Err(ToolError::invalid_arguments(format!(
                    "`{shown}` is {} bytes, more than the {} a read may return; read a range of \
                     lines with start_line and end_line",
                    meta.len(),
                    files.max_read_bytes
                )));
            }
            let start = args.start_line.unwrap_or(1).max(1);
            let end = args.end_line.unwrap_or(u64::MAX);
            if end < start {
                return Err(ToolError::invalid_arguments(
                    "end_line is before start_line",
                ));
            }
            let file = fs::File::open(&path)
                .map_err(|e| ToolError::failed(format!("cannot open `{shown}`: {e}")))?;
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
            let path = files.resolve(args.path.as_deref().unwrap_or("."), true)?;
            let shown = files.show(&path);
            let mut entries: Vec<String> = fs::read_dir(&path)
                .map_err(|e| ToolError::invalid_arguments(format!("cannot list `{shown}`: {e}")))?
                .filter_map(Result::ok)
                .take(1000)
                .map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    match entry.metadata() {
                        Ok(m) if m.file_type().is_symlink() => format!("link   {name}"),
                        Ok(m) if m.is_dir() => format!("folder {name}/"),
                        Ok(m) if m.is_file() => format!("file   {name} ({} bytes)", m.len()),
                        _ => format!("other  {name}"),
                    }
                })
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Ok(format!("`{shown}` is empty").into());
            }
            Ok(entries.join("\n").into())
        })
        .await
    }
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

#[async_trait]
impl TypedTool for SearchFiles {
    type Args = SearchArgs;
    fn name(&self) -> &str {
        "search_files"
    }
    fn description(&self) -> &str {
        "Searches the text files under a folder for a piece of text and returns matching lines \
         as path:line: text (at most 200). Symbolic links are not followed."
    }
    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }
    async fn call(&self, args: SearchArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        if args.text.is_empty() {
            return Err(ToolError::invalid_arguments("`text` must not be empty"));
        }
        let files = self.0.clone();
        blocking(move || {
            let start = files.resolve(args.path.as_deref().unwrap_or("."), true)?;
            let mut matches = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
                entries.sort_by_key(|e| e.file_name());
                for entry in entries {
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    let path = entry.path();
                    if kind.is_dir() {
                        stack.push(path);
                    } else if kind.is_file() {
                        search_file(&files, &path, &args.text, &mut matches);
                    }
                    if matches.len() >= MAX_MATCHES {
                        matches.push(format!("[stopped after {MAX_MATCHES} matches]"));
                        return Ok(matches.join("\n").into());
                    }
                }
            }
            if matches.is_empty() {
                return Ok(format!("no line contains `{}`", args.text).into());
            }
            Ok(matches.join("\n").into())
        })
        .await
    }
}

fn search_file(files: &FileTools, path: &Path, text: &str, matches: &mut Vec<String>) {
    let Ok(meta) = fs::metadata(path) else { return };
    if meta.len() > files.max_read_bytes {
        return;
    }
    let Ok(content) = fs::read(path) else { return };
    if content.contains(&0) {
        return; // binary
    }
    let content = String::from_utf8_lossy(&content);
    for (i, line) in content.lines().enumerate() {
        if line.contains(text) {
            matches.push(format!(
                "{}:{}: {}",
                files.show(path),
                i + 1,
                line.trim_end()
            ));
            if matches.len() >= MAX_MATCHES {
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
            let path = files.resolve(&args.path, false)?;
            let shown = files.show(&path);
            write_regular(&path, &shown, args.content.as_bytes())?;
            Ok(format!("wrote {} bytes to `{shown}`", args.content.len()).into())
        })
        .await
    }
}

/// Writes a file that is regular or new, never following a symlink at the last step.
fn write_regular(path: &Path, shown: &str, bytes: &[u8]) -> Result<(), ToolError> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && !meta.is_file()
    {
        return Err(denied(format!(
            "`{shown}` is not a regular file; it cannot be written"
        )));
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| ToolError::failed(format!("cannot write `{shown}`: {e}")))?;
    file.write_all(bytes)
        .map_err(|e| ToolError::failed(format!("cannot write `{shown}`: {e}")))
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
            let path = files.resolve(&args.path, true)?;
            let shown = files.show(&path);
            let meta = regular_file(&path, &shown)?;
            if meta.len() > files.max_read_bytes {
                return Err(ToolError::invalid_arguments(format!("`{shown}` is too large to edit")));
            }
            let content = fs::read_to_string(&path)
                .map_err(|_| ToolError::invalid_arguments(format!("`{shown}` is not UTF-8 text")))?;
            let count = content.matches(&args.old_text).count();
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
            if edited.len() as u64 > files.max_write_bytes {
                return Err(ToolError::invalid_arguments("the edited file would be too large"));
            }
            write_regular(&path, &shown, edited.as_bytes())?;
            Ok(format!("replaced {count} occurrence(s) in `{shown}`").into())
        })
        .await
    }
}
