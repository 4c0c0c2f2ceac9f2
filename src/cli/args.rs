//! The command line as clap sees it: every command, its arguments and their help.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Zero-downtime upgrades of multi-component Kubernetes systems, written as playbooks.
#[derive(Debug, Parser)]
#[command(name = "ktplay", version, about, propagate_version = true, after_help = crate::exit::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Let playbooks name files (`use`, `guard hook`, a test's `playbook`) outside their tree:
    /// the repository they are in, or their folder when in none. Pseudo-files (/proc, /sys,
    /// /dev), FIFOs and devices are refused even so.
    #[arg(long, global = true)]
    pub allow_outside: bool,
}

impl Cli {
    /// The process's command line, parsed (exits on `--help`, `--version` and usage errors).
    pub fn from_env() -> Cli {
        Cli::from_args(std::env::args_os().collect())
    }

    /// `args` parsed, the program name first. `ktplay check …` (what editors, hooks and CI run,
    /// often once per file) is tried first with a parser of that subcommand alone: clap builds
    /// every subcommand's arguments before it parses, 17% of a one-file check's instructions.
    /// Whatever that parser does not accept (help, version, a mistake) is parsed again by the
    /// whole one, so every message is the same.
    pub fn from_args(args: Vec<std::ffi::OsString>) -> Cli {
        Cli::check_only(&args).unwrap_or_else(|| Cli::parse_from(args))
    }

    pub(super) fn check_only(args: &[std::ffi::OsString]) -> Option<Cli> {
        use clap::{Args, FromArgMatches};
        if args.get(1).is_none_or(|a| a != "check") {
            return None;
        }
        let parser = CheckArgs::augment_args(clap::Command::new("check"));
        let matches = parser.try_get_matches_from(&args[1..]).ok()?;
        let args = CheckArgs::from_arg_matches(&matches).ok()?;
        Some(Cli {
            command: Command::Check(args),
            allow_outside: false,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks for errors without touching any cluster (for CI).
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Explain a diagnostic code: what it means, a failing and a fixed example.
    #[command(
        after_help = "Examples:\n  ktplay explain                      # every code, one a line\n  ktplay explain unknown_component\n  ktplay explain ktplay::compat::incompatible"
    )]
    Explain {
        /// The code, with or without `ktplay::` (`check::unknown_component`), or its last part
        /// when that is unique (`unknown_component`). Without it, every code is listed.
        code: Option<String>,
    },
    /// Rewrite playbooks in the canonical layout (comments kept), or check that they are.
    #[command(
        after_help = "Examples:\n  ktplay fmt playbooks/                     # rewrite every *.ktplay file below\n  ktplay fmt --check playbooks/ tests/      # for CI: exit 1 and list the files not formatted\n  ktplay fmt --diff playbooks/a.ktplay      # show the change, write nothing\n  ktplay fmt - < a.ktplay                   # stdin to stdout (for editors)\n\nExit: 0 formatted (or already so); 1 files not formatted (--check, --diff) or with syntax errors;\n2 usage or I/O error."
    )]
    Fmt(super::fmt::FmtArgs),
    /// A language server on stdin/stdout, for editors (diagnostics, hover, go to definition,
    /// symbols, formatting).
    #[command(
        after_help = "Editors start it themselves; see editors/ (VS Code) in the repository.\nExample (Neovim): vim.lsp.start({ name = 'ktplay', cmd = { 'ktplay', 'lsp' } })"
    )]
    Lsp,
    /// Print a shell completion script for ktplay.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Show what a run would do in one env: statements, image changes, versions after each.
    #[command(
        after_help = "Examples:\n  ktplay plan playbooks/keeptrusts-1.5.ktplay --env staging\n  ktplay plan playbooks/keeptrusts-1.5.ktplay --env production --format json"
    )]
    Plan(PlanArgs),
    /// Show a compatibility matrix, or ask whether a state is allowed.
    #[command(subcommand)]
    Matrix(MatrixCommand),
    /// Run a playbook against a cluster: lock, journal, guards, rollback.
    #[command(
        after_help = "Examples:\n  ktplay run playbooks/keeptrusts-1.5.ktplay --env staging\n  ktplay run playbooks/keeptrusts-1.5.ktplay --env production --approve --journal prod.jsonl\n  ktplay run playbooks/keeptrusts-1.5.ktplay --env staging --resume      # after an interrupted run"
    )]
    Run(RunArgs),
    /// Run a playbook against the embedded simulator, with injected faults.
    #[command(
        after_help = "Examples:\n  ktplay rehearse playbooks/keeptrusts-1.5.ktplay --env staging --approve\n  ktplay rehearse playbooks/keeptrusts-1.5.ktplay --env staging --approve --fault never-ready:gateway@1.5.0"
    )]
    Rehearse(RehearseArgs),
    /// Run the `test` items of playbook files: each on its own simulator, on a virtual clock.
    Test(TestArgs),
    /// Show the run lock and the journal of a playbook in one env.
    #[command(
        after_help = "Example:\n  ktplay status playbooks/keeptrusts-1.5.ktplay --env production --format json"
    )]
    Status(StatusArgs),
    /// Remove a run lock whose holder is gone (its lease expired, or was not renewed while watched).
    Unlock(UnlockArgs),
    /// The simulated cluster.
    #[command(subcommand)]
    Sim(SimCommand),
}

