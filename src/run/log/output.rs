//! What a run prints, drawn from its events ([`RunEvent`]): the journal and the output name the
//! same facts the same way. For people: a header, a header per stage, one line per statement
//! with its elapsed time (a spinner while it runs, only on a terminal), rollback steps and a
//! summary, failures rendered at their playbook line on stderr. With `--format json`: every
//! event, one JSON object a line on stdout, exactly as the journal holds it (plus `elapsed_ms`).
//! Every line passes the [`Redactor`].

use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::run::log::events::RunEvent;
use crate::run::Redactor;
use crate::source::SourceMap;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
    /// Nothing on the terminal (`ktplay test`: the journal holds the events).
    Quiet,
}

/// Prints a run's events.
pub(crate) struct Reporter {
    format: Format,
    colour: bool,
    terminal: bool,
    redact: Redactor,
    spinner: Option<ProgressBar>,
    started: Instant,
    /// The playbook's sources, for failures rendered at their line.
    sources: SourceMap,
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Ok,
    Failed,
    Skipped,
}

impl Reporter {
    pub(crate) fn new(format: Format, redact: Redactor, sources: SourceMap) -> Reporter {
        let terminal = std::io::stdout().is_terminal();
        Reporter {
            format,
            colour: terminal && std::env::var_os("NO_COLOR").is_none(),
            terminal,
            redact,
            spinner: None,
            started: Instant::now(),
            sources,
        }
    }

    /// Show one event: a JSON line, or what a person reads of it.
    pub(crate) fn show(&mut self, ev: &RunEvent) {
        match self.format {
            Format::Json => self.json(ev),
            Format::Human => self.human(ev),
            Format::Quiet => {}
        }
    }

