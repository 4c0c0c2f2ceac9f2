//! The disruption monitor (issue 22, part 2): every `monitor` of the playbook and the env is
//! probed at its steady rate from before the first action until the run, or its rollback, ends.
//!
//! Each probe is its own task started on the endpoint's tick (a hung request never slows the
//! rate; each ends by its `timeout`). Results are folded in the order the probes were sent, so
//! an outage is a run of consecutive failed probes: from the first failure's send time to the
//! send time of the next success (or to the end). Failures by kind: `refused` (no connection),
//! `reset` (the connection broke, or the answer was cut short), `timeout`, `status` (an answer
//! other than the expected status). Bodies are read up to the cap of `run::http` (hostile
//! servers) and thrown away.
//!
//! A budget exceeded sends the reason on a watch channel; the driver fails the statement running
//! at that moment like a failed guard (its `Cancel` is interrupted, see [`Monitors::linked`]),
//! and rolls back. The numbers go into a typed event, [`MonitorReport`]: after every statement
//! (so a `--resume` continues counting, [`Monitors::resume_from`]) and once at the run's end.
//! Nothing shown names a secret: the URL is rendered for display (`(secret)`), errors of the
//! HTTP client are never printed (they can quote the URL), only their kind is counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::guards::UrlRewrite;
use super::Cancel;
use crate::program::{Monitor, MonitorBudget, Playbook};
use crate::resolve::{Mode, Scope};
use crate::syntax::format_duration;

/// One endpoint's numbers, as journaled and printed (`event: monitor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MonitorReport {
    /// The monitor's name.
    pub name: String,
    /// `METHOD url`, secrets shown as `(secret)`.
    #[serde(default)]
    pub probe: String,
    /// `true` once the run has ended (the last report); `false` for the counts so far.
    #[serde(default, rename = "final")]
    pub last: bool,
    pub requests: u64,
    pub failures: u64,
    #[serde(default)]
    pub refused: u64,
    #[serde(default)]
    pub reset: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub status: u64,
    /// The longest continuous outage, in milliseconds.
    #[serde(default)]
    pub longest_outage_ms: u64,
    /// Latency percentiles of the answered requests of this process, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The budget as written (`failures 0, outage 2s`), empty without one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub budget: String,
    /// `ok`, `exceeded`, or `no budget`.
    #[serde(default)]
    pub verdict: String,
    /// Requests counted by an earlier process of this run (`--resume`), included above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed_requests: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl MonitorReport {
    /// The numbers in words, for the human output, a failure's reason and JUnit.
    pub(crate) fn words(&self) -> String {
        let mut kinds = Vec::new();
        for (n, k) in [
            (self.refused, "refused"),
            (self.reset, "reset"),
            (self.timeout, "timeout"),
            (self.status, "status"),
        ] {
            if n > 0 {
                kinds.push(format!("{k} {n}"));
            }
        }
        let kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        };
        let lat = match (self.p50_ms, self.p90_ms, self.p99_ms) {
            (Some(a), Some(b), Some(c)) => {
                format!("; latency p50 {a:.1}ms p90 {b:.1}ms p99 {c:.1}ms")
            }
            _ => String::new(),
        };
        let resumed = if self.resumed_requests > 0 {
            format!(
                "; resumed: {} of these requests were counted before the interruption",
                self.resumed_requests
            )
        } else {
            String::new()
        };
        format!(
            "{} failed of {} requests{kinds}; longest outage {}{lat}{resumed}",
            self.failures,
            self.requests,
            format_duration(Duration::from_millis(self.longest_outage_ms)),
        )
    }
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Ok,
    Refused,
    Reset,
    Timeout,
    Status,
}

/// One probe, once it has ended: when it was sent (from the monitor's start), how it ended and
/// how long the answer took.
#[derive(Debug, Clone, Copy)]
struct Done {
    sent: Duration,
    outcome: Probe,
    latency: Duration,
}

/// The counts of one endpoint, folded in send order.
#[derive(Debug, Default)]
struct Tally {
    /// Probes ended, by sequence number, not yet folded (an earlier one is still in flight).
    pending: BTreeMap<u64, Done>,
    next: u64,
    requests: u64,
    failures: u64,
    refused: u64,
    reset: u64,
    timeout: u64,
    status: u64,
    /// The send time of the first failure of the outage going on.
    outage_since: Option<Duration>,
    longest: Duration,
    latencies_us: Vec<u32>,
    /// Counted by an earlier process of the run.
    resumed: u64,
}

