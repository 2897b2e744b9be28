//! `netnat replay`: pcap in, translated pcap out.

use std::process::ExitCode;

/// Arguments of `netnat replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `netnat replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("netnat replay is not implemented yet")
}
