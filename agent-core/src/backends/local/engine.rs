//! The llama.cpp engine: one worker thread owns the model, its context and the KV cache;
//! requests are queued to it and answered as a stream of events.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::grammar::{LineKind, line_grammar_with_numbers, typed_line_grammar};
use super::protocol::{Step, base_prompt, instructions, parse_step, preamble, step_message, turns};
use super::sampling::{RUNAWAY, Rng, pick, trim_run};
use crate::error::{ModelError, ModelErrorKind};
use crate::message::Usage;
use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat,
    StreamEvent, ToolChoice, ToolSpec, collect_stream,
};

/// How a local model is loaded and run.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// The name reported by [`ChatModel::model`].
    pub name: String,
    /// Threads for prompt processing and generation; `None`: the physical cores.
    pub threads: Option<usize>,
    /// The context window in tokens (prompt plus answer).
    pub context_size: u32,
    /// The most tokens one answer may have, unless the request says otherwise.
    pub max_output_tokens: u32,
    /// Decode under the grammar built from the tools' schemas (on by default; off only to
    /// measure what it costs).
    pub grammar: bool,
}

impl LocalConfig {
    /// A configuration for this file with the defaults: physical cores (fewer for generation
    /// while other processes keep cores busy), 4096-token context, 256-token answers,
    /// grammar on.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".to_owned());
        LocalConfig {
            path,
            name,
            threads: None,
            context_size: 4096,
            max_output_tokens: 256,
            grammar: true,
        }
    }
}

/// Counters of the work done so far, for benchmarks and to see the KV cache at work.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LocalStats {
    /// How long loading the model and creating its context took.
    pub load_time: Duration,
    /// Prompt tokens processed (not served from the KV cache).
    pub prompt_tokens: u64,
    /// Prompt tokens reused from the KV cache.
    pub reused_tokens: u64,
    /// Time spent processing prompts.
    pub prompt_time: Duration,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Time spent generating (sampling and grammar included).
    pub generation_time: Duration,
    /// The generation threads in use (prompt processing uses every physical core).
    pub threads: usize,
    /// How often the generation threads were changed because other processes took cores.
    pub thread_changes: u64,
    /// Whether the file carries a chat template (used for the prompt).
    pub chat_template: bool,
}

struct Job {
    request: ChatRequest,
    events: tokio::sync::mpsc::UnboundedSender<Result<StreamEvent, ModelError>>,
    cancel: Arc<AtomicBool>,
}

struct Shared {
    stats: Mutex<LocalStats>,
}

/// A GGUF model run in process by llama.cpp; see the [module docs](super).
///
/// Loading starts at once on a worker thread of its own; the first request waits for it.
/// Requests run one at a time (one KV cache), each as a stream of events: answer text as it
/// is generated, a tool call when its line is complete.
///
/// ```no_run
/// use agent_core::backends::local::{LocalConfig, LocalModel};
/// let model = LocalModel::new(LocalConfig::new("/models/gemma-3-270m-q4_k_m.gguf"));
/// ```
pub struct LocalModel {
    name: String,
    jobs: Mutex<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs through tracing (target `llama-cpp-2`), not to stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            ModelError::new(
                ModelErrorKind::Configuration,
                format!("llama.cpp did not start: {e}"),
            )
        })
}

impl LocalModel {
    /// Starts loading the model on a worker thread and returns at once.
    pub fn new(config: LocalConfig) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            stats: Mutex::new(LocalStats::default()),
        });
        let name = config.name.clone();
        let worker_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("local-model-{name}"))
            .spawn(move || worker(config, queue, worker_shared));
        if let Err(e) = spawned {
            tracing::error!("could not start the local model's thread: {e}");
        }
        LocalModel {
            name,
            jobs: Mutex::new(jobs),
            shared,
        }
    }

    /// One shared instance per file and settings: a second `local:` model string naming the
    /// same file reuses the loaded model instead of loading it again.
    pub fn shared(config: LocalConfig) -> Arc<LocalModel> {
        static LOADED: OnceLock<Mutex<HashMap<String, Weak<LocalModel>>>> = OnceLock::new();
        let key = format!("{config:?}");
        let loaded = LOADED.get_or_init(Default::default);
        let Ok(mut loaded) = loaded.lock() else {
            return Arc::new(LocalModel::new(config));
        };
        if let Some(model) = loaded.get(&key).and_then(Weak::upgrade) {
            return model;
        }
        let model = Arc::new(LocalModel::new(config));
        loaded.insert(key, Arc::downgrade(&model));
        model
    }

    /// The work done so far.
    pub fn stats(&self) -> LocalStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl ChatModel for LocalModel {
    fn provider(&self) -> &str {
        "local"
    }

    fn model(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            parallel_tool_calls: false,
            streaming: true,
            images: false,
            documents: false,
            structured_output: true,
            reasoning: false,
        }
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        collect_stream(self.chat_stream(request).await?).await
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        // A text-only model: an image or a document is refused, never silently dropped.
        crate::backends::protocol::check_parts(request, false, false)
            .map_err(|e| e.with_provider("local", self.name.clone()))?;
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            request: request.clone(),
            events,
            cancel: cancel.clone(),
        };
        let sent = self.jobs.lock().map_err(|_| stopped_error())?.send(job);
        if sent.is_err() {
            return Err(stopped_error());
        }
        let guard = CancelOnDrop(cancel);
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            let _keep = &guard;
            rx.poll_recv(cx)
        })))
    }
}

