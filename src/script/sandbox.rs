//! The sandboxed engine and running one script.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Scope, AST};

use super::api;
use super::host::Host;

/// Resource limits of one script run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Wall-clock budget for the whole script, host calls included.
    pub deadline: Duration,
    /// Memory the script may hold in total, all its values together (see [`super::budget`]).
    pub max_memory: usize,
    /// Bytes the script may write with `log`, `print` and `debug`, all lines together.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            deadline: Duration::from_secs(30),
            max_memory: 64 << 20,
            max_output: 64 << 10,
        }
    }
}

/// What a script sees besides the host functions.
#[derive(Clone, Default)]
pub struct Context {
    /// Non-secret lets of the env.
    pub vars: Vec<(String, String)>,
    pub stage: String,
    pub env_name: String,
    /// Secret lets by let name; reach scripts only through `secret("name")`.
    pub secrets: Vec<(String, String)>,
    /// The guard's response inside `check rhai`.
    pub response: Option<api::HttpResponse>,
    /// Cancellation (Ctrl-C): the script stops at its next operation.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A script that ran to the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub message: Option<String>,
    /// Lines written with `log(…)`.
    pub logs: Vec<String>,
}

/// Why a script did not produce a verdict.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookFailure {
    #[error("the script threw an error: {message}{}", at(*line, *column))]
    Thrown {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("the script exceeded a limit: {what}{}", at(*line, *column))]
    Limit {
        what: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("the script ran past its deadline of {0:?}")]
    Timeout(Duration),
    #[error("the script was cancelled")]
    Cancelled,
    #[error("the script returned {found}; a hook returns `true`/`false` or `#{{ ok: bool, message: string }}`")]
    BadReturn { found: String },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (script line {l}, column {c})"),
        (Some(l), None) => format!(" (script line {l})"),
        _ => String::new(),
    }
}

fn standard() -> &'static rhai::Shared<rhai::Module> {
    static STD: OnceLock<rhai::Shared<rhai::Module>> = OnceLock::new();
    STD.get_or_init(|| StandardPackage::new().as_shared_module())
}

/// The engine with the sandbox applied but no host functions: used by `check` to compile, and
/// as the base of every run.
pub(crate) fn base_engine(limits: &Limits) -> Engine {
    let mut engine = sandboxed_raw(limits);
    engine.register_global_module(standard().clone());
    engine
}

/// The sandbox's settings on an engine with no functions at all: enough to compile (Rhai
/// resolves functions when it runs), and much cheaper to build than the standard package.
pub(crate) fn sandboxed_raw(limits: &Limits) -> Engine {
    let mut engine = Engine::new_raw();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_strict_variables(true);
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    engine
}

/// Names every script can read as variables (so strict mode accepts them at compile time).
pub(crate) const SCOPE_NAMES: &[&str] = &["vars", "stage", "env_name", "response"];

/// Run a compiled script to a verdict. Blocking: call it from `spawn_blocking`.
pub fn run(
    ast: &AST,
    ctx: &Context,
    host: Arc<dyn Host>,
    limits: Limits,
) -> Result<Outcome, HookFailure> {
    let mut engine = base_engine(&limits);
    let redact = crate::redact::Redactor::new(ctx.secrets.iter().map(|(_, v)| v.clone()));
    let output = Output::new(limits.max_output, redact.clone());
    let logs = output.lines.clone();
    let secrets = Arc::new(ctx.secrets.clone());
    api::register(&mut engine, host, secrets, output.clone(), &limits);
    let o = output.clone();
    engine.on_print(move |text| o.write(text));
    let o = output.clone();
    engine.on_debug(move |text, _, _| o.write(text));
    let started = Instant::now();
    let deadline = limits.deadline;
    let cancel = ctx.cancel.clone();
    let stop = Arc::new(Mutex::new(None::<Stop>));
    let flag = stop.clone();
    let memory_at_start = super::budget::held();
    let (max_memory, over_output) = (limits.max_memory as isize, output.over.clone());
    engine.on_progress(move |_| {
        let why = if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            Some(Stop::Cancelled)
        } else if started.elapsed() > deadline {
            Some(Stop::Deadline)
        } else if super::budget::held().saturating_sub(memory_at_start) > max_memory {
            Some(Stop::Memory)
        } else if over_output.load(Ordering::Relaxed) {
            Some(Stop::Output)
        } else {
            None
        };
        let why = why?;
        if let Ok(mut f) = flag.lock() {
            *f = Some(why);
        }
        Some(Dynamic::from("stopped"))
    });
    let mut scope = Scope::new();
    let mut vars = Map::new();
    for (k, v) in &ctx.vars {
        vars.insert(k.as_str().into(), Dynamic::from(v.clone()));
    }
    scope.push_constant("vars", vars);
    scope.push_constant("stage", ctx.stage.clone());
    scope.push_constant("env_name", ctx.env_name.clone());
    scope.push_constant(
        "response",
        match &ctx.response {
            Some(r) => Dynamic::from_map(r.to_map()),
            None => Dynamic::UNIT,
        },
    );
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
    let logs = logs.lock().map(|l| l.clone()).unwrap_or_default();
    let stopped = stop.lock().ok().and_then(|s| *s);
    let result = match result {
        Ok(v) => verdict(v, logs, &redact),
        Err(e) => Err(failure(*e, stopped, &limits)),
    };
    // Whatever the script says passes the redactor before anything cuts it.
    result.map_err(|f| scrub(f, &redact))
}

