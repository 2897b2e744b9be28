//! `netnat replay`: pcap in, translated pcap out (design §3.1).
//!
//! Reads a pcap or pcapng capture, hands every IPv4 packet to the engine with the packet's
//! timestamp as the clock, and writes what the engine forwards — translated, in input order,
//! with its input timestamp and link header — to a pcap of the same link type. Frames without
//! IPv4 pass through unchanged. Optional outputs: the dropped packets (`--drops`), the session
//! table (`--sessions-json`) and the counters (`--stats-json`). Every output is written
//! atomically (see [`output`]). Settings come from flags and/or a TOML `--config` file.
//!
//! Files: [`args`] (flags and value parsers), [`config_file`] (TOML), [`plan`] (checks and
//! engine configuration), [`translate`] (the loop), [`output`] (atomic files), [`sessions`]
//! and [`summary`] (what is reported).

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use netnat_capture::pcap::{PcapReader, PcapWriter};
use netnat_engine::Nat;

pub mod args;
pub mod config_file;
pub mod dissect;
pub mod output;
pub mod plan;
pub mod sessions;
pub mod summary;
pub mod translate;

pub use args::ReplayArgs;

use args::NatSettings;
use output::AtomicFile;
use plan::Plan;
use summary::StatsReport;
use translate::Sinks;

/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// Runs `netnat replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let file_settings = match &args.config {
        Some(path) => config_file::load(path)?,
        None => NatSettings::default(),
    };
    let plan = Plan::from_settings(args.settings.or(file_settings))?;
    let nat = Nat::new(plan.nat.clone()).context("invalid NAT settings")?;

    let mut reader = PcapReader::open(&args.input)?;
    let link_type = reader.link_type();
    let create = |path: &Path| -> anyhow::Result<PcapWriter<AtomicFile>> {
        Ok(PcapWriter::new(AtomicFile::create(path)?, link_type, path)?)
    };
    let mut sinks = Sinks { output: create(&plan.output)?, drops: plan.drops.as_deref().map(create).transpose()? };

    let progress = progress_bar(&args.input, args.quiet);
    let counts = translate::replay(&mut reader, &nat, &mut sinks, &progress)?;
    progress.finish_and_clear();

    sinks.output.finish()?.commit()?;
    if let Some(drops) = sinks.drops {
        drops.finish()?.commit()?;
    }
    let stats = nat.stats();
    if let Some(path) = &plan.sessions_json {
        output::write_json(path, &sessions::rows(&nat.sessions()))?;
    }
    if let Some(path) = &plan.stats_json {
        let report = StatsReport {
            nat_name: &plan.nat.name,
            packets_read: counts.packets_read,
            packets_written: counts.packets_written,
            non_ipv4: counts.non_ipv4,
            packets_dropped: stats.dropped_total(),
            fragments_released: counts.released,
            timestamps_out_of_order: counts.timestamps_out_of_order,
            engine: &stats,
        };
        output::write_json(path, &report)?;
    }
    if !args.quiet {
        let input = args.input.display().to_string();
        let out = if plan.output == Path::new("-") { "stdout".to_owned() } else { plan.output.display().to_string() };
        eprintln!("{}", summary::paragraph(&input, &out, &counts, &stats));
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar over the input's bytes, drawn only when stderr is a terminal and the input
/// is large enough to wait for.
fn progress_bar(input: &Path, quiet: bool) -> ProgressBar {
    let len = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    if quiet || len < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("replaying {}", input.display()));
    bar
}
