//! `--events FILE` and `--ipfix-collector ADDR:PORT`: the engine's session events, in capture
//! time, as JSON lines (`crate::event_log`, committed atomically at the end) and as IPFIX
//! NAT events (`crate::ipfix`, sent as the replay goes). Drained every `DRAIN_EVERY` frames,
//! so the engine's bounded queue never fills.

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use netnat_engine::{Event, Nat};

use super::output::AtomicFile;
use super::sessions::rfc3339_micros;
use crate::event_log::EventLine;
use crate::ipfix::{ExportedEvent, IpfixExporter};

/// Frames between two drains of the engine's event queue (a frame makes a few events at
/// most, a timer call at most a sweep step's worth: far below the queue's bound).
pub const DRAIN_EVERY: u64 = 256;

/// The IPFIX observation domain a replay exports in.
const OBSERVATION_DOMAIN: u32 = 1;

/// Where a replay's events go.
pub struct EventWriter {
    file: Option<BufWriter<AtomicFile>>,
    ipfix: Option<(SocketAddr, IpfixExporter)>,
    nat_name: String,
    batch: Vec<Event>,
    /// Events drained so far.
    pub drained: u64,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").field("nat_name", &self.nat_name).field("drained", &self.drained).finish()
    }
}

impl EventWriter {
    /// Events of NAT `nat_name` to `file` (created atomically, at `finish`) and/or an IPFIX
    /// `collector`; `None` when neither is asked for.
    pub fn create(file: Option<&Path>, collector: Option<SocketAddr>, nat_name: &str) -> anyhow::Result<Option<Self>> {
        if file.is_none() && collector.is_none() {
            return Ok(None);
        }
        let file = file.map(|p| AtomicFile::create(p).map(BufWriter::new)).transpose()?;
        let ipfix = collector
            .map(|c| {
                IpfixExporter::new(c, OBSERVATION_DOMAIN)
                    .map(|e| (c, e))
                    .with_context(|| format!("--ipfix-collector {c}: cannot open a UDP socket to it"))
            })
            .transpose()?;
        Ok(Some(EventWriter { file, ipfix, nat_name: nat_name.to_owned(), batch: Vec::new(), drained: 0 }))
    }

    /// Writes and sends the events `nat` queued since the last call.
    pub fn drain(&mut self, nat: &Nat) -> anyhow::Result<()> {
        nat.drain_events(&mut self.batch);
        if self.batch.is_empty() {
            return Ok(());
        }
        if let Some(out) = self.file.as_mut() {
            for e in &self.batch {
                let line = EventLine::new(&self.nat_name, rfc3339_micros(e.time.as_micros()), e);
                out.write_all(line.to_line().as_bytes()).context("writing --events")?;
            }
        }
        if let Some((collector, exporter)) = self.ipfix.as_mut() {
            let name = self.nat_name.as_str();
            let exported: Vec<ExportedEvent<'_>> = self
                .batch
                .iter()
                .map(|e| ExportedEvent { epoch_ms: e.time.as_micros() / 1000, nat_name: name, event: *e })
                .collect();
            // Export time: the capture time of the newest event (a replay has no other clock).
            let export_time = exported.last().map_or(0, |e| (e.epoch_ms / 1000) as u32);
            exporter.export(export_time, &exported).with_context(|| format!("sending IPFIX to {collector}"))?;
        }
        self.drained += self.batch.len() as u64;
        self.batch.clear();
        Ok(())
    }

    /// Writes and sends what is left and commits the file; an event queue that overflowed is
    /// an error (a replay's events are complete or not written).
    pub fn finish(mut self, nat: &Nat) -> anyhow::Result<u64> {
        self.drain(nat)?;
        anyhow::ensure!(
            nat.events_lost() == 0,
            "--events: {} events were lost (the queue overflowed)",
            nat.events_lost()
        );
        if let Some(out) = self.file {
            let file = out.into_inner().map_err(|e| e.into_error()).context("writing --events")?;
            file.commit()?;
        }
        Ok(self.drained)
    }
}