/// How to reach the cluster (as kubectl).
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the env's `context`, then the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the env's, then the playbook's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// What the preflight's hazards do (issue 22): `ktplay explain hazard::CODE` for each.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HazardArgs {
    /// `warn` (default: print each hazard and go on) or `refuse` (exit 3 before any action
    /// when one is found); default $KTPLAY_HAZARDS, else warn.
    #[arg(long, value_name = "warn|refuse", value_parser = crate::run::kube::hazards::parse_mode)]
    pub hazards: Option<crate::run::kube::hazards::Mode>,
    /// A hazard code that never refuses (still printed), e.g. `no_pdb` (repeatable; also
    /// $KTPLAY_ALLOW_HAZARDS, comma-separated).
    #[arg(long, value_name = "CODE", value_parser = crate::run::kube::hazards::parse_code)]
    pub allow_hazard: Vec<crate::run::kube::hazard_rules::Code>,
    /// How long a deleted pod's endpoint may still get requests (EndpointSlice update plus
    /// every proxy's sync; default $KTPLAY_ENDPOINT_LAG, else 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub endpoint_lag: Option<std::time::Duration>,
    /// How long the app takes after SIGTERM to finish in-flight requests (default
    /// $KTPLAY_APP_DRAIN, else 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub app_drain: Option<std::time::Duration>,
}