impl Tally {
    fn fold(&mut self, seq: u64, d: Done) {
        self.pending.insert(seq, d);
        while let Some(d) = self.pending.remove(&self.next) {
            self.next += 1;
            self.requests += 1;
            match d.outcome {
                Probe::Ok => {
                    if let Some(since) = self.outage_since.take() {
                        self.longest = self.longest.max(d.sent.saturating_sub(since));
                    }
                    self.latencies_us
                        .push(d.latency.as_micros().min(u32::MAX as u128) as u32);
                }
                k => {
                    self.failures += 1;
                    match k {
                        Probe::Refused => self.refused += 1,
                        Probe::Reset => self.reset += 1,
                        Probe::Timeout => self.timeout += 1,
                        _ => self.status += 1,
                    }
                    if self.outage_since.is_none() {
                        self.outage_since = Some(d.sent);
                    }
                    if k == Probe::Status {
                        self.latencies_us
                            .push(d.latency.as_micros().min(u32::MAX as u128) as u32);
                    }
                }
            }
        }
    }

    /// The longest outage, counting one still going on until `now`.
    fn longest(&self, now: Duration) -> Duration {
        match self.outage_since {
            Some(since) => self.longest.max(now.saturating_sub(since)),
            None => self.longest,
        }
    }
}

/// One endpoint: what is sent, what is shown, and its tally.
struct Endpoint {
    name: String,
    probe: String,
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    bearer: Option<String>,
    expect: Option<u16>,
    every: Duration,
    timeout: Duration,
    budget: MonitorBudget,
    tally: Mutex<Tally>,
}

impl Endpoint {
    fn report(&self, now: Duration, last: bool) -> MonitorReport {
        let t = self.tally.lock().expect("monitor tally");
        let mut lat = t.latencies_us.clone();
        lat.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            if lat.is_empty() {
                return None;
            }
            let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            Some(lat[i] as f64 / 1000.0)
        };
        let mut r = MonitorReport {
            name: self.name.clone(),
            probe: self.probe.clone(),
            last,
            requests: t.requests,
            failures: t.failures,
            refused: t.refused,
            reset: t.reset,
            timeout: t.timeout,
            status: t.status,
            longest_outage_ms: t.longest(now).as_millis() as u64,
            p50_ms: pct(0.5),
            p90_ms: pct(0.9),
            p99_ms: pct(0.99),
            budget: budget_words(&self.budget),
            verdict: String::new(),
            resumed_requests: t.resumed,
        };
        r.verdict = match (self.budget.is_empty(), exceeded(&self.budget, &r, last)) {
            (true, _) => "no budget".into(),
            (false, Some(_)) => "exceeded".into(),
            (false, None) => "ok".into(),
        };
        r
    }
}

/// The budget as written.
pub(crate) fn budget_words(b: &MonitorBudget) -> String {
    let mut out = Vec::new();
    if let Some(n) = b.failures {
        out.push(format!("failures {n}"));
    }
    if let Some(p) = b.failure_percent {
        out.push(format!("failures {p}%"));
    }
    if let Some(d) = b.outage {
        out.push(format!("outage {}", format_duration(d)));
    }
    out.join(", ")
}

/// Below this many requests a share of failures is judged only at the run's end (one failure
/// of the first three requests is not yet "33% failed").
const MIN_REQUESTS_FOR_SHARE: u64 = 100;

/// Which limit of the budget the numbers break, in words; `None` if they hold.
fn exceeded(b: &MonitorBudget, r: &MonitorReport, last: bool) -> Option<String> {
    if let Some(n) = b.failures {
        if r.failures > n {
            let s = if r.failures == 1 { "" } else { "s" };
            return Some(format!(
                "{} failed request{s}, budget failures {n}",
                r.failures
            ));
        }
    }
    if let Some(p) = b.failure_percent {
        if r.requests > 0 && (last || r.requests >= MIN_REQUESTS_FOR_SHARE) {
            let share = r.failures as f64 * 100.0 / r.requests as f64;
            if share > p as f64 {
                return Some(format!(
                    "{share:.1}% of requests failed, budget failures {p}%"
                ));
            }
        }
    }
    if let Some(d) = b.outage {
        if Duration::from_millis(r.longest_outage_ms) > d {
            return Some(format!(
                "an outage of {}, budget outage {}",
                format_duration(Duration::from_millis(r.longest_outage_ms)),
                format_duration(d)
            ));
        }
    }
    None
}

