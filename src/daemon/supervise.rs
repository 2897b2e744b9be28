//! Supervised threads: a daemon thread that ends (returns, fails or panics) is never silent.
//!
//! Every long-running thread of the daemon (NFQUEUE workers, the timer, the rule keeper, the
//! watcher) is started through a [`Supervisor`]; when one ends, the main thread hears of it,
//! logs which thread and why, and the daemon exits non-zero, so a service manager restarts
//! it. Meanwhile the kernel rules stay in place: the NATs' traffic fails closed instead of a
//! dead queue silently black-holing its share of flows while the cmdlets still answer.

// The Linux and Windows daemons supervise their threads; elsewhere there is no daemon.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;

/// What the main thread waits for.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal that asks the daemon to stop (SIGINT, SIGTERM).
    Signal(i32),
    /// A supervised thread ended.
    Died {
        /// Its name.
        thread: String,
        /// Why: its error, its panic message, or that it returned.
        why: String,
    },
}

/// Health of one supervised thread, for Get-NetNatStatistics.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ThreadHealth {
    /// Still running.
    pub alive: bool,
    /// Seconds since the daemon started at which the thread last handled a packet (workers).
    pub last_packet_s: Option<f64>,
}

/// Starts threads and reports their end to one receiver.
#[derive(Clone, Debug)]
pub struct Supervisor {
    events: mpsc::Sender<Event>,
    health: Arc<Mutex<BTreeMap<String, ThreadHealth>>>,
}

impl Supervisor {
    /// A supervisor and the receiver of its events.
    pub fn new() -> (Supervisor, mpsc::Receiver<Event>) {
        let (events, rx) = mpsc::channel();
        (Supervisor { events, health: Arc::default() }, rx)
    }

    /// Where signals are reported.
    pub fn events(&self) -> mpsc::Sender<Event> {
        self.events.clone()
    }

    /// Starts `f` on a thread named `name`; its end, whatever the cause, becomes an
    /// [`Event::Died`].
    pub fn spawn(&self, name: &str, f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
        let events = self.events.clone();
        let health = Arc::clone(&self.health);
        let thread = name.to_owned();
        health.lock().insert(thread.clone(), ThreadHealth { alive: true, last_packet_s: None });
        std::thread::Builder::new()
            .name(thread.clone())
            .spawn(move || {
                let why = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(Ok(())) => "it returned".to_owned(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(panic) => format!("it panicked: {}", panic_message(panic.as_ref())),
                };
                if let Some(h) = health.lock().get_mut(&thread) {
                    h.alive = false;
                }
                let _ = events.send(Event::Died { thread, why });
            })
            .map_err(|e| anyhow::anyhow!("starting thread {name}: {e}"))?;
        Ok(())
    }

    /// Records that `thread` handled a packet at `at_s` seconds since the start.
    pub fn packet_seen(&self, thread: &str, at_s: f64) {
        if let Some(h) = self.health.lock().get_mut(thread) {
            h.last_packet_s = Some(at_s);
        }
    }

    /// Every supervised thread's health, by name.
    pub fn health(&self) -> BTreeMap<String, ThreadHealth> {
        self.health.lock().clone()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn died(rx: &mpsc::Receiver<Event>) -> (String, String) {
        match rx.recv_timeout(Duration::from_secs(10)).expect("an event") {
            Event::Died { thread, why } => (thread, why),
            other => panic!("expected a death, got {other:?}"),
        }
    }

    #[test]
    fn a_thread_that_panics_fails_or_returns_is_reported_with_the_reason() {
        let (sup, rx) = Supervisor::new();
        sup.spawn("t-panic", || panic!("queue 3 exploded")).unwrap();
        let (thread, why) = died(&rx);
        assert_eq!(thread, "t-panic");
        assert!(why.contains("panicked") && why.contains("queue 3 exploded"), "{why}");
        sup.spawn("t-error", || Err(anyhow::anyhow!("NFQUEUE keeps failing"))).unwrap();
        assert_eq!(died(&rx), ("t-error".to_owned(), "NFQUEUE keeps failing".to_owned()));
        sup.spawn("t-return", || Ok(())).unwrap();
        assert_eq!(died(&rx).1, "it returned");
        let health = sup.health();
        assert!(health.values().all(|h| !h.alive), "{health:?}");
    }

    #[test]
    fn a_running_thread_is_alive_with_its_last_packet_time() {
        let (sup, _rx) = Supervisor::new();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        sup.spawn("t-worker", move || {
            let _ = stop_rx.recv();
            Ok(())
        })
        .unwrap();
        sup.packet_seen("t-worker", 12.5);
        assert_eq!(sup.health()["t-worker"], ThreadHealth { alive: true, last_packet_s: Some(12.5) });
        drop(stop_tx);
    }
}