fn stopped_error() -> ModelError {
    ModelError::new(
        ModelErrorKind::Other,
        "the local model's worker thread has stopped (see the earlier error)",
    )
    .with_provider("local", "")
}

fn worker(config: LocalConfig, queue: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let started = Instant::now();
    let loaded = backend().and_then(|backend| {
        let model = LlamaModel::load_from_file(backend, &config.path, &LlamaModelParams::default())
            .map_err(|e| {
                ModelError::new(
                    ModelErrorKind::Configuration,
                    format!("cannot load {}: {e}", config.path.display()),
                )
            })?;
        Ok((backend, model))
    });
    let (backend, model) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return fail_all(queue, error.with_provider("local", &config.name)),
    };
    let threads = config.threads.unwrap_or_else(super::physical_cores).max(1);
    // Explicit threads are kept; the default adapts generation to what is free (below).
    let adaptive = config.threads.is_none() && threads > 1;
    let mut generation_threads = threads;
    let mut ctx = match model.new_context(backend, context_params(&config, threads, threads)) {
        Ok(ctx) => ctx,
        Err(e) => {
            let error = ModelError::new(
                ModelErrorKind::Configuration,
                format!("cannot create a context for {}: {e}", config.path.display()),
            );
            return fail_all(queue, error.with_provider("local", &config.name));
        }
    };
    let template = model.chat_template(None).ok();
    if let Ok(mut stats) = shared.stats.lock() {
        stats.load_time = started.elapsed();
        stats.threads = threads;
        stats.chat_template = template.is_some();
    }
    let mut engine = Engine {
        model: &model,
        template,
        slots: vec![Vec::new(); SLOTS],
        last_used: vec![0; SLOTS],
        clock: 0,
        config: &config,
        shared: &shared,
        calls: 0,
        others_busy: None,
    };
    while let Ok(job) = queue.recv() {
        let outcome = engine.run(&mut ctx, &job);
        let message = match outcome {
            Ok(response) => Ok(StreamEvent::Completed(response)),
            Err(error) => {
                // The cache may hold half a prompt: start clean next time.
                engine.slots.iter_mut().for_each(Vec::clear);
                ctx.clear_kv_cache();
                Err(error.with_provider("local", &config.name))
            }
        };
        let _ = job.events.send(message);

        // Generation runs its threads in lock step: when other processes keep cores busy,
        // a thread that waits for a core stalls all of them (2 threads on 2 cores with one
        // busy generated 15 tokens/s where 1 thread did 26). So the generation threads
        // follow the cores others leave free, measured over the last generation; prompt
        // processing keeps every core (it did not suffer).
        if adaptive && let Some(busy) = engine.others_busy.take() {
            let want = if busy >= 0.6 {
                threads.saturating_sub(busy.round() as usize).max(1)
            } else if busy <= 0.3 {
                threads
            } else {
                generation_threads
            };
            if want != generation_threads {
                match engine.rebuild(backend, &mut ctx, want, threads) {
                    Ok(()) => {
                        tracing::debug!(
                            "local model: generation threads {generation_threads} -> {want} \
                             (other processes used {busy:.1} cores)"
                        );
                        generation_threads = want;
                    }
                    Err(e) => tracing::warn!("local model: could not change threads: {e}"),
                }
                if let Ok(mut stats) = shared.stats.lock() {
                    stats.threads = generation_threads;
                    stats.thread_changes += 1;
                }
            }
        }
    }
}