/// The monitors of one run, probing until they are dropped.
pub(crate) struct Monitors {
    endpoints: Vec<Arc<Endpoint>>,
    tasks: Vec<JoinHandle<()>>,
    probes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    start: Instant,
    exceeded_tx: Arc<watch::Sender<Option<String>>>,
    exceeded_rx: watch::Receiver<Option<String>>,
    /// Once the run has failed or ended, a budget no longer fails anything.
    judging: Arc<std::sync::atomic::AtomicBool>,
}

/// Why the monitors could not start (a URL a rehearsal may not reach, a missing secret).
pub(crate) type StartError = String;

impl Monitors {
    /// Resolve the monitors of `env` and start probing. `None` when the playbook has none.
    pub(crate) fn start(
        pb: &Playbook,
        env: Option<&crate::program::Env>,
        live: &crate::resolve::Live,
        rewrite: &UrlRewrite,
    ) -> Result<Option<Monitors>, StartError> {
        let list: Vec<&Monitor> = pb.monitors_for(env.map(|e| e.name.as_str()));
        if list.is_empty() {
            return Ok(None);
        }
        let scope = Scope::new(pb, env, live);
        let mut endpoints = Vec::new();
        for m in list {
            let err = |e: crate::resolve::ResolveError| format!("monitor `{}`: {e}", m.name);
            let shown = scope.render(&m.probe.url, Mode::Display).map_err(err)?;
            let real = scope.render(&m.probe.url, Mode::Real).map_err(err)?;
            let url = rewrite
                .route(&real)
                .map_err(|e| format!("monitor `{}` ({shown}): {e}", m.name))?;
            let mut headers = Vec::new();
            for (k, v) in &m.probe.headers {
                headers.push((k.clone(), scope.render(v, Mode::Real).map_err(err)?));
            }
            let bearer = match &m.probe.bearer {
                Some(b) => Some(scope.let_value(b, Mode::Real).map_err(err)?),
                None => None,
            };
            let method = reqwest::Method::from_bytes(m.probe.method.as_bytes()).map_err(|_| {
                format!("monitor `{}`: `{}` is not a method", m.name, m.probe.method)
            })?;
            endpoints.push(Arc::new(Endpoint {
                name: m.name.clone(),
                probe: format!("{} {shown}", m.probe.method),
                method,
                url,
                headers,
                bearer,
                expect: m.probe.expect_status,
                every: m.every,
                timeout: m.timeout,
                budget: m.budget.clone(),
                tally: Mutex::new(Tally::default()),
            }));
        }
        // A new connection for every probe, as a new user opens one: a reused connection would
        // stay with one pod (and its end would be counted as that pod's, not the Service's).
        // Redirects are held to the guards' rule.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .redirect(super::guards::client::redirect_policy(
                super::guards::client::guard_rule(pb, env, rewrite),
            ))
            .build()
            .map_err(|e| format!("monitors: no HTTP client: {e}"))?;
        let (tx, rx) = watch::channel(None);
        let mut mons = Monitors {
            endpoints,
            tasks: Vec::new(),
            probes: Arc::new(Mutex::new(Vec::new())),
            start: Instant::now(),
            exceeded_tx: Arc::new(tx),
            exceeded_rx: rx,
            judging: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        for ep in mons.endpoints.clone() {
            let task = tokio::spawn(ticker(
                ep,
                http.clone(),
                mons.start,
                mons.probes.clone(),
                mons.exceeded_tx.clone(),
                mons.judging.clone(),
            ));
            mons.tasks.push(task);
        }
        Ok(Some(mons))
    }

    /// The endpoints, in words, for the run's first lines.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| {
                let budget = budget_words(&e.budget);
                format!(
                    "monitoring {} ({}) every {}, budget {}",
                    e.name,
                    e.probe,
                    format_duration(e.every),
                    if budget.is_empty() {
                        "none".into()
                    } else {
                        budget
                    }
                )
            })
            .collect()
    }

    /// Continue counting from an earlier process's last reports (`--resume`).
    pub(crate) fn resume_from(&self, earlier: &[MonitorReport]) {
        for e in &self.endpoints {
            let Some(r) = earlier.iter().rev().find(|r| r.name == e.name) else {
                continue;
            };
            let mut t = e.tally.lock().expect("monitor tally");
            // The journal is hostile input: numbers saturate, never overflow.
            t.requests = t.requests.saturating_add(r.requests);
            t.failures = t.failures.saturating_add(r.failures);
            t.refused = t.refused.saturating_add(r.refused);
            t.reset = t.reset.saturating_add(r.reset);
            t.timeout = t.timeout.saturating_add(r.timeout);
            t.status = t.status.saturating_add(r.status);
            t.longest = t.longest.max(Duration::from_millis(r.longest_outage_ms));
            t.resumed = t.resumed.saturating_add(r.requests);
        }
    }

    /// The reason of the first budget exceeded, if any.
    pub(crate) fn exceeded(&self) -> Option<String> {
        self.exceeded_rx.borrow().clone()
    }

    /// Judge the budgets once more with every number in (a share of failures is judged here
    /// even below its minimum of requests); the reason if one is exceeded.
    pub(crate) fn judge_now(&self) -> Option<String> {
        if let Some(r) = self.exceeded() {
            return Some(r);
        }
        let now = self.start.elapsed();
        for e in &self.endpoints {
            let r = e.report(now, true);
            if let Some(why) = exceeded(&e.budget, &r, true) {
                return Some(reason(&e.name, &why, &r));
            }
        }
        None
    }

    /// From now on a budget exceeded fails nothing (the run failed, or it is ending): probing
    /// goes on through the rollback.
    pub(crate) fn stop_judging(&self) {
        self.judging
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A `Cancel` for one statement: interrupted with the run's (every interrupt counted) and
    /// when a budget is exceeded. The task forwarding them ends with the statement (abort it).
    pub(crate) fn linked(&self, run: &Cancel) -> (Cancel, JoinHandle<()>) {
        let child = Cancel {
            signals_elsewhere: run.signals_elsewhere,
            ..Cancel::new()
        };
        let out = child.clone();
        let mut runs = run.rx.clone();
        let mut budget = self.exceeded_rx.clone();
        let task = tokio::spawn(async move {
            loop {
                let seen = *runs.borrow();
                while *child.rx.borrow() < seen {
                    child.interrupt();
                }
                // A budget exceeded interrupts once; the run's interrupts keep being forwarded
                // (a second Ctrl-C stops at once).
                if budget.borrow().is_some() && *child.rx.borrow() == 0 {
                    child.interrupt();
                }
                tokio::select! {
                    r = runs.changed() => if r.is_err() { return },
                    r = budget.changed(), if budget.borrow().is_none() => if r.is_err() { return },
                }
            }
        });
        (out, task)
    }

    /// Every endpoint's numbers so far (`last`: the run has ended).
    pub(crate) fn reports(&self, last: bool) -> Vec<MonitorReport> {
        let now = self.start.elapsed();
        self.endpoints.iter().map(|e| e.report(now, last)).collect()
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut p) = self.probes.lock() {
            for t in p.drain(..) {
                t.abort();
            }
        }
    }
}

