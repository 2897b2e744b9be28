//! `netnat`: the command line. `netnat replay` translates a pcap through the engine;
//! `netnat daemon` runs the live NAT; the NetNat cmdlets (`netnat Get-NetNat`, ...) talk to
//! the daemon.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use netnat::{DaemonArgs, ReplayArgs};

#[derive(Debug, Parser)]
#[command(
    name = "netnat",
    version,
    about = "A userspace NAT with the semantics of Windows NAT (WinNAT)",
    after_help = "NetNat cmdlets (talk to a running daemon): New-NetNat, Get-NetNat, Set-NetNat, Remove-NetNat, \
Get-NetNatSession, Add-NetNatStaticMapping, Get-NetNatStaticMapping, Remove-NetNatStaticMapping, \
Add-NetNatExternalAddress, Get-NetNatExternalAddress, Remove-NetNatExternalAddress, Get-NetNatGlobal, Set-NetNatGlobal.\n\
Run `netnat <cmdlet> -?` for a cmdlet's parameters."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Translate a pcap/pcapng capture through the engine (no privileges needed).
    Replay(ReplayArgs),
    /// Run the live NAT in the foreground (root; NFQUEUE on Linux, WinDivert on Windows).
    Daemon(DaemonArgs),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The cmdlets take PowerShell's spelling (`-Name WinNAT`), which clap cannot parse, so
    // they are recognised before clap sees the arguments.
    if let Some(at) = netnat::position_of_cmdlet(&args) {
        return report(netnat::run_cmdlet(&args, at));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => netnat::run_replay(a),
        Command::Daemon(a) => netnat::run_daemon(a),
    };
    report(result)
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netnat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
