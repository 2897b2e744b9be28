//! The daemon's session events: every engine queues them (`Nat::set_events`, turned on for
//! every instance the dataplane makes), and one supervised pump thread drains them every
//! `PUMP_INTERVAL` and hands each, as a JSON line (`crate::event_log`), to the event log
//! (`--event-log`, rotated by size) and to the `Get-NetNatSession -Watch` clients, and as
//! an IPFIX NAT event (`crate::ipfix`) to `--ipfix-collector`.
//!
//! A NAT removed since the last round is drained once more (its engines live as long as the
//! pump holds them), so the `removed` events of Remove-NetNat reach the log. A watcher that
//! does not keep up misses lines (its channel is bounded) rather than slowing the others; the
//! log gets every line.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use netnat_engine::Event;
use parking_lot::Mutex;

use super::clock::Clock;
use super::dataplane::{Dataplane, LiveNat};
use crate::event_log::{EventLine, RotatingLog};
use crate::ipfix::{ExportedEvent, IpfixExporter};

/// How often the pump drains the engines (an event reaches the log and watchers this late).
pub const PUMP_INTERVAL: Duration = Duration::from_millis(100);

/// Lines a watcher may fall behind by before it misses some.
const WATCHER_BACKLOG: usize = 4096;

/// Where events go.
#[derive(Debug, Default)]
pub struct EventHub {
    log: Mutex<Option<RotatingLog>>,
    ipfix: Mutex<Option<IpfixExporter>>,
    watchers: Mutex<Vec<SyncSender<Arc<str>>>>,
}

impl EventHub {
    /// A hub writing to `log` and exporting to `ipfix`, if given.
    pub fn new(log: Option<RotatingLog>, ipfix: Option<IpfixExporter>) -> Arc<EventHub> {
        Arc::new(EventHub { log: Mutex::new(log), ipfix: Mutex::new(ipfix), watchers: Mutex::new(Vec::new()) })
    }

    /// Hands the events of one round (with their NAT's name) to every output: lines to the log
    /// and the watchers, IPFIX records to the collector.
    pub fn publish_events(&self, events: &[(Arc<str>, Event)], clock: Clock) {
        if events.is_empty() {
            return;
        }
        // Lines are made only for someone to read (the daemon's engines always queue events).
        if self.log.lock().is_some() || !self.watchers.lock().is_empty() {
            let lines: Vec<String> =
                events.iter().map(|(nat, e)| EventLine::new(nat, clock.format_rfc3339(e.time), e).to_line()).collect();
            self.publish(&lines);
        }
        if let Some(exporter) = self.ipfix.lock().as_mut() {
            let exported: Vec<ExportedEvent<'_>> = events
                .iter()
                .map(|(nat, e)| ExportedEvent { epoch_ms: clock.epoch_millis(e.time), nat_name: nat, event: *e })
                .collect();
            let export_time = (clock.epoch_millis(clock.now()) / 1000) as u32;
            if let Err(e) = exporter.export(export_time, &exported) {
                tracing::warn!("cannot send IPFIX to the collector: {e}");
            }
        }
    }

    /// A new watcher: every line from now on, until the receiver is dropped.
    pub fn subscribe(&self) -> Receiver<Arc<str>> {
        let (tx, rx) = sync_channel(WATCHER_BACKLOG);
        self.watchers.lock().push(tx);
        rx
    }

    /// Hands `lines` to the log and the watchers (dropping watchers that went away).
    pub fn publish(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        if let Some(log) = self.log.lock().as_mut() {
            let written = lines.iter().try_for_each(|l| log.write_line(l)).and_then(|()| log.flush());
            if let Err(e) = written {
                tracing::warn!("cannot write the event log: {e}");
            }
        }
        let mut watchers = self.watchers.lock();
        if watchers.is_empty() {
            return;
        }
        // One shared copy of each line for all the watchers.
        let shared: Vec<Arc<str>> = lines.iter().map(|l| Arc::from(l.as_str())).collect();
        watchers.retain(|w| {
            shared.iter().all(|l| match w.try_send(Arc::clone(l)) {
                Ok(()) | Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            })
        });
    }
}

/// Drains every engine of `plane` every `PUMP_INTERVAL` into `hub`, forever.
pub fn pump(plane: &Dataplane, clock: Clock, hub: &EventHub) {
    let mut previous: Arc<Vec<Arc<LiveNat>>> = plane.nats();
    let mut batch: Vec<Event> = Vec::new();
    let mut named: Vec<(Arc<str>, Event)> = Vec::new();
    loop {
        std::thread::sleep(PUMP_INTERVAL);
        let current = plane.nats();
        let gone = previous.iter().filter(|p| !current.iter().any(|c| Arc::ptr_eq(c, p)));
        for nat in current.iter().chain(gone) {
            let name: Arc<str> = Arc::from(nat.name.as_str());
            for inst in nat.instances().iter() {
                inst.nat.drain_events(&mut batch);
                named.extend(batch.drain(..).map(|e| (Arc::clone(&name), e)));
            }
        }
        hub.publish_events(&named, clock);
        named.clear();
        previous = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_get_every_line_after_they_subscribe_and_leaving_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let hub = EventHub::new(Some(RotatingLog::open(&path, 1 << 20, 1).unwrap()), None);
        hub.publish(&["{\"n\":0}\n".into()]);
        let first = hub.subscribe();
        let second = hub.subscribe();
        hub.publish(&["{\"n\":1}\n".into(), "{\"n\":2}\n".into()]);
        drop(second);
        hub.publish(&["{\"n\":3}\n".into()]);
        let got: Vec<String> = first.try_iter().map(|l| l.to_string()).collect();
        assert_eq!(got, ["{\"n\":1}\n", "{\"n\":2}\n", "{\"n\":3}\n"]);
        assert_eq!(hub.watchers.lock().len(), 1, "the dropped watcher is gone");
        let log = std::fs::read_to_string(&path).unwrap();
        assert_eq!(log, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n", "the log has every line");
    }
}