/// The failure's message: the endpoint, the limit broken, and the numbers.
fn reason(name: &str, why: &str, r: &MonitorReport) -> String {
    format!(
        "monitor `{name}` ({}) exceeded its budget: {why} ({})",
        r.probe,
        r.words()
    )
}

/// One endpoint's steady rate: a probe task per tick.
async fn ticker(
    ep: Arc<Endpoint>,
    http: reqwest::Client,
    start: Instant,
    probes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    exceeded_tx: Arc<watch::Sender<Option<String>>>,
    judging: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(ep.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        let (ep, http, exceeded_tx, judging) = (
            ep.clone(),
            http.clone(),
            exceeded_tx.clone(),
            judging.clone(),
        );
        let n = seq;
        seq += 1;
        let task = tokio::spawn(async move {
            let sent = start.elapsed();
            let t0 = Instant::now();
            let outcome = probe(&ep, &http).await;
            let done = Done {
                sent,
                outcome,
                latency: t0.elapsed(),
            };
            ep.tally.lock().expect("monitor tally").fold(n, done);
            if judging.load(std::sync::atomic::Ordering::SeqCst) && exceeded_tx.borrow().is_none() {
                let r = ep.report(start.elapsed(), false);
                if let Some(why) = exceeded(&ep.budget, &r, false) {
                    exceeded_tx.send_if_modified(|v| {
                        if v.is_none() {
                            *v = Some(reason(&ep.name, &why, &r));
                            true
                        } else {
                            false
                        }
                    });
                }
            }
        });
        if let Ok(mut p) = probes.lock() {
            p.retain(|t| !t.is_finished());
            p.push(task);
        }
    }
}