fn context_params(config: &LocalConfig, generation: usize, batch: usize) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_size.max(512)))
        .with_n_seq_max(SLOTS as u32)
        .with_kv_unified(true)
        .with_n_batch(512)
        .with_n_threads(i32::try_from(generation).unwrap_or(1))
        .with_n_threads_batch(i32::try_from(batch).unwrap_or(1))
}

/// CPU time, in clock ticks (1/100 s): all CPUs' busy time, and this process's.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &own[own.rfind(')')? + 2..];
    let own_fields: Vec<&str> = rest.split(' ').collect();
    let own = own_fields.get(11)?.parse::<u64>().ok()? + own_fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

fn fail_all(queue: mpsc::Receiver<Job>, error: ModelError) {
    tracing::error!("{error}");
    while let Ok(job) = queue.recv() {
        let _ = job.events.send(Err(error.clone()));
    }
}

/// Conversations kept in the KV cache at once (one sequence each), so agents that take
/// turns on one model each keep their prefix.
const SLOTS: usize = 4;

struct Engine<'m> {
    model: &'m LlamaModel,
    template: Option<LlamaChatTemplate>,
    /// The tokens in the KV cache, per sequence, in order.
    slots: Vec<Vec<LlamaToken>>,
    /// When each sequence was last used (a counter), to evict the oldest.
    last_used: Vec<u64>,
    clock: u64,
    config: &'m LocalConfig,
    shared: &'m Shared,
    /// Tool calls made so far, for their ids.
    calls: u64,
    /// Cores other processes kept busy during the last generation (when long enough to tell).
    others_busy: Option<f64>,
}

fn engine_error(kind: ModelErrorKind, message: impl Into<String>) -> ModelError {
    ModelError::new(kind, message)
}

impl<'m> Engine<'m> {
    /// Replaces the context with one using `generation` threads, moving every cached
    /// conversation over (a copy of its KV cells, no recomputation).
    fn rebuild(
        &mut self,
        backend: &LlamaBackend,
        ctx: &mut LlamaContext<'m>,
        generation: usize,
        batch: usize,
    ) -> Result<(), String> {
        let flags = llama_cpp_2::LlamaStateSeqFlags::empty();
        let mut saved = Vec::new();
        for (seq, tokens) in self.slots.iter().enumerate() {
            if !tokens.is_empty() {
                let state = ctx
                    .state_seq_get(seq as i32, flags)
                    .map_err(|e| e.to_string())?;
                saved.push((seq, state));
            }
        }
        let mut fresh = self
            .model
            .new_context(backend, context_params(self.config, generation, batch))
            .map_err(|e| e.to_string())?;
        for (seq, state) in &saved {
            if fresh.state_seq_set(state, *seq as i32).is_err() {
                self.slots[*seq].clear();
            }
        }
        *ctx = fresh;
        Ok(())
    }

    fn prompt(&self, request: &ChatRequest) -> Result<String, ModelError> {
        let answer = answer_schema(request);
        let Some(template) = &self.template else {
            return Ok(base_prompt(&request.messages, &request.tools, answer));
        };
        let mut chat = vec![(
            "system",
            preamble(&instructions(&request.messages), &request.tools, answer),
        )];
        chat.extend(
            turns(&request.messages)
                .into_iter()
                .map(|t| (t.role, t.text)),
        );
        let chat = chat
            .into_iter()
            .map(|(role, text)| LlamaChatMessage::new(role.to_owned(), text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| engine_error(ModelErrorKind::BadRequest, format!("{e}")))?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| {
                engine_error(
                    ModelErrorKind::Other,
                    format!("the model's chat template failed: {e}"),
                )
            })
    }

