//! One exit-code table for every command (README, "Exit codes"; also in `ktplay --help`).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success: no errors (`check`, `plan`), allowed (`matrix check`), every statement passed (`run`) |
//! | 1 | failed: errors found (`check`, `plan`), forbidden (`matrix check`), a test failed (`test`), a statement failed and everything was rolled back (`run`) |
//! | 2 | usage or I/O error, for every command: bad arguments (as clap reports them), unreadable files, no kubeconfig, an unreachable cluster |
//! | 3 | refused before any action (`run`, `unlock`): check errors, drift, the lock held, a permission denied, … |
//! | 4 | failed and the rollback is incomplete, or halted (`on_failure halt`), or stopped by a second signal: `--resume` finishes it |
//! | 5 | stopped: this process lost the run lock; the new holder owns the system |
//! | 141 | the reader of stdout went away (`ktplay status \| head -1`) |

/// Success.
pub const OK: i32 = 0;
/// Errors found, a forbidden state, or a run that failed and rolled back fully.
pub const FAILED: i32 = 1;
/// `check` and `plan` found errors.
pub const FOUND_ERRORS: i32 = FAILED;
/// A run failed and everything was rolled back.
pub const ROLLED_BACK: i32 = FAILED;
/// Usage or I/O error (clap's own code for bad arguments too).
pub const USAGE: i32 = 2;
/// Refused before any action.
pub const REFUSED: i32 = 3;
/// Failed and the rollback is incomplete, halted, or stopped by a second signal.
pub const INCOMPLETE: i32 = 4;
/// This process lost the run lock.
pub const LOCK_LOST: i32 = 5;
/// The reader of stdout or stderr went away (128 + SIGPIPE, as the shell reports a tool killed
/// by it).
pub const BROKEN_PIPE: i32 = 141;

/// How a command ended, as the table above names it. Commands return it; [`Exit::code`] is the
/// one place it becomes the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Ok,
    /// 1: errors found, forbidden, a test failed, or a run that failed and rolled back fully.
    Failed,
    /// 2.
    Usage,
    /// 3.
    Refused,
    /// 4.
    Incomplete,
    /// 5.
    LockLost,
    /// 141.
    BrokenPipe,
    /// 128 + the signal: `ktplay test` stopped by one.
    Signal(i32),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => OK,
            Exit::Failed => FAILED,
            Exit::Usage => USAGE,
            Exit::Refused => REFUSED,
            Exit::Incomplete => INCOMPLETE,
            Exit::LockLost => LOCK_LOST,
            Exit::BrokenPipe => BROKEN_PIPE,
            Exit::Signal(n) => 128 + n,
        }
    }
}

/// The table as `--help` shows it.
pub const HELP: &str = "\
Exit codes (every command):
  0  success (no errors; allowed; every statement passed)
  1  failed (errors found; forbidden; a test failed; a statement failed and everything
     was rolled back)
  2  usage or I/O error (bad arguments, unreadable file, no kubeconfig, unreachable cluster)
  3  refused before any action (check errors, drift, lock held, permission denied, ...)
  4  failed and the rollback is incomplete, or halted, or stopped by a second signal
     (`ktplay run --resume` finishes it)
  5  stopped: this process lost the run lock; the new holder owns the system";
