//! Fault injection for the end-to-end tests of supervision: a worker thread that dies must
//! end the daemon with a clear message and a non-zero exit, fail closed meanwhile. Nothing
//! outside the daemon can make a healthy NFQUEUE worker fail, so the tests ask for it:
//!
//! `NETNAT_FAULT=queue-worker-panic-after=N` makes the first queue's worker panic after it has
//! handled N batches. Unset (the normal case), nothing is injected and nothing is checked on
//! the packet path but one `Option`. The daemon logs a warning when a fault is armed.

/// The variable that arms a fault.
pub const VAR: &str = "NETNAT_FAULT";

/// What to break.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The first queue's worker panics after this many batches.
    pub queue_worker_panic_after: Option<u64>,
}

impl Faults {
    /// Parses `NETNAT_FAULT` (absent or empty: no fault).
    pub fn from_env() -> anyhow::Result<Faults> {
        match std::env::var(VAR) {
            Ok(text) => Faults::parse(&text),
            Err(_) => Ok(Faults::default()),
        }
    }

    fn parse(text: &str) -> anyhow::Result<Faults> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Faults::default());
        }
        let bad = || {
            anyhow::anyhow!("{VAR}={text:?} is not understood: the one fault is queue-worker-panic-after=N (a number of batches); unset {VAR} to run normally")
        };
        let (name, value) = text.split_once('=').ok_or_else(bad)?;
        match name {
            "queue-worker-panic-after" => {
                Ok(Faults { queue_worker_panic_after: Some(value.parse().map_err(|_| bad())?) })
            }
            _ => Err(bad()),
        }
    }
}

/// Counts a worker's batches and panics when the armed count is reached.
#[derive(Debug)]
pub struct PanicAfter {
    left: Option<u64>,
}

impl PanicAfter {
    /// Armed with `batches`, or never (`None`).
    pub fn new(batches: Option<u64>) -> PanicAfter {
        PanicAfter { left: batches }
    }

    /// One batch handled.
    pub fn batch(&mut self) {
        if let Some(left) = self.left.as_mut() {
            if *left == 0 {
                panic!("fault injected by {VAR}: queue worker panics as asked");
            }
            *left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_one_fault_and_refuses_anything_else() {
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        assert_eq!(Faults::parse("queue-worker-panic-after=3").unwrap().queue_worker_panic_after, Some(3));
        for bad in ["queue-worker-panic-after", "queue-worker-panic-after=x", "timer-panic=1"] {
            let e = Faults::parse(bad).unwrap_err().to_string();
            assert!(e.contains("queue-worker-panic-after=N"), "{bad}: {e}");
        }
    }

    #[test]
    fn panics_on_the_batch_after_the_count_and_never_when_unarmed() {
        let mut p = PanicAfter::new(Some(2));
        p.batch();
        p.batch();
        assert!(std::panic::catch_unwind(move || p.batch()).is_err());
        let mut never = PanicAfter::new(None);
        for _ in 0..1000 {
            never.batch();
        }
    }
}
