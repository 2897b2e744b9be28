//! `--events FILE`: the engine's session events as JSON lines (`crate::event_log`), in
//! capture time, written as the replay goes (drained every `DRAIN_EVERY` frames, so the
//! engine's bounded queue never fills) and committed atomically at the end.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use netnat_engine::{Event, Nat};

use super::output::AtomicFile;
use super::sessions::rfc3339_micros;
use crate::event_log::EventLine;

/// Frames between two drains of the engine's event queue (a frame makes a few events at
/// most, a timer call at most a sweep step's worth: far below the queue's bound).
pub const DRAIN_EVERY: u64 = 256;

/// Writes a replay's events.
pub struct EventWriter {
    out: BufWriter<AtomicFile>,
    nat_name: String,
    batch: Vec<Event>,
    /// Events written so far.
    pub written: u64,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").field("nat_name", &self.nat_name).field("written", &self.written).finish()
    }
}

impl EventWriter {
    /// Creates `path` (atomically, at `finish`) for the events of NAT `nat_name`.
    pub fn create(path: &Path, nat_name: &str) -> anyhow::Result<EventWriter> {
        let file = AtomicFile::create(path)?;
        Ok(EventWriter { out: BufWriter::new(file), nat_name: nat_name.to_owned(), batch: Vec::new(), written: 0 })
    }

    /// Writes the events `nat` queued since the last call.
    pub fn drain(&mut self, nat: &Nat) -> anyhow::Result<()> {
        nat.drain_events(&mut self.batch);
        for e in self.batch.drain(..) {
            let line = EventLine::new(&self.nat_name, rfc3339_micros(e.time.as_micros()), &e);
            self.out.write_all(line.to_line().as_bytes()).context("writing --events")?;
            self.written += 1;
        }
        Ok(())
    }

    /// Writes what is left and commits the file; an event queue that overflowed is an error
    /// (a replay's events are complete or not written).
    pub fn finish(mut self, nat: &Nat) -> anyhow::Result<u64> {
        self.drain(nat)?;
        anyhow::ensure!(
            nat.events_lost() == 0,
            "--events: {} events were lost (the queue overflowed)",
            nat.events_lost()
        );
        let file = self.out.into_inner().map_err(|e| e.into_error()).context("writing --events")?;
        file.commit()?;
        Ok(self.written)
    }
}
