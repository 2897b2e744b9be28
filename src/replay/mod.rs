//! `netnat replay`: pcap in, translated pcap (or annotated pcapng) out (design §3.1).
//!
//! Reads a pcap or pcapng capture, hands every IPv4 packet to the engine with the packet's
//! timestamp as the clock, and writes what the engine forwards — translated, in input order,
//! with its input timestamp and link header — to a pcap of the same link type, or to a
//! pcapng whose every packet has a comment saying what the engine did (`-o x.pcapng`).
//! Frames without IPv4 pass through unchanged. Optional outputs: the dropped packets
//! (`--drops`), the session table (`--sessions-json`) and the counters (`--stats-json`).
//! Every output is written atomically (see [`output`]). `--expect` compares the output with
//! an expected capture and exits with [`expect::EXIT_DIFFERS`] when they differ. Settings
//! come from flags and/or a TOML `--config` file.
//!
//! Files: [`args`] (flags and value parsers), [`config_file`] (TOML), [`plan`] (checks and
//! engine configuration), [`translate`] (the loop), [`sink`] (where its frames go: pcap,
//! annotated pcapng, the recorder `--expect` uses), [`output`] (atomic files), [`dissect`]
//! (packets as named fields), [`expect`] (the comparison), [`sessions`] and [`summary`]
//! (what is reported).

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use netnat_capture::pcap::{LinkType, PcapNgWriter, PcapReader, PcapWriter};
use std::sync::Arc;

use crate::daemon::dataplane::{Addressing, Dataplane, LiveNat, Template};

pub mod args;
pub mod capture;
pub mod config_file;
pub mod dissect;
pub mod events;
pub mod expect;
pub mod output;
pub mod plan;
pub mod sessions;
pub mod sink;
pub mod summary;
pub mod translate;

pub use args::ReplayArgs;

use args::{CaptureFormat, NatSettings};
use events::EventWriter;
use output::AtomicFile;
use plan::Plan;
use sink::{AnnotatedPcapNg, Fanout, Recorded, Recorder, Sink};
use summary::StatsReport;