    fn run(&mut self, ctx: &mut LlamaContext<'_>, job: &Job) -> Result<ChatResponse, ModelError> {
        let request = &job.request;
        let prompt = self.prompt(request)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        let max_new = request
            .max_output_tokens
            .unwrap_or(self.config.max_output_tokens)
            .max(1) as usize;
        let n_ctx = ctx.n_ctx() as usize;
        if tokens.len() + max_new > n_ctx {
            return Err(engine_error(
                ModelErrorKind::ContextLengthExceeded,
                format!(
                    "the conversation is {} tokens and the answer may take {max_new}; the local \
                     context holds {n_ctx} (raise LocalConfig::context_size)",
                    tokens.len()
                ),
            ));
        }

        // Reuse the longest common prefix among the cached conversations. A conversation
        // that goes on continues in its own sequence; a new one that shares a prefix with
        // another (the same instructions and tools) gets that prefix copied into the least
        // recently used sequence (cells are shared, not recomputed), so both stay cached.
        let prefix =
            |slot: &Vec<LlamaToken>| slot.iter().zip(&tokens).take_while(|(a, b)| a == b).count();
        let (source, shared) = (0..SLOTS)
            .map(|i| (i, prefix(&self.slots[i])))
            .max_by_key(|&(i, n)| (n, self.last_used[i]))
            .unwrap_or((0, 0));
        let seq = if shared > 0 && shared == self.slots[source].len() {
            source
        } else {
            (0..SLOTS)
                .filter(|&i| i != source || shared == 0)
                .min_by_key(|&i| (!self.slots[i].is_empty(), self.last_used[i]))
                .unwrap_or(source)
        };
        if seq != source && shared > 0 {
            let copied = u32::try_from(shared).ok();
            ctx.kv_cache_seq_rm(seq as i32, None, None)
                .and_then(|_| ctx.kv_cache_seq_cp(source as i32, seq as i32, Some(0), copied))
                .map_err(|e| engine_error(ModelErrorKind::Other, format!("KV cache: {e}")))?;
            self.slots[seq] = self.slots[source][..shared].to_vec();
        }
        self.clock += 1;
        self.last_used[seq] = self.clock;
        let mut common = prefix(&self.slots[seq]);
        if common == tokens.len() {
            common -= 1; // the last prompt token must be decoded again for its logits
        }
        let seq_id = seq as i32;
        ctx.kv_cache_seq_rm(seq_id, u32::try_from(common).ok(), None)
            .map_err(|e| engine_error(ModelErrorKind::Other, format!("KV cache: {e}")))?;
        self.slots[seq].truncate(common);
        // The sequences share the context: make room by dropping the oldest others.
        while self.slots.iter().map(Vec::len).sum::<usize>() - common + tokens.len() + max_new
            > n_ctx
        {
            let Some(oldest) = (0..SLOTS)
                .filter(|&i| i != seq && !self.slots[i].is_empty())
                .min_by_key(|&i| self.last_used[i])
            else {
                break;
            };
            ctx.kv_cache_seq_rm(oldest as i32, None, None)
                .map_err(|e| engine_error(ModelErrorKind::Other, format!("KV cache: {e}")))?;
            self.slots[oldest].clear();
        }
        let prompt_started = Instant::now();
        let n_batch = ctx.n_batch().max(1) as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut last_index = 0;
        for (chunk_no, chunk) in tokens[common..].chunks(n_batch).enumerate() {
            if job.cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            batch.clear();
            let start = common + chunk_no * n_batch;
            for (i, &token) in chunk.iter().enumerate() {
                let pos = (start + i) as i32;
                let last = start + i + 1 == tokens.len();
                batch
                    .add(token, pos, &[seq_id], last)
                    .map_err(|e| engine_error(ModelErrorKind::Other, format!("batch: {e}")))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| engine_error(ModelErrorKind::Other, format!("decode: {e}")))?;
            self.slots[seq].extend_from_slice(chunk);
            last_index = chunk.len() as i32 - 1;
        }
        let prompt_time = prompt_started.elapsed();

        let (tools, kind) = tools_for(request);
        let mut grammar = if self.config.grammar {
            let gbnf = match answer_schema(request) {
                // A typed answer: the answer line is a value of its schema, nothing else.
                Some(schema) => typed_line_grammar(&tools, kind, schema),
                None => {
                    let numbers = answer_numbers(request);
                    let result = numeric_result(request);
                    line_grammar_with_numbers(&tools, kind, numbers.as_deref(), result.as_deref())
                }
            };
            Some(
                LlamaSampler::grammar(self.model, &gbnf, "root").map_err(|e| {
                    engine_error(
                        ModelErrorKind::BadRequest,
                        format!("the tools' schemas gave a grammar llama.cpp refused: {e}"),
                    )
                })?,
            )
        } else {
            None
        };
        let temperature = request.temperature.unwrap_or(0.0);
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ tokens.len() as u64);

