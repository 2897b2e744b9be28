//! The byte pipe under the control protocol, behind three functions ([`listen`],
//! [`Listener::accept`], [`connect`]) so the protocol code is the same everywhere: a
//! root-only Unix socket on Unix, a named pipe that only Administrators and SYSTEM may open
//! on Windows (`transport_windows.rs`, names and access rule in [`super::pipe`]).

#[cfg(unix)]
pub use unix::{connect, listen, Listener};

#[cfg(windows)]
pub use super::transport_windows::{connect, listen, Listener};

#[cfg(not(any(unix, windows)))]
pub use unsupported::{connect, listen, Listener};

/// Who is at the other end of an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's user id, when the platform tells it (Unix).
    pub uid: Option<u32>,
    /// The peer's token is SYSTEM's or carries the Administrators group enabled, i.e. an
    /// elevated prompt (Windows; always false elsewhere).
    pub administrator: bool,
}

impl Peer {
    /// Whether the peer may manage the NAT: root, the daemon's own user, or (Windows) an
    /// elevated Administrator or SYSTEM.
    pub fn is_allowed(&self, own_uid: Option<u32>) -> bool {
        if self.administrator {
            return true;
        }
        match self.uid {
            Some(0) => true,
            Some(uid) => own_uid == Some(uid),
            None => false,
        }
    }

    /// What to tell a refused peer: who it is and how to get access.
    pub fn refusal(&self) -> String {
        match self.uid {
            Some(uid) => format!("permission denied: uid {uid} may not manage the NAT; run the cmdlet as root"),
            None => "permission denied: only an elevated Administrator or SYSTEM may manage the NAT; \
                     run the cmdlet from a prompt opened with \"Run as administrator\""
                .to_owned(),
        }
    }
}

/// The daemon's own user id, when the platform has one.
pub fn own_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Some(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Whether something answers on `path` (a live daemon), used before replacing a stale socket.
#[cfg(unix)]
pub fn is_live(path: &std::path::Path) -> bool {
    connect(path).is_ok()
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;

    use super::Peer;

    /// A connected control stream.
    pub type Stream = UnixStream;

    /// The daemon's listening socket.
    #[derive(Debug)]
    pub struct Listener(UnixListener);

    /// Binds `path` with mode 0600 (root-only when the daemon runs as root). The parent
    /// directory is created (mode 0700) if missing; the daemon has checked an existing one
    /// (`platform::private_dir`). An existing file at `path` must have been removed by the
    /// caller.
    pub fn listen(path: &Path) -> io::Result<Listener> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        // Bind under a restrictive umask so the socket is never briefly world-connectable.
        // SAFETY: umask only swaps the process file mode mask; it cannot fail.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above; restores the previous mask.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Listener(listener))
    }

    impl Listener {
        /// Waits for the next client and tells who it is.
        pub fn accept(&self) -> io::Result<(Stream, Peer)> {
            let (stream, _) = self.0.accept()?;
            let peer = peer_of(&stream);
            Ok((stream, peer))
        }
    }

    /// Connects to the daemon at `path`.
    pub fn connect(path: &Path) -> io::Result<Stream> {
        UnixStream::connect(path)
    }

    #[cfg(target_os = "linux")]
    fn peer_of(stream: &UnixStream) -> Peer {
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is a live socket owned by `stream`; `cred` and `len` are valid for
        // writes of the sizes passed, as SO_PEERCRED requires.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        Peer { uid: (rc == 0).then_some(cred.uid), administrator: false }
    }

    #[cfg(not(target_os = "linux"))]
    fn peer_of(_stream: &UnixStream) -> Peer {
        // The socket's mode 0600 already limits who can connect.
        Peer { uid: super::own_uid(), administrator: false }
    }
}

#[cfg(not(any(unix, windows)))]
mod unsupported {
    use std::io;
    use std::path::Path;

    use super::Peer;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the netnat control channel exists on Unix (socket) and Windows (named pipe) only",
        )
    }

    /// A connected control stream (never constructed here).
    pub type Stream = std::net::TcpStream;

    /// The daemon's listening endpoint (never constructed here).
    #[derive(Debug)]
    pub struct Listener(());

    /// Not supported on this platform.
    pub fn listen(_path: &Path) -> io::Result<Listener> {
        Err(unsupported())
    }

    impl Listener {
        /// Not supported on this platform.
        pub fn accept(&self) -> io::Result<(Stream, Peer)> {
            Err(unsupported())
        }
    }

    /// Not supported on this platform.
    pub fn connect(_path: &Path) -> io::Result<Stream> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_own_user_and_administrators_are_allowed() {
        let unix = |uid| Peer { uid: Some(uid), administrator: false };
        assert!(unix(0).is_allowed(Some(1000)));
        assert!(unix(1000).is_allowed(Some(1000)));
        assert!(!unix(1001).is_allowed(Some(1000)));
        let windows = |administrator| Peer { uid: None, administrator };
        assert!(windows(true).is_allowed(None));
        assert!(!windows(false).is_allowed(None), "an unelevated Windows client");
        assert!(windows(false).refusal().contains("Run as administrator"));
        assert!(unix(1001).refusal().contains("uid 1001"));
    }
}
