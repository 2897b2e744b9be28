//! The 13 NetNat cmdlets, as subcommands that talk to the daemon.

use std::process::ExitCode;

/// Where in `args` a cmdlet name stands (case-insensitive), if anywhere: global options such
/// as `--socket PATH` may come before it.
pub fn position_of_cmdlet(args: &[String]) -> Option<usize> {
    let _ = args;
    None
}

/// Runs the cmdlet at `args[at]`.
pub fn run(args: &[String], at: usize) -> anyhow::Result<ExitCode> {
    let _ = (args, at);
    anyhow::bail!("cmdlets are not implemented yet")
}