        let generation_started = Instant::now();
        let ticks_before = cpu_ticks();
        let mut line = String::new();
        let mut pending = Vec::new();
        let mut piece = Vec::new();
        let mut generated = 0usize;
        let mut streamed = 0usize;
        let mut finish = FinishReason::Length;
        let mut index = last_index;
        let mut last_token = None;
        let mut run = 0usize;
        while generated < max_new {
            if job.cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let token = pick(ctx, index, grammar.as_mut(), temperature, &mut rng)?;
            // A small model can loop on one token ("452.000000..."): a run of RUNAWAY
            // identical tokens ends the line there.
            run = if Some(token) == last_token {
                run + 1
            } else {
                1
            };
            last_token = Some(token);
            if run >= RUNAWAY {
                finish = FinishReason::Stop;
                line = trim_run(&line);
                break;
            }
            generated += 1;
            if vocab.is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            if let Some(g) = grammar.as_mut() {
                g.accept(token);
            }
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            pending.extend_from_slice(&piece);
            let valid = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                line.push_str(&String::from_utf8_lossy(&pending[..valid]));
                pending.drain(..valid);
            }
            let done = line.contains('\n');
            // Stream answer text as it comes (a call is sent whole, when its line is done).
            if let Some(text) = line.strip_prefix("ANSWER ") {
                let text = text.split('\n').next().unwrap_or_default();
                if text.len() > streamed {
                    let _ = job
                        .events
                        .send(Ok(StreamEvent::TextDelta(text[streamed..].to_owned())));
                    streamed = text.len();
                }
            }
            if done {
                finish = FinishReason::Stop;
                break;
            }
            batch.clear();
            batch
                .add(token, self.slots[seq].len() as i32, &[seq_id], true)
                .map_err(|e| engine_error(ModelErrorKind::Other, format!("batch: {e}")))?;
            ctx.decode(&mut batch)
                .map_err(|e| engine_error(ModelErrorKind::Other, format!("decode: {e}")))?;
            self.slots[seq].push(token);
            index = 0;
        }
        let generation_time = generation_started.elapsed();
        if let (Some((busy0, own0)), Some((busy1, own1))) = (ticks_before, cpu_ticks()) {
            let wall = generation_time.as_secs_f64();
            if wall >= 0.2 {
                let others = busy1
                    .saturating_sub(busy0)
                    .saturating_sub(own1.saturating_sub(own0));
                self.others_busy = Some(others as f64 / 100.0 / wall);
            }
        }
        if let Ok(mut stats) = self.shared.stats.lock() {
            stats.prompt_tokens += (tokens.len() - common) as u64;
            stats.reused_tokens += common as u64;
            stats.prompt_time += prompt_time;
            stats.generated_tokens += generated as u64;
            stats.generation_time += generation_time;
        }

        let line = line.split('\n').next().unwrap_or_default().to_owned();
        let step = parse_step(&line);
        if let Step::Call { .. } = step {
            finish = FinishReason::ToolCalls;
        }
        let mut message = step_message(step);
        for call in &mut message.tool_calls {
            call.id = format!("call_{}", self.calls);
            self.calls += 1;
            let _ = job.events.send(Ok(StreamEvent::ToolCallStarted {
                index: 0,
                id: call.id.clone(),
                name: call.name.clone(),
            }));
            let _ = job.events.send(Ok(StreamEvent::ToolCallDelta {
                index: 0,
                arguments: call.arguments.clone(),
            }));
        }
        Ok(ChatResponse {
            message,
            finish_reason: finish,
            usage: Usage {
                input_tokens: tokens.len() as u64,
                output_tokens: generated as u64,
                cached_input_tokens: common as u64,
                reasoning_tokens: 0,
                ..Usage::default()
            },
            model: None,
        })
    }
}

/// The JSON Schema a typed answer must follow, when the request asks for one.
fn answer_schema(request: &ChatRequest) -> Option<&serde_json::Value> {
    match &request.response_format {
        ResponseFormat::JsonSchema { schema, .. } => Some(schema),
        _ => None,
    }
}

fn cancelled() -> ModelError {
    engine_error(ModelErrorKind::Cancelled, "the request was cancelled")
}

/// The tools the next line may call, and what the line may be, per the request's tool
/// choice; after a failed tool call, an answer may state no number (it could only be
/// invented: the model calls again or says the tool failed).
fn tools_for(request: &ChatRequest) -> (Vec<ToolSpec>, LineKind) {
    let last_call_failed = matches!(
        request.messages.last(),
        Some(crate::message::Message::Tool(result)) if result.is_error
    );
    let (tools, kind) = tools_for_choice(request);
    if last_call_failed {
        (tools, kind.after_failure())
    } else {
        (tools, kind)
    }
}

