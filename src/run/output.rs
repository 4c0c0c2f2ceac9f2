//! What a run prints: for people, a header per stage, one line per statement with its elapsed
//! time (a spinner while it runs, only on a terminal), rollback steps and a summary; with
//! `--format json`, one JSON event per line on stdout. Every line passes the [`Redactor`].

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::Redactor;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// Prints a run.
pub struct Reporter {
    format: Format,
    colour: bool,
    terminal: bool,
    redact: Redactor,
    spinner: Option<ProgressBar>,
    started: Instant,
    /// Lines also kept in memory (tests, the summary).
    pub quiet: bool,
}

/// The share of traffic a replica-ratio canary really takes: "1 canary pod beside 3: 25% of
/// pods" (`weight 10%` of 3 replicas still starts one pod).
pub fn pod_share(canary: i64, stable: i64) -> String {
    let total = (canary + stable).max(1);
    let share = canary as f64 * 100.0 / total as f64;
    let share = if share.fract() == 0.0 {
        format!("{share:.0}")
    } else {
        format!("{share:.1}")
    };
    format!(
        "{canary} canary pod{} beside {stable}: {share}% of pods",
        if canary == 1 { "" } else { "s" }
    )
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Failed,
    Skipped,
}

impl Reporter {
    pub fn new(format: Format, redact: Redactor) -> Reporter {
        let terminal = std::io::stdout().is_terminal();
        Reporter {
            format,
            colour: terminal && std::env::var_os("NO_COLOR").is_none(),
            terminal,
            redact,
            spinner: None,
            started: Instant::now(),
            quiet: false,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn colour(&self) -> bool {
        self.colour
    }

    pub fn set_redactor(&mut self, r: Redactor) {
        self.redact = r;
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let text = self.redact.redact(text);
        if let Some(sp) = &self.spinner {
            sp.suspend(|| println!("{text}"));
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// Emit one JSON event (json format only).
    pub fn event(&mut self, mut v: Value) {
        if self.format != Format::Json || self.quiet {
            return;
        }
        v["elapsed_ms"] = json!(self.started.elapsed().as_millis() as u64);
        let text = self.redact.redact(&v.to_string());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// A note for people (`note` event in JSON).
    pub fn note(&mut self, text: &str) {
        match self.format {
            Format::Human => self.line(text),
            Format::Json => self.event(json!({"event": "note", "message": text})),
        }
    }

    /// Run header.
    pub fn header(&mut self, text: &str, detail: Value) {
        match self.format {
            Format::Human => {
                let t = self.paint("1", text);
                self.line(&t)
            }
            Format::Json => {
                let mut v = detail;
                v["event"] = json!("run");
                v["message"] = json!(text);
                self.event(v)
            }
        }
    }

    /// A stage begins.
    pub fn stage(&mut self, name: &str, line: usize) {
        match self.format {
            Format::Human => {
                let t = self.paint("1;36", &format!("stage {name}"));
                self.line(&format!("\n{t}  (line {line})"))
            }
            Format::Json => self.event(json!({"event": "stage", "stage": name, "line": line})),
        }
    }

    /// A statement begins: a spinner on a terminal.
    pub fn begin(&mut self, text: &str) {
        if self.format == Format::Human && self.terminal && !self.quiet {
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

    /// A statement ended.
    #[allow(clippy::too_many_arguments)]
    pub fn end(
        &mut self,
        stage: &str,
        line: usize,
        text: &str,
        mark: Mark,
        elapsed: Duration,
        detail: Option<&str>,
        rollback: bool,
    ) {
        self.stop_spinner();
        match self.format {
            Format::Human => {
                let sym = match mark {
                    Mark::Ok => self.paint("32", "✓"),
                    Mark::Failed => self.paint("31", "✗"),
                    Mark::Skipped => self.paint("2", "–"),
                };
                let indent = if rollback { "    ↩ " } else { "  " };
                let mut s = format!(
                    "{indent}{sym} {text}  {}",
                    self.paint("2", &format!("({})", fmt_elapsed(elapsed)))
                );
                if let Some(d) = detail {
                    s.push_str(&format!("\n      {d}"));
                }
                self.line(&s)
            }
            Format::Json => self.event(json!({
                "event": if rollback { "rollback_step" } else { "statement" },
                "stage": stage,
                "line": line,
                "statement": text,
                "status": match mark { Mark::Ok => "ok", Mark::Failed => "failed", Mark::Skipped => "skipped" },
                "duration_ms": elapsed.as_millis() as u64,
                "detail": detail,
            })),
        }
    }

    /// Rollback begins.
    pub fn rollback_header(&mut self, text: &str) {
        self.stop_spinner();
        match self.format {
            Format::Human => {
                let t = self.paint("1;33", text);
                self.line(&format!("\n{t}"))
            }
            Format::Json => self.event(json!({"event": "rollback", "message": text})),
        }
    }

    /// The final summary.
    pub fn summary(&mut self, outcome: &str, text: &str, detail: Value) {
        self.stop_spinner();
        match self.format {
            Format::Human => {
                let code = if outcome == "succeeded" {
                    "1;32"
                } else {
                    "1;31"
                };
                let t = self.paint(code, text);
                let took = fmt_elapsed(self.started.elapsed());
                self.line(&format!("\n{t}  (total {took})"))
            }
            Format::Json => {
                let mut v = detail;
                v["event"] = json!("summary");
                v["outcome"] = json!(outcome);
                v["message"] = json!(text);
                self.event(v)
            }
        }
    }

    /// An error rendered for people (stderr), or an `error` event.
    pub fn error(&mut self, rendered: &str, message: &str) {
        self.stop_spinner();
        match self.format {
            Format::Human => {
                if !self.quiet {
                    eprint!("{}", self.redact.redact(rendered));
                }
            }
            Format::Json => self.event(json!({"event": "error", "message": message})),
        }
    }
}

/// `850ms`, `3.2s`, `1m05s`.
pub fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_canary_share_is_of_pods() {
        assert_eq!(super::pod_share(1, 3), "1 canary pod beside 3: 25% of pods");
        assert_eq!(
            super::pod_share(2, 10),
            "2 canary pods beside 10: 16.7% of pods"
        );
    }
}
