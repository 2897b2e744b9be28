//! `netnat daemon`: the live NAT.

use std::process::ExitCode;

/// Arguments of `netnat daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {}

/// Runs the daemon in the foreground.
pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("netnat daemon is not implemented yet")
}