/// The numbers an answer may state in a run with tools: those of the task (the last user
/// message) and of the tool results since. A small model's own arithmetic is not to be
/// trusted; a number from nowhere is exactly the invented result we must not give.
/// `None` (no limit) when the request offers no tools.
fn answer_numbers(request: &ChatRequest) -> Option<Vec<String>> {
    use crate::message::Message;
    if request.tools.is_empty() {
        return None;
    }
    let start = request
        .messages
        .iter()
        .rposition(|m| matches!(m, Message::User { .. }))
        .unwrap_or(0);
    let mut numbers: Vec<String> = Vec::new();
    for message in &request.messages[start..] {
        let text = match message {
            Message::User { .. } => message.text(),
            Message::Tool(result) if !result.is_error => result.content.clone(),
            _ => continue,
        };
        for number in numbers_in(&text) {
            if !numbers.contains(&number) {
                numbers.push(number);
            }
        }
    }
    Some(numbers)
}

/// The last message's tool result when it is one bare number (a calculator's, say): the
/// answer must state it.
fn numeric_result(request: &ChatRequest) -> Option<String> {
    match request.messages.last() {
        Some(crate::message::Message::Tool(result)) if !result.is_error => {
            let numbers = numbers_in(&result.content);
            let bare = numbers.len() == 1 && result.content.trim().replace(',', "") == numbers[0];
            bare.then(|| numbers[0].clone())
        }
        _ => None,
    }
}

/// The numbers in a text as written, thousands separators removed: `3,280.5` is `3280.5`.
fn numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let digit_next = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        let decimal_point = c == '.' && !current.is_empty() && !current.contains('.') && digit_next;
        if c.is_ascii_digit() || decimal_point {
            current.push(c);
        } else if c == ',' && !current.is_empty() && !current.contains('.') && digit_next {
            // A thousands separator.
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn tools_for_choice(request: &ChatRequest) -> (Vec<ToolSpec>, LineKind) {
    match &request.tool_choice {
        ToolChoice::None => (Vec::new(), LineKind::AnswerOnly),
        ToolChoice::Auto => (request.tools.to_vec(), LineKind::CallOrAnswer),
        ToolChoice::Required => (request.tools.to_vec(), LineKind::CallOnly),
        ToolChoice::Tool(name) => (
            request
                .tools
                .iter()
                .filter(|t| &t.name == name)
                .cloned()
                .collect(),
            LineKind::CallOnly,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, ToolCall, ToolResult};
    use serde_json::json;

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages: messages.into(),
            tools: vec![ToolSpec {
                name: "calculator".into(),
                description: "Calculates.".into(),
                parameters: json!({"type": "object"}),
                strict: false,
                examples: Vec::new(),
            }]
            .into(),
            ..Default::default()
        }
    }

    fn result(content: &str, is_error: bool) -> Message {
        let call = ToolCall::new("c1", "calculator", &json!({}));
        Message::Tool(if is_error {
            ToolResult::error(&call, content)
        } else {
            ToolResult::ok(&call, content)
        })
    }

    #[test]
    fn numbers_are_read_as_written_without_thousands_separators() {
        assert_eq!(
            numbers_in("12.5% of 3,280, then 7. And -4."),
            ["12.5", "3280", "7", "4"]
        );
    }

    #[test]
    fn an_answer_may_state_the_tasks_and_the_results_numbers_only() {
        let r = request(vec![
            Message::user("Earlier: 99"),
            Message::user("What is 7 to the power of 3?"),
            result("error: at character 12", true),
            result("343", false),
        ]);
        assert_eq!(answer_numbers(&r).unwrap(), ["7", "3", "343"]);
        assert_eq!(numeric_result(&r).as_deref(), Some("343"));
        let sentence = request(vec![
            Message::user("Hi"),
            result("It is 12:30 in Paris", false),
        ]);
        assert_eq!(numeric_result(&sentence), None, "not a bare number");
        let no_tools = ChatRequest {
            tools: Vec::new().into(),
            ..r
        };
        assert_eq!(answer_numbers(&no_tools), None);
    }

    #[test]
    fn after_a_failed_call_the_line_kind_forbids_numbers_in_an_answer() {
        let mut r = request(vec![Message::user("What is 2 + 2?"), result("bad", true)]);
        assert_eq!(tools_for(&r).1, LineKind::CallOrAnswerWithoutNumbers);
        r.tool_choice = crate::model::ToolChoice::None;
        assert_eq!(tools_for(&r).1, LineKind::AnswerWithoutNumbers);
    }
}