impl HazardArgs {
    /// The settings: the flags over the environment over the defaults.
    pub fn settings(
        &self,
    ) -> Result<crate::run::kube::hazards::Settings, crate::run::kube::hazards::SettingError> {
        let mut s = crate::run::kube::hazards::Settings::from_env()?;
        if let Some(m) = self.hazards {
            s.mode = m;
        }
        s.allow.extend(self.allow_hazard.iter().copied());
        if let Some(d) = self.endpoint_lag {
            s.assume.endpoint_lag = d;
        }
        if let Some(d) = self.app_drain {
            s.assume.app_drain = d;
        }
        Ok(s)
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The playbook file.
    pub file: PathBuf,
    /// The env to run in (required when the playbook declares envs).
    #[arg(long)]
    pub env: Option<String>,
    /// Which playbook, when the file holds several.
    #[arg(long)]
    pub playbook: Option<String>,
    /// Which fleet, when the file holds several (a file with a `fleet` runs the fleet: each
    /// cluster in its own context, wave after wave).
    #[arg(long)]
    pub fleet: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub hazard: HazardArgs,
    /// Answer every `approve` with yes (for CI, once a person has agreed).
    #[arg(long)]
    pub approve: bool,
    /// Start from the live versions when they differ from the playbook's `from`.
    #[arg(long)]
    pub accept_drift: bool,
    /// Continue the interrupted run recorded in the journal.
    #[arg(long)]
    pub resume: bool,
    /// Also write the journal to this file, as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Send guard requests for HOST to BASE instead (a port-forward, a test double):
    /// `--route api.example.com=http://127.0.0.1:8080` (repeatable). Output still shows HOST.
    #[arg(long, value_name = "HOST=BASE")]
    pub route: Vec<String>,
    /// Read the journal of an env this one comes `after` (the promotion gate) from this
    /// kubeconfig context instead of that env's `context` (e.g. `staging=sim` when both envs
    /// run on one cluster; repeatable).
    #[arg(long, value_name = "ENV=CONTEXT")]
    pub after_context: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// The playbook file.
    pub file: PathBuf,
    /// The env to rehearse (required when the playbook declares envs).
    #[arg(long)]
    pub env: Option<String>,
    /// Which playbook, when the file holds several.
    #[arg(long)]
    pub playbook: Option<String>,
    /// Which fleet, when the file holds several (a file with a `fleet` rehearses the fleet; a
    /// fault for one cluster ends in `@CLUSTER`: never-ready:gateway@1.5.0@eu-west).
    #[arg(long)]
    pub fleet: Option<String>,
    /// Inject a fault: never-ready:COMPONENT@VERSION, policy-off:VERSION, migration-fails:VERSION,
    /// api-errors:SHARE, latency:DURATION, watch-cut, watch-expired, deny:VERB:RESOURCE[:NAMESPACE],
    /// error-rate:COMPONENT@VERSION=SHARE, latency:COMPONENT@VERSION=DURATION, no-prestop:COMPONENT,
    /// no-readiness:COMPONENT, grace:COMPONENT=DURATION (repeatable).
    #[arg(long, value_name = "FAULT")]
    pub fault: Vec<String>,
    /// Delay between simulated controller steps.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub pace: std::time::Duration,
    /// progressDeadlineSeconds of the simulated deployments (a stalled rollout fails after it).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub progress_deadline: std::time::Duration,
    /// Cut every wait to at most this (0s: no waiting): `pause`, a canary's `for`/`every`, a
    /// guard's `within`, a metric guard's `every`/`for` and its query's window; each cut is said.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub max_wait: std::time::Duration,
    /// Answer every `approve` with yes.
    #[arg(long)]
    pub approve: bool,
    /// Also write the journal to this file, as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    #[command(flatten)]
    pub hazard: HazardArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The playbook file.
    pub file: PathBuf,
    /// The env whose lock and journal to show (required when the playbook declares envs).
    #[arg(long)]
    pub env: Option<String>,
    /// Which playbook, when the file holds several.
    #[arg(long)]
    pub playbook: Option<String>,
    /// Which fleet, when the file holds several (a file with a `fleet` shows every cluster).
    #[arg(long)]
    pub fleet: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The lock id a refused run printed: NAMESPACE/LEASE/RUN_ID.
    #[arg(long = "force", value_name = "LOCK_ID", required = true)]
    pub lock_id: String,
    /// kubeconfig file.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulated Kubernetes API and services on loopback until Ctrl-C.
    Serve {
        /// API port (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Write a kubeconfig for the simulator here (context `sim`).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Seed from this playbook's components (at their `from` versions).
        #[arg(long, value_name = "PLAYBOOK")]
        seed: Option<PathBuf>,
        /// The env whose namespace to seed (with --seed).
        #[arg(long)]
        env: Option<String>,
        /// Inject a fault (repeatable).
        #[arg(long, value_name = "FAULT")]
        fault: Vec<String>,
        /// Delay between controller steps.
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        pace: std::time::Duration,
    },
    /// Serve one pod's app — the simulator's HTTP service of its role and version — as the real
    /// data path's pod process (tests/realkube/images.json); the harness sets the environment.
    App(Box<SimAppArgs>),
}

/// `ktplay sim app`: every flag also reads the variable the harness's node agent sets.
#[derive(Debug, clap::Args)]
pub struct SimAppArgs {
    /// The pod's IP.
    #[arg(long, env = "APP_ADDR", default_value = "127.0.0.1")]
    pub addr: std::net::IpAddr,
    /// The container's port.
    #[arg(long, env = "APP_PORT", default_value_t = 8080)]
    pub port: u16,
    /// The pod's name.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod: String,
    /// The pod's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The container's name.
    #[arg(long, env = "CONTAINER_NAME", default_value = "app")]
    pub container: String,
    /// The container's image; its tag is the version.
    #[arg(long, env = "APP_IMAGE")]
    pub image: String,
    /// The role, when no seeded component runs this image.
    #[arg(long, env = "APP_ROLE")]
    pub role: Option<String>,
    /// The folder of the namespaces' state files (seeded components, faults).
    #[arg(long, env = "KTPLAY_SIM_STATE")]
    pub state: Option<PathBuf>,
    /// Read the namespace through this kubeconfig (for what depends on other pods).
    #[arg(long, env = "KTPLAY_SIM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// A fault of this pod (repeatable), besides the state file's.
    #[arg(long, value_name = "FAULT")]
    pub fault: Vec<String>,
    /// Seconds before it listens (loading).
    #[arg(long, env = "APP_STARTUP_SECONDS", default_value_t = 0.0)]
    pub startup_seconds: f64,
    /// Milliseconds each request takes.
    #[arg(long, env = "APP_LATENCY_MS", default_value_t = 0.0)]
    pub latency_ms: f64,
    /// On SIGTERM: `exit` at once, or `drain` in-flight requests.
    #[arg(long, env = "APP_SHUTDOWN", default_value = "exit")]
    pub shutdown: String,
    /// Seconds a drain may take.
    #[arg(long, env = "APP_DRAIN_SECONDS", default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Lines to print at start (`\n` separates them; placeholders {tag}, {image}, {pod}, …).
    #[arg(long, env = "FAKE_LOG")]
    pub log: Option<String>,
}

/// Flags take durations exactly as playbooks write them (`500ms`, `30s`, `1m30s`): one parser.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::syntax::parse_duration(s.trim())
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The playbook file.
    pub file: PathBuf,
    /// The env to plan for (required when the playbook declares envs).
    #[arg(long)]
    pub env: Option<String>,
    /// Which playbook, when the file holds several.
    #[arg(long)]
    pub playbook: Option<String>,
    /// Which fleet, when the file holds several (a file with a `fleet` plans the fleet).
    #[arg(long)]
    pub fleet: Option<String>,
    /// Also read the live objects each action touches (only reads) and report the hazards
    /// that predict dropped requests; implied by --kubeconfig or --context.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub hazard: HazardArgs,
    /// Output format (sarif and github report the hazards only).
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
}

