//! The 13 NetNat cmdlets (and `Get-NetNatStatistics`), as subcommands that talk to the
//! daemon: `netnat New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16`.
//!
//! Global options, before or after the cmdlet name: `--socket PATH` (or `NETNAT_SOCKET`),
//! `-o json|list|all` (default list: PowerShell's Format-List; `all` adds netnat's own
//! properties after WinNAT's, as `Format-List *` would), `-?`/`--help`.

mod output;
mod params;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::control::client;
use crate::control::protocol::Reply;

pub use output::Format;

/// Where in `args` a cmdlet name stands (case-insensitive), if anywhere: global options such
/// as `--socket PATH` may come before it.
pub fn position_of_cmdlet(args: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if table::find(a).is_some() {
            return Some(i);
        }
        match global_option(a) {
            Some(GlobalOption::WithValue(_, None)) => i += 2,
            Some(_) => i += 1,
            None => return None,
        }
    }
    None
}

enum GlobalOption {
    WithValue(&'static str, Option<String>),
    Help,
}

fn global_option(arg: &str) -> Option<GlobalOption> {
    let (name, value) = match arg.split_once(['=', ':']) {
        Some((n, v)) if arg.starts_with('-') => (n, Some(v.to_owned())),
        _ => (arg, None),
    };
    match name.to_ascii_lowercase().as_str() {
        "--socket" | "-socket" => Some(GlobalOption::WithValue("socket", value)),
        "-o" | "--output" | "-output" => Some(GlobalOption::WithValue("output", value)),
        "-?" | "-h" | "--help" | "-help" => Some(GlobalOption::Help),
        _ => None,
    }
}

/// Runs the cmdlet at `args[at]`.
pub fn run(args: &[String], at: usize) -> anyhow::Result<ExitCode> {
    let cmdlet = table::find(&args[at]).context("not a cmdlet")?;
    let mut socket: Option<PathBuf> = None;
    let mut format = Format::List;
    let mut help = false;
    let mut rest = Vec::new();
    let all: Vec<&String> = args[1..at].iter().chain(args[at + 1..].iter()).collect();
    let mut i = 0;
    while i < all.len() {
        match global_option(all[i]) {
            Some(GlobalOption::Help) => help = true,
            Some(GlobalOption::WithValue(which, attached)) => {
                let value = match attached {
                    Some(v) => v,
                    None => {
                        i += 1;
                        all.get(i).map(|s| s.to_string()).with_context(|| {
                            format!(
                                "{} needs a value",
                                if which == "socket" { "--socket PATH" } else { "-o json|list|all" }
                            )
                        })?
                    }
                };
                if which == "socket" {
                    socket = Some(PathBuf::from(value));
                } else {
                    format = value.parse()?;
                }
            }
            None => rest.push(all[i].clone()),
        }
        i += 1;
    }
    if help {
        print!("{}", table::usage(cmdlet));
        return Ok(ExitCode::SUCCESS);
    }
    let call = table::build(cmdlet, &rest).map_err(|e| anyhow::anyhow!("{}: {e}", cmdlet.name))?;
    let socket = crate::control::socket_path(socket);
    if matches!(call.request, crate::control::protocol::Request::GetNetNatSession { watch: true, .. }) {
        return watch(cmdlet.name, &socket, &call.request, format);
    }
    let reply = client::call(&socket, &call.request)?;
    match reply {
        Reply::Ok { output, warnings } => {
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            if call.print {
                print!("{}", output::render(&output, format)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Reply::Error(e) => {
            eprintln!("{} : {e}", cmdlet.name);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `Get-NetNatSession -Watch`: prints each event line as it comes (JSON lines with `-o
/// json`, one readable line each otherwise) until the daemon stops or the user presses Ctrl+C.
fn watch(
    name: &str,
    socket: &std::path::Path,
    request: &crate::control::protocol::Request,
    format: Format,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let reply = client::stream(socket, request, |line| {
        let text = match format {
            Format::Json => format!("{line}\n"),
            _ => output::event_line(line),
        };
        let mut out = stdout.lock();
        // A closed stdout (the reader went away) ends the watch with the process.
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    })?;
    match reply {
        Reply::Error(e) => {
            eprintln!("{name} : {e}");
            Ok(ExitCode::FAILURE)
        }
        Reply::Ok { .. } => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn cmdlet_is_found_after_global_options_only() {
        assert_eq!(position_of_cmdlet(&v("netnat Get-NetNat")), Some(1));
        assert_eq!(position_of_cmdlet(&v("netnat get-netnat -o json")), Some(1));
        assert_eq!(position_of_cmdlet(&v("netnat --socket /tmp/s GET-NETNAT")), Some(3));
        assert_eq!(position_of_cmdlet(&v("netnat --socket=/tmp/s -o json Get-NetNatSession")), Some(4));
        assert_eq!(position_of_cmdlet(&v("netnat daemon --socket /tmp/s")), None);
        assert_eq!(position_of_cmdlet(&v("netnat replay in.pcap Get-NetNat")), None);
        assert_eq!(position_of_cmdlet(&v("netnat")), None);
    }
}