/// Why the progress callback stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    Deadline,
    Memory,
    Output,
}

/// The lines a script writes, within its output budget; past it, `over` stops the script at its
/// next operation (a thrown error could be caught by the script; this cannot).
#[derive(Clone)]
pub(crate) struct Output {
    pub lines: Arc<Mutex<Vec<String>>>,
    pub over: Arc<AtomicBool>,
    used: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
    redact: crate::redact::Redactor,
}

impl Output {
    fn new(max: usize, redact: crate::redact::Redactor) -> Output {
        Output {
            lines: Arc::new(Mutex::new(Vec::new())),
            over: Arc::new(AtomicBool::new(false)),
            used: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max,
            redact,
        }
    }

    /// Keep one line, or note that the budget is spent.
    pub(super) fn write(&self, text: &str) {
        let used = self.used.fetch_add(text.len() + 1, Ordering::Relaxed) + text.len() + 1;
        if used > self.max {
            self.over.store(true, Ordering::Relaxed);
            return;
        }
        if let Ok(mut lines) = self.lines.lock() {
            let text = text.replace(std::any::type_name::<api::Secret>(), "secret");
            lines.push(self.redact.redact(&text));
        }
    }
}

/// The Rust name of the secret type must not reach people; and no secret either.
fn scrub(f: HookFailure, redact: &crate::redact::Redactor) -> HookFailure {
    let clean =
        |s: String| redact.redact(&s.replace(std::any::type_name::<api::Secret>(), "secret"));
    match f {
        HookFailure::Thrown {
            message,
            line,
            column,
        } => HookFailure::Thrown {
            message: clean(message),
            line,
            column,
        },
        HookFailure::Limit { what, line, column } => HookFailure::Limit {
            what: clean(what),
            line,
            column,
        },
        HookFailure::BadReturn { found } => HookFailure::BadReturn {
            found: clean(found),
        },
        other => other,
    }
}

fn verdict(
    v: Dynamic,
    logs: Vec<String>,
    redact: &crate::redact::Redactor,
) -> Result<Outcome, HookFailure> {
    if let Some(b) = v.clone().try_cast::<bool>() {
        return Ok(Outcome {
            ok: b,
            message: None,
            logs,
        });
    }
    if let Some(m) = v.clone().try_cast::<Map>() {
        let ok = m.get("ok").and_then(|x| x.clone().try_cast::<bool>());
        let message = m.get("message").map(|x| redact.redact(&x.to_string()));
        if let Some(ok) = ok {
            return Ok(Outcome { ok, message, logs });
        }
        return Err(HookFailure::BadReturn {
            found: "a map without a boolean `ok`".into(),
        });
    }
    Err(HookFailure::BadReturn {
        found: format!(
            "`{}` ({})",
            shorten(&redact.redact(&v.to_string())),
            api::type_name(&v)
        ),
    })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn failure(e: EvalAltResult, stopped: Option<Stop>, limits: &Limits) -> HookFailure {
    let pos = e.position();
    let (line, column) = (pos.line(), pos.position());
    match e {
        EvalAltResult::ErrorTerminated(..) => match stopped {
            Some(Stop::Deadline) => HookFailure::Timeout(limits.deadline),
            Some(Stop::Memory) => HookFailure::Limit {
                what: format!(
                    "the script's values outgrew its memory budget of {} MiB",
                    limits.max_memory >> 20
                ),
                line,
                column,
            },
            Some(Stop::Output) => HookFailure::Limit {
                what: format!(
                    "the script wrote more than its output budget of {} KiB (log, print, debug)",
                    limits.max_output >> 10
                ),
                line,
                column,
            },
            Some(Stop::Cancelled) | None => HookFailure::Cancelled,
        },
        EvalAltResult::ErrorTooManyOperations(_) => HookFailure::Limit {
            what: "too many operations (an endless loop?)".into(),
            line,
            column,
        },
        EvalAltResult::ErrorStackOverflow(_) => HookFailure::Limit {
            what: "calls nested too deeply (endless recursion?)".into(),
            line,
            column,
        },
        EvalAltResult::ErrorDataTooLarge(what, _) => HookFailure::Limit {
            what: format!("{what} too large"),
            line,
            column,
        },
        EvalAltResult::ErrorRuntime(value, _) => HookFailure::Thrown {
            message: value.to_string(),
            line,
            column,
        },
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => failure(*inner, stopped, limits),
        other => HookFailure::Thrown {
            message: other
                .to_string()
                .split(" (line")
                .next()
                .unwrap_or_default()
                .to_string(),
            line,
            column,
        },
    }
}
