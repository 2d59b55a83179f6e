//! One stdio server process: spawned in its own process group with a parent-death
//! signal, its stdin fed by a writer task, its stdout read line by line with a bound,
//! its stderr logged with the session, and ended politely (stdin closed, then SIGTERM,
//! then SIGKILL to the whole group).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

pub use crate::lines::Line;
use crate::lines::LineReader;

/// What to run. Fixed by the operator: nothing a client sends reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    /// The program (looked up in `PATH` when it has no `/`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set on top of sluice's own environment.
    pub env: Vec<(String, String)>,
    /// The working directory (sluice's own when `None`).
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Display for StdioCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// The process could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the stdio server `{command}`: {source}")]
pub struct SpawnError {
    /// The command line, for the log.
    pub command: String,
    /// The cause (not found, permission denied, bad working directory...).
    #[source]
    pub source: std::io::Error,
}

/// A running server process. Dropping it kills the process group at once; [`stop`]
/// ends it politely.
///
/// [`stop`]: Process::stop
pub struct Process {
    pid: u32,
    /// Lines for the server's stdin (the writer task adds the newline). Dropped to
    /// close stdin.
    stdin: Option<mpsc::Sender<Bytes>>,
    /// Set once the process has exited (with how), by the waiter task.
    exited: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).finish()
    }
}

/// How the process and its readers report to the bridge.
pub struct Outputs {
    /// Lines from stdout, in order; ends when stdout closes.
    pub stdout: mpsc::Receiver<Line>,
}

impl Process {
    /// Starts `command` with piped stdio, in a new process group, with
    /// `PR_SET_PDEATHSIG` (Linux) so it dies with sluice even on SIGKILL. `label`
    /// names it in log lines (the session). Must run on a runtime worker thread, not
    /// the blocking pool: the parent-death signal follows the *thread* that forked,
    /// and the blocking pool retires idle threads.
    pub fn spawn(
        command: &StdioCommand,
        label: &str,
        max_line_bytes: usize,
    ) -> Result<(Process, Outputs), SpawnError> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own group: `npx`/`uvx` start the real server as a grandchild, and
            // ending the session must end all of them.
            .process_group(0);
        if let Some(cwd) = &command.cwd {
            cmd.current_dir(cwd);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| SpawnError {
            command: command.to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let (line_tx, line_rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(write_lines(stdin, line_rx, label.to_string()));
        let (out_tx, out_rx) = mpsc::channel::<Line>(64);
        tokio::spawn(async move {
            let mut lines = LineReader::new(stdout, max_line_bytes);
            // A read error ends the stream as its end would: the process is going.
            while let Ok(Some(line)) = lines.next().await {
                if out_tx.send(line).await.is_err() {
                    break;
                }
            }
        });
        let stderr_label = label.to_string();
        tokio::spawn(async move {
            // Bounded like stdout: a server that floods stderr costs log lines, not memory.
            let mut lines = LineReader::new(stderr, 8 << 10);
            while let Ok(Some(line)) = lines.next().await {
                match line {
                    Line::Text(text) => tracing::info!(
                        session = %stderr_label, pid,
                        "stdio server: {}", String::from_utf8_lossy(&text)
                    ),
                    Line::TooLong(len) => tracing::info!(
                        session = %stderr_label, pid,
                        "stdio server: ({len} bytes on stderr without a newline, not logged)"
                    ),
                }
            }
        });
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(wait(child, exit_tx));
        Ok((
            Process {
                pid,
                stdin: Some(line_tx),
                exited,
            },
            Outputs { stdout: out_rx },
        ))
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where lines for stdin go (the writer adds the newline; sending waits while the
    /// server is not reading). `None` once stdin is being closed.
    pub fn stdin(&self) -> Option<mpsc::Sender<Bytes>> {
        self.stdin.clone()
    }

    /// Becomes `Some(how)` when the process has exited.
    pub fn exited(&self) -> watch::Receiver<Option<String>> {
        self.exited.clone()
    }

    /// Ends the process as the MCP stdio transport asks: close its stdin and wait up
    /// to `grace`, then SIGTERM the group and wait `grace`, then SIGKILL the group.
    /// Whatever is left of the group (a grandchild that outlived its parent) is
    /// killed too.
    pub async fn stop(mut self, grace: Duration) {
        self.stdin = None;
        let mut exited = self.exited.clone();
        let done = |exited: &mut watch::Receiver<Option<String>>| {
            let exited = exited.clone();
            async move {
                let mut exited = exited;
                let _ = exited.wait_for(Option::is_some).await;
            }
        };
        if tokio::time::timeout(grace, done(&mut exited))
            .await
            .is_err()
        {
            self.signal_group(rustix::process::Signal::TERM);
            if tokio::time::timeout(grace, done(&mut exited))
                .await
                .is_err()
            {
                self.signal_group(rustix::process::Signal::KILL);
                let _ = done(&mut exited).await;
            }
        }
        // Drop: SIGKILL to stragglers of the group.
    }

    fn signal_group(&self, signal: rustix::process::Signal) {
        if self.pid == 0 {
            return;
        }
        if let Some(pgid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The group outlives its leader while any member lives, so its id stays taken
        // and cannot name another group; once every member is gone the kill fails
        // harmlessly (ESRCH).
        self.signal_group(rustix::process::Signal::KILL);
    }
}

/// Reaps the child and says how it ended.
async fn wait(mut child: Child, exit_tx: watch::Sender<Option<String>>) {
    let how = match child.wait().await {
        Ok(status) => status.to_string(),
        Err(e) => format!("cannot be waited for: {e}"),
    };
    exit_tx.send_replace(Some(how));
}

/// Feeds stdin, one message per line; stops when the channel closes (closing stdin)
/// or the server stops reading (broken pipe).
async fn write_lines(mut stdin: ChildStdin, mut lines: mpsc::Receiver<Bytes>, label: String) {
    while let Some(line) = lines.recv().await {
        let written = async {
            stdin.write_all(&line).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!(session = %label, "stdio server's stdin closed: {e}");
            break;
        }
    }
}

/// Linux: the child gets SIGKILL when the thread that spawned it ends (sluice killed,
/// even by SIGKILL, or crashed), so a server never outlives its proxy.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: prctl(2), getppid(2) and _exit(2) are plain
    // system calls that neither allocate nor take locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will send
            // the signal, so go now.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