#[derive(Debug, Subcommand)]
pub enum MatrixCommand {
    /// Print a matrix as a table (default: the built-in `keeptrusts`).
    Show {
        /// The matrix (default: the one `--file` names or declares, else `keeptrusts`).
        name: Option<String>,
        /// Also look for the matrix in this file (and the files it uses).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Is a (mixed) state allowed? `ktplay matrix check api=1.5.0 gateway=1.4.1,1.5.0`
    Check {
        /// COMPONENT=VERSION[,VERSION…] for each component.
        #[arg(required = true, value_name = "COMPONENT=VERSIONS")]
        state: Vec<String>,
        /// The matrix to ask (default: the one the `--file` names or declares, else
        /// `keeptrusts`).
        #[arg(long)]
        matrix: Option<String>,
        /// Also look for the matrix in this file (and the files it uses).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Human,
    /// One JSON document (or one event a line for `run`).
    Json,
}

/// The formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Source excerpts with labels, on stderr (plus GitHub annotations on stdout when
    /// GITHUB_ACTIONS=true).
    Human,
    /// One JSON document on stdout.
    Json,
    /// SARIF 2.1.0 on stdout, for code-scanning uploads.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=…::…`) on stdout.
    Github,
}

const CHECK_EXAMPLES: &str = "\
Examples:
  ktplay check playbooks/                                  # every *.ktplay file below
  ktplay check --deny-warnings playbooks/keeptrusts-1.5.ktplay
  ktplay check --format sarif playbooks/ > ktplay.sarif    # for a code-scanning upload
  ktplay check --format github playbooks/                  # annotations on a pull request";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  ktplay completions bash > ~/.local/share/bash-completion/completions/ktplay
  ktplay completions zsh > ~/.zfunc/_ktplay                # with fpath+=(~/.zfunc) in .zshrc
  ktplay completions fish > ~/.config/fish/completions/ktplay.fish
  ktplay completions powershell >> $PROFILE";

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Files, or folders searched for *.ktplay files, holding `test` items.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Run only the test of this name (repeat for more).
    #[arg(long = "test", value_name = "NAME")]
    pub only: Vec<String>,
    /// Show each test's run as `ktplay run` shows it (stages, statements, guards, rollback).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// The most simulated time one test may take; a run still going then fails its test.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub time_limit: std::time::Duration,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Playbook files, or folders searched for *.ktplay files.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
    /// Count warnings as errors (exit 1 when there are any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// A PostgreSQL server (`postgres://user:password@host:port/db`): on a scratch database of
    /// its own, apply each component's migrations up to `to` and run the `queries` of `from`
    /// against them in a transaction that is rolled back. Never printed.
    #[arg(
        long,
        env = "KTPLAY_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
}