/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// Runs `netnat replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let file_settings = match &args.config {
        Some(path) => config_file::load(path)?,
        None => NatSettings::default(),
    };
    let plan = Plan::from_settings(args.settings.or(file_settings))?;
    // The daemon's dataplane with one NAT of one engine, which sees every packet.
    let template = Template { config: plan.nat.clone(), addressing: Addressing::Explicit };
    let live = LiveNat::new(plan.nat.name.clone(), template, &[], &[]).context("invalid NAT settings")?;
    live.set_policy_module(plan.policy_module.clone());
    let engine = Arc::clone(&live.instances()[0]);
    let nat = &engine.nat;
    let plane = Dataplane::with_one_engine(live);

    let mut reader = PcapReader::open(&args.input)?;
    let link_type = reader.link_type();
    // The expected capture is read first: a missing or broken one fails before any work.
    let expected = plan.expect.as_ref().map(|(path, _)| read_capture(path)).transpose()?;
    let mut drops = plan.drops.as_ref().map(|(path, format)| create(path, *format, link_type)).transpose()?;
    let mut events = EventWriter::create(plan.events.as_deref(), plan.ipfix_collector, &plan.nat.name)?;
    nat.set_events(events.is_some());

    let progress = progress_bar(&args.input, args.quiet);
    let mut recorded: Vec<Recorded> = Vec::new();
    let counts = match (&plan.output, &plan.expect) {
        (Some((path, CaptureFormat::Pcap)), None) => {
            // The plain pcap path, which bench/replay measures: the writer is called directly.
            let mut out = Box::new(PcapWriter::new(AtomicFile::create(path)?, link_type, path)?);
            let counts =
                translate::replay(&mut reader, &plane, &mut *out, drops.as_deref_mut(), events.as_mut(), &progress)?;
            progress.finish_and_clear();
            out.finish()?;
            counts
        }
        (output, expect) => {
            let mut sinks: Vec<Box<dyn Sink + '_>> = Vec::new();
            if let Some((path, format)) = output {
                sinks.push(create(path, *format, link_type)?);
            }
            if expect.is_some() {
                sinks.push(Box::new(Recorder { frames: &mut recorded }));
            }
            let mut out = Box::new(Fanout::new(sinks));
            let counts =
                translate::replay(&mut reader, &plane, &mut *out, drops.as_deref_mut(), events.as_mut(), &progress)?;
            progress.finish_and_clear();
            out.finish()?;
            counts
        }
    };
    if let Some(drops) = drops {
        drops.finish()?;
    }
    if let Some(events) = events {
        events.finish(nat)?;
    }
    let stats = nat.stats();
    if let Some(path) = &plan.sessions_json {
        let detailed_at = plan.sessions_detailed.then(|| netnat_engine::Instant::from_micros(counts.clock_end_micros));
        output::write_json(path, &sessions::rows(&nat.sessions(), detailed_at))?;
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
            policy_module_errors: plan.policy_module.as_ref().map(|m| m.errors()),
        };
        output::write_json(path, &report)?;
    }
    if !args.quiet {
        let input = args.input.display().to_string();
        let out = match &plan.output {
            Some((path, _)) if path == Path::new("-") => "stdout".to_owned(),
            Some((path, _)) => path.display().to_string(),
            None => "no file (no -o; compared with --expect)".to_owned(),
        };
        eprintln!("{}", summary::paragraph(&input, &out, &counts, &stats));
        if let Some(m) = plan.policy_module.as_ref().filter(|m| m.errors() > 0) {
            eprintln!(
                "policy module {}: {} decisions failed, handled as its on_error says; the last: {}",
                m.file(),
                m.errors(),
                m.last_error().unwrap_or_default()
            );
        }
    }
    let (Some((path, ignore)), Some((expected_link, expected))) = (&plan.expect, expected) else {
        return Ok(ExitCode::SUCCESS);
    };
    let options = expect::Options {
        ignore: ignore.clone(),
        external_addresses: plan.nat.external_addresses.iter().map(|e| e.address).collect(),
    };
    let report = expect::compare(
        expect::Capture { link_type: expected_link, frames: &expected },
        expect::Capture { link_type, frames: &recorded },
        &options,
    );
    let name = path.display().to_string();
    if report.matches() {
        if !args.quiet {
            eprintln!("{}", report.render(&name));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The differences are the result of the run: printed even with -q.
    eprintln!("{}", report.render(&name));
    Ok(ExitCode::from(expect::EXIT_DIFFERS))
}

/// An output file (`-o`, `--drops`) of `format` for frames of `link_type`.
fn create(path: &Path, format: CaptureFormat, link_type: LinkType) -> anyhow::Result<Box<dyn Sink>> {
    let file = AtomicFile::create(path)?;
    Ok(match format {
        CaptureFormat::Pcap => Box::new(PcapWriter::new(file, link_type, path)?),
        CaptureFormat::Pcapng => {
            let application = concat!("netnat ", env!("CARGO_PKG_VERSION"), " (replay)");
            Box::new(AnnotatedPcapNg::new(PcapNgWriter::new(file, link_type, application, path)?))
        }
    })
}

/// Every frame of the capture at `path` (`--expect`).
fn read_capture(path: &Path) -> anyhow::Result<(LinkType, Vec<Recorded>)> {
    let mut reader = PcapReader::open(path).context("cannot read the --expect capture")?;
    let link_type = reader.link_type();
    let mut frames = Vec::new();
    for frame in &mut reader {
        let frame = frame.context("cannot read the --expect capture")?;
        frames.push(Recorded { timestamp_micros: frame.timestamp_micros, data: frame.data });
    }
    Ok((link_type, frames))
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