    fn json(&mut self, ev: &RunEvent) {
        let mut v = serde_json::to_value(ev).unwrap_or_default();
        v["elapsed_ms"] = json!(self.started.elapsed().as_millis() as u64);
        let text = self.redact.redact(&v.to_string());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn human(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::RunStart { playbook, env, at } => {
                let label = if at.rehearsal { "rehearsal of" } else { "run" };
                let t = format!(
                    "{label} playbook \"{playbook}\" on env {env} (namespace {}, digest {}, lock {})",
                    at.namespace,
                    &at.digest[..12.min(at.digest.len())],
                    at.lock
                );
                self.header(&t)
            }
            RunEvent::Resume {
                playbook,
                env,
                at,
                rollback,
            } => {
                let label = if at.rehearsal { "rehearsal of" } else { "run" };
                let t = match rollback {
                    None => format!(
                        "{label} playbook \"{playbook}\" on env {env} (namespace {}, digest {}, lock {}), resuming",
                        at.namespace,
                        &at.digest[..12.min(at.digest.len())],
                        at.lock
                    ),
                    Some(r) => format!(
                        "{label} playbook \"{playbook}\" on env {env} (namespace {}, lock {}), resuming the rollback after stage {} failed: {} of {} steps done",
                        at.namespace, at.lock, r.failed_stage, r.done, r.steps
                    ),
                };
                self.header(&t)
            }
            RunEvent::DriftAccepted { message } => {
                self.line(&format!("accepting drift (--accept-drift): {message}"))
            }
            RunEvent::Note { message } => self.line(message),
            // The counts after each statement are for the journal; the last ones are shown.
            RunEvent::Monitor(r) if r.last => {
                let verdict = match r.verdict.as_str() {
                    "exceeded" => self.paint("1;31", "budget exceeded"),
                    "ok" => self.paint("32", "within budget"),
                    v => v.to_string(),
                };
                let budget = if r.budget.is_empty() {
                    String::new()
                } else {
                    format!(" (budget {})", r.budget)
                };
                self.line(&format!(
                    "monitor {} ({}): {}; {verdict}{budget}",
                    r.name,
                    r.probe,
                    r.words()
                ))
            }
            RunEvent::Monitor(_) => {}
            RunEvent::Stage { name, line, .. } => {
                let t = self.paint("1;36", &format!("stage {name}"));
                self.line(&format!("\n{t}  (line {line})"))
            }
            RunEvent::Start { statement, .. } | RunEvent::RollbackStep { statement, .. } => {
                self.begin(statement)
            }
            RunEvent::Skipped { statement, .. } => self.end(
                "  ",
                statement,
                Mark::Skipped,
                Duration::ZERO,
                Some("done before the interruption; not repeated"),
            ),
            RunEvent::Guard {
                statement,
                ok,
                detail,
                message,
                duration_ms,
                ..
            } => self.end(
                "    ",
                statement,
                mark(*ok),
                Duration::from_millis(*duration_ms),
                said(*ok, detail, message),
            ),
            RunEvent::End {
                statement,
                ok,
                detail,
                message,
                duration_ms,
                ..
            } => self.end(
                "  ",
                statement,
                mark(*ok),
                Duration::from_millis(*duration_ms),
                said(*ok, detail, message),
            ),
            RunEvent::Hazard {
                code,
                severity,
                message,
                help,
                line,
                statement,
                allowed,
                ..
            } => {
                self.stop_spinner();
                let allowed = if *allowed { " (allowed)" } else { "" };
                let text = format!(
                    "{severity}[{code}]{allowed}: line {line} `{statement}`: {message}\n  help: {help}\n"
                );
                eprint!("{}", self.redact.redact(&text));
            }
            RunEvent::Refused { message, help } => {
                self.stop_spinner();
                let text = match help {
                    Some(h) => format!("refused: {message}\n  help: {h}\n"),
                    None => format!("refused: {message}\n"),
                };
                eprint!("{}", self.redact.redact(&text));
                self.summary(false, &format!("refused before any action: {message}"));
            }
            RunEvent::Failed {
                message,
                help,
                span,
                ..
            } => self.failure(*span, message, help.as_deref(), "this failed"),
            RunEvent::RollbackBegin { steps, .. } => {
                if *steps > 0 {
                    self.stop_spinner();
                    let t = self.paint(
                        "1;33",
                        &format!(
                            "rolling back: {steps} step{} (the failed stage first, then completed stages newest first)",
                            if *steps == 1 { "" } else { "s" }
                        ),
                    );
                    self.line(&format!("\n{t}"))
                }
            }
            RunEvent::RollbackEnd {
                statement,
                ok,
                detail,
                message,
                duration_ms,
                span,
                ..
            } => {
                self.end(
                    "    ↩ ",
                    statement,
                    mark(*ok),
                    Duration::from_millis(*duration_ms),
                    said(*ok, detail, message),
                );
                if !ok {
                    let m = message.as_deref().unwrap_or("failed");
                    self.failure(
                        *span,
                        &format!("rollback step failed: {m}"),
                        Some("the rollback stopped here; the steps below did not run"),
                        "this rollback step failed",
                    );
                }
            }
            RunEvent::RunEnd {
                status, message, ..
            } => {
                if !message.is_empty() {
                    self.summary(status == "succeeded", message)
                }
            }
            RunEvent::First { .. }
            | RunEvent::Record { .. }
            | RunEvent::Halted { .. }
            | RunEvent::Aborted { .. } => {}
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&mut self, text: &str) {
        let text = self.redact.redact(text);
        if let Some(sp) = &self.spinner {
            sp.suspend(|| println!("{text}"));
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn header(&mut self, text: &str) {
        let t = self.paint("1", text);
        self.line(&t)
    }

    /// A statement begins: a spinner on a terminal.
    fn begin(&mut self, text: &str) {
        if self.terminal {
            self.stop_spinner();
            let sp = ProgressBar::new_spinner();
            sp.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            sp.set_message(self.redact.redact(text));
            sp.enable_steady_tick(Duration::from_millis(100));
            self.spinner = Some(sp);
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(sp) = self.spinner.take() {
            sp.finish_and_clear();
        }
    }

    fn end(
        &mut self,
        indent: &str,
        text: &str,
        mark: Mark,
        elapsed: Duration,
        detail: Option<&str>,
    ) {
        // A guard line inside a canary keeps the canary's spinner going.
        if indent != "    " {
            self.stop_spinner();
        }
        let sym = match mark {
            Mark::Ok => self.paint("32", "✓"),
            Mark::Failed => self.paint("31", "✗"),
            Mark::Skipped => self.paint("2", "–"),
        };
        let mut s = format!(
            "{indent}{sym} {text}  {}",
            self.paint("2", &format!("({})", fmt_elapsed(elapsed)))
        );
        if let Some(d) = detail {
            s.push_str(&format!("\n      {d}"));
        }
        self.line(&s)
    }

    fn summary(&mut self, good: bool, text: &str) {
        self.stop_spinner();
        let t = self.paint(if good { "1;32" } else { "1;31" }, text);
        let took = fmt_elapsed(self.started.elapsed());
        self.line(&format!("\n{t}  (total {took})"))
    }

    /// A failure on stderr, at its playbook line when it has one.
    fn failure(
        &mut self,
        span: Option<crate::span::Span>,
        message: &str,
        help: Option<&str>,
        label: &str,
    ) {
        self.stop_spinner();
        let rendered = match span {
            Some(span) => {
                crate::run::render_failure(&self.sources, span, message, help, label, self.colour)
            }
            None => match help {
                Some(h) => format!("error: {message}\n  help: {h}\n"),
                None => format!("error: {message}\n"),
            },
        };
        eprint!("{}", self.redact.redact(&rendered));
    }
}

fn mark(ok: bool) -> Mark {
    if ok {
        Mark::Ok
    } else {
        Mark::Failed
    }
}

/// What a statement's line says under it: its detail when it passed, why when it failed.
fn said<'a>(ok: bool, detail: &'a Option<String>, message: &'a Option<String>) -> Option<&'a str> {
    if ok {
        detail.as_deref().filter(|d| !d.is_empty())
    } else {
        message.as_deref()
    }
}

/// `850ms`, `3.2s`, `1m05s`.
pub(crate) fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
