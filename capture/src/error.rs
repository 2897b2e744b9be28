//! The error type of every capture backend.
//!
//! A packet the backend cannot make sense of is not an error (it is passed on or dropped and
//! counted); errors are what stops a backend from working at all: missing privileges, a queue
//! already taken, a closed peer. Each message says what is wrong and how to fix it.

use std::io;

/// What went wrong in a capture backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// An operating-system call failed. `context` names the backend and the step
    /// ("nfqueue: cannot bind queue 0"), `hint` says how to fix it (may be empty).
    #[error("{context}: {}{hint}", lower(.source))]
    Os {
        /// Backend and step, e.g. `nfqueue: cannot bind queue 0`.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
        /// How to fix it, starting with `"; "`, or empty.
        hint: String,
    },
    /// The kernel or driver sent something the backend does not understand.
    #[error(
        "{backend}: unexpected message from the kernel: {detail}; this is a bug in netnat-capture, please report it"
    )]
    Protocol {
        /// Backend name.
        backend: &'static str,
        /// What was unexpected.
        detail: String,
    },
    /// The batch's buffers are smaller than the packets the backend may deliver.
    #[error("{backend}: batch buffers hold {have} bytes but packets up to {need} bytes may arrive; create the batch with Batch::new(n, {need})")]
    BatchTooSmall {
        /// Backend name.
        backend: &'static str,
        /// Required `Batch::max_len`.
        need: usize,
        /// The batch's `max_len`.
        have: usize,
    },
    /// A configuration value is out of range.
    #[error("{backend}: invalid configuration: {detail}")]
    Config {
        /// Backend name.
        backend: &'static str,
        /// What is wrong and what is allowed.
        detail: String,
    },
    /// A capture file could not be read or written (the message names the file).
    #[error("{0}")]
    File(#[from] crate::pcap::PcapError),
    /// A backend that cannot go on: a capture file that can no longer be read or written.
    /// Unlike a live capture's errors this does not heal by trying again, so the worker loop
    /// ends at once (see [`CaptureError::is_final`]).
    #[error("{reason}")]
    Stopped {
        /// What failed, with its causes.
        reason: String,
    },
    /// The other end of an in-memory backend was dropped, or a file backend's input ended.
    #[error("{backend}: the other end is closed; keep the handle alive while the backend is used")]
    Closed {
        /// Backend name.
        backend: &'static str,
    },
}

impl CaptureError {
    /// Builds [`CaptureError::Os`]; `hint` is appended after `"; "` when not empty.
    pub fn os(context: impl Into<String>, source: io::Error, hint: &str) -> Self {
        let hint = if hint.is_empty() { String::new() } else { format!("; {hint}") };
        CaptureError::Os { context: context.into(), source, hint }
    }

    /// Whether trying again cannot help: a capture file that cannot be read or written
    /// ([`CaptureError::File`], [`CaptureError::Stopped`]). A live capture's errors are not
    /// final: a full socket buffer or an interrupted wait pass.
    pub fn is_final(&self) -> bool {
        matches!(self, CaptureError::File(_) | CaptureError::Stopped { .. })
    }

    /// The OS error number, when this is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CaptureError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The OS error message with a lower-case first letter ("operation not permitted (os error 1)"),
/// unless it starts with an acronym (Windows' "DLL initialization failed.").
fn lower(e: &io::Error) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), second) if !second.is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(second).chain(chars).collect()
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_message_is_lowercase_with_hint() {
        // EPERM on Unix; ERROR_ACCESS_DENIED on Windows ("Access is denied.", Wine: "Access denied.").
        let (code, text) = if cfg!(windows) { (5, "access") } else { (1, "operation not permitted") };
        let e = CaptureError::os(
            "nfqueue: cannot bind queue 0",
            io::Error::from_raw_os_error(code),
            "run as root (CAP_NET_ADMIN)",
        );
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("nfqueue: cannot bind queue 0: {text}")), "{msg}");
        assert!(msg.ends_with("; run as root (CAP_NET_ADMIN)"), "{msg}");
        assert_eq!(e.raw_os_error(), Some(code));
    }

    #[test]
    fn acronyms_keep_their_case() {
        let e = CaptureError::os("windivert: cannot open a handle", io::Error::other("DLL initialization failed."), "");
        assert_eq!(e.to_string(), "windivert: cannot open a handle: DLL initialization failed.");
        let e = CaptureError::os("x", io::Error::other("A"), "");
        assert_eq!(e.to_string(), "x: a");
    }
}
