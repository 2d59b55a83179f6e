//! Shared helpers for the integration tests. Not every case uses every helper.
#![allow(dead_code)]

pub mod authz;
pub mod client;
pub mod mcp;
pub mod peers;
pub mod plugin_log;
pub mod proxy;
pub mod raw;
pub mod stdio;
pub mod tls;

/// Runs `bash SCRIPT ARGS...` (its stdout dropped when `quiet`); `Err` says why it
/// failed, for a panic that names the script: the set-up scripts the tests run once
/// (building a missing plugin, installing the peers).
pub fn run_bash(script: &std::path::Path, args: &[&str], quiet: bool) -> Result<(), String> {
    let mut command = std::process::Command::new("bash");
    command.arg(script).args(args);
    if quiet {
        command.stdout(std::process::Stdio::null());
    }
    let status = command.status().map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or(format!("exit {status}"))
}