/// Send one probe; how it ended. The body is read up to the cap and dropped.
async fn probe(ep: &Endpoint, http: &reqwest::Client) -> Probe {
    let mut req = http.request(ep.method.clone(), &ep.url).timeout(ep.timeout);
    for (k, v) in &ep.headers {
        req = req.header(k, v);
    }
    if let Some(b) = &ep.bearer {
        req = req.bearer_auth(b);
    }
    let exchange = async {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return kind_of(&e),
        };
        let status = resp.status().as_u16();
        if super::guards::client::read_body(resp, super::guards::client::max_body().min(1 << 20))
            .await
            .is_err()
        {
            // Cut short, or larger than a probe's answer may be: the answer did not arrive.
            return Probe::Reset;
        }
        let ok = match ep.expect {
            Some(s) => status == s,
            None => (200..300).contains(&status),
        };
        if ok {
            Probe::Ok
        } else {
            Probe::Status
        }
    };
    // reqwest's own timeout covers the body too; this one also holds on a paused clock.
    match tokio::time::timeout(ep.timeout, exchange).await {
        Ok(o) => o,
        Err(_) => Probe::Timeout,
    }
}

/// The kind of a failed request (the error itself is never shown: it can quote the URL).
fn kind_of(e: &reqwest::Error) -> Probe {
    if e.is_timeout() {
        return Probe::Timeout;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::AddrNotAvailable => return Probe::Refused,
                std::io::ErrorKind::TimedOut => return Probe::Timeout,
                _ => return Probe::Reset,
            }
        }
        src = inner.source();
    }
    if e.is_connect() {
        Probe::Refused
    } else {
        Probe::Reset
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;

/// Each monitor's last report in a run's journal, in the order they were first reported.
pub(crate) fn last_reports(events: &[super::log::events::Entry]) -> Vec<MonitorReport> {
    let mut out: Vec<MonitorReport> = Vec::new();
    for e in events {
        if let super::log::events::RunEvent::Monitor(r) = &e.event {
            match out.iter_mut().find(|o| o.name == r.name) {
                Some(o) => *o = r.clone(),
                None => out.push(r.clone()),
            }
        }
    }
    out
}

/// The driver's hooks: small, so `driver` stays about the loop.
pub(crate) mod hooks {
    use super::{MonitorReport, Monitors};
    use crate::run::context::Ctx;
    use crate::run::log::events::RunEvent;

    /// Start the run's monitors (before the first action), say what they watch, and on
    /// `--resume` continue the counts the earlier process journaled.
    pub(crate) async fn start(cx: &Ctx<'_>, resumed: bool) -> Result<Option<Monitors>, String> {
        let m = Monitors::start(&cx.pb, cx.env, &cx.live(), &cx.opts.rewrite)
            .map_err(|e| cx.redact.redact(&e))?;
        let Some(m) = m else { return Ok(None) };
        if resumed {
            let earlier: Vec<MonitorReport> = cx
                .log
                .journal()
                .map(|j| j.entries())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| match e.event {
                    RunEvent::Monitor(r) => Some(r),
                    _ => None,
                })
                .collect();
            if !earlier.is_empty() {
                m.resume_from(&earlier);
                cx.log
                    .note(RunEvent::Note {
                        message:
                            "monitors: resumed, continuing the counts of the interrupted process"
                                .into(),
                    })
                    .await;
            }
        }
        for line in m.describe() {
            cx.log.note(RunEvent::Note { message: line }).await;
        }
        Ok(Some(m))
    }

    /// The counts so far, journaled (after each statement) so a `--resume` continues them.
    pub(crate) async fn progress(cx: &Ctx<'_>, m: &Option<Monitors>) {
        if let Some(m) = m {
            for r in m.reports(false) {
                cx.log.note(RunEvent::Monitor(r)).await;
            }
        }
    }

    /// The final numbers, before the run's summary.
    pub(crate) async fn finish(cx: &Ctx<'_>, m: &Option<Monitors>) {
        if let Some(m) = m {
            m.stop_judging();
            for r in m.reports(true) {
                cx.log.note(RunEvent::Monitor(r)).await;
            }
        }
    }
}
