//! The control channel on Windows: a local named pipe (`\\.\pipe\netnat` by default).
//!
//! - The pipe is created with the security descriptor `platform::sddl::pipe_sddl()` (SYSTEM
//!   and Administrators only), `PIPE_REJECT_REMOTE_CLIENTS`, and, for the first instance,
//!   `FILE_FLAG_FIRST_PIPE_INSTANCE`: if any other process (another daemon, or a program
//!   squatting the name) already owns the name, [`listen`] fails instead of sharing it.
//! - A new instance is created as soon as a client connects, so the name is never free for
//!   another process to take while the daemon runs.
//! - Each client's token is checked (impersonation at identification level, which the client
//!   requests, so the daemon can read the token but never act as the client).
//! - Byte mode, blocking I/O: each connection is served by its own thread with `std::fs::File`
//!   reads and writes, exactly like the Unix socket.
//!
//! Type-checked for x86_64-pc-windows-gnu on Linux; not run on Windows by us.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::path::Path;

use parking_lot::Mutex;
use windows::core::PCWSTR;
use windows::Win32::Foundation::{BOOL, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, HANDLE, INVALID_HANDLE_VALUE, PSID};
use windows::Win32::Security::{
    CheckTokenMembership, CreateWellKnownSid, RevertToSelf, WinBuiltinAdministratorsSid, WinLocalSystemSid,
    TOKEN_QUERY, WELL_KNOWN_SID_TYPE,
};
use windows::Win32::Storage::FileSystem::{FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX};
use windows::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, ImpersonateNamedPipeClient, WaitNamedPipeW, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};

use super::pipe::{check_pipe_path, wide};
use super::transport::Peer;
use crate::platform::sddl::pipe_sddl;
use crate::platform::win_security::SecurityDescriptor;

/// A connected control stream.
pub type Stream = File;

/// `SECURITY_SQOS_PRESENT` is added by std; this is `SecurityIdentification << 16`: the
/// daemon may read the client's token but not impersonate it for anything else.
const SECURITY_IDENTIFICATION: u32 = 0x0001_0000;

/// Pipe buffer sizes (requests and replies are JSON lines; larger ones just take more reads).
const PIPE_BUFFER: u32 = 64 * 1024;

/// How long a client waits for a free pipe instance, per attempt, and how often it tries.
const BUSY_WAIT_MS: u32 = 2000;
const CONNECT_ATTEMPTS: usize = 5;

/// The daemon's listening pipe.
pub struct Listener {
    name: Vec<u16>,
    security: SecurityDescriptor,
    /// The instance waiting for the next client.
    next: Mutex<Option<OwnedHandle>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("name", &String::from_utf16_lossy(&self.name)).finish_non_exhaustive()
    }
}

fn raw(handle: &OwnedHandle) -> HANDLE {
    HANDLE(handle.as_raw_handle() as isize)
}

impl Listener {
    fn instance(&self, first: bool) -> io::Result<OwnedHandle> {
        let attributes = self.security.attributes();
        let mode = if first { PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE } else { PIPE_ACCESS_DUPLEX };
        // SAFETY: the name is NUL-terminated UTF-16 and the attributes point at a valid
        // descriptor; both outlive the call. The result is checked before use.
        let handle = unsafe {
            CreateNamedPipeW(
                PCWSTR(self.name.as_ptr()),
                mode,
                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                PIPE_UNLIMITED_INSTANCES,
                PIPE_BUFFER,
                PIPE_BUFFER,
                0,
                Some(&attributes),
            )
        };
        if handle == INVALID_HANDLE_VALUE || handle.0 == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle that nothing else owns.
        Ok(unsafe { OwnedHandle::from_raw_handle(handle.0 as RawHandle) })
    }

    /// Waits for the next client and tells who it is.
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        let pending = self.next.lock().take();
        let pipe = match pending {
            Some(p) => p,
            None => self.instance(false)?,
        };
        // SAFETY: `pipe` is a server end created above, in blocking mode; no OVERLAPPED.
        let connected = unsafe { ConnectNamedPipe(raw(&pipe), None) }.as_bool();
        let error = (!connected).then(io::Error::last_os_error);
        // Before serving this client, put up the next instance so the name stays ours.
        match self.instance(false) {
            Ok(next) => *self.next.lock() = Some(next),
            Err(e) => tracing::warn!("cannot create the next control pipe instance: {e}"),
        }
        if let Some(e) = error {
            // A client that connected between CreateNamedPipe and ConnectNamedPipe.
            if e.raw_os_error() != Some(ERROR_PIPE_CONNECTED.0 as i32) {
                return Err(e);
            }
        }
        let peer = Peer { uid: None, administrator: client_is_administrator(raw(&pipe)) };
        Ok((File::from(pipe), peer))
    }
}

/// Creates the pipe at `path` (`\\.\pipe\NAME`); fails when another process already owns
/// that name.
pub fn listen(path: &Path) -> io::Result<Listener> {
    let text = path.to_string_lossy();
    check_pipe_path(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener =
        Listener { name: wide(&text), security: SecurityDescriptor::from_sddl(&pipe_sddl())?, next: Mutex::new(None) };
    let first = listener.instance(true).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{text} already exists (another netnat daemon, or another program, owns it); stop it, or give this daemon another --socket NAME"
                ),
            )
        } else {
            e
        }
    })?;
    *listener.next.lock() = Some(first);
    Ok(listener)
}

/// Connects to the daemon's pipe at `path`, waiting a little while all instances are busy.
pub fn connect(path: &Path) -> io::Result<Stream> {
    let name = wide(&path.to_string_lossy());
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for _ in 0..CONNECT_ATTEMPTS {
        match OpenOptions::new().read(true).write(true).security_qos_flags(SECURITY_IDENTIFICATION).open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY.0 as i32) => {
                // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
                let _ = unsafe { WaitNamedPipeW(PCWSTR(name.as_ptr()), BUSY_WAIT_MS) };
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Whether the client of the connected `pipe` is SYSTEM or an elevated Administrator.
fn client_is_administrator(pipe: HANDLE) -> bool {
    // SAFETY: `pipe` is a connected server end; impersonation is undone below on every path.
    if !unsafe { ImpersonateNamedPipeClient(pipe) }.as_bool() {
        return false;
    }
    let mut token = HANDLE::default();
    // SAFETY: reads this thread's impersonation token (query access only); OpenAsSelf makes
    // the access check use the daemon's identity, which an identification-level token needs.
    let opened = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, true, &mut token) }.as_bool();
    // SAFETY: ends the impersonation begun above. If that failed, this thread would keep
    // the client's identity; nothing may run like that, so the daemon stops.
    if !unsafe { RevertToSelf() }.as_bool() {
        eprintln!("netnat daemon: RevertToSelf failed after checking a control client; stopping");
        std::process::abort();
    }
    if !opened {
        return false;
    }
    // SAFETY: a token handle we own from here on (closed on drop).
    let token = unsafe { OwnedHandle::from_raw_handle(token.0 as RawHandle) };
    [WinLocalSystemSid, WinBuiltinAdministratorsSid].into_iter().any(|kind| is_member(raw(&token), kind))
}

/// Whether `token` (an impersonation token) has the well-known SID `kind` enabled.
fn is_member(token: HANDLE, kind: WELL_KNOWN_SID_TYPE) -> bool {
    // SECURITY_MAX_SID_SIZE is 68 bytes; u32 elements give the SID its DWORD alignment.
    let mut sid = [0u32; 17];
    let mut len = std::mem::size_of_val(&sid) as u32;
    let psid = PSID(sid.as_mut_ptr().cast());
    // SAFETY: `sid` is writable for `len` bytes; no domain SID is needed for these kinds.
    if !unsafe { CreateWellKnownSid(kind, PSID::default(), psid, &mut len) }.as_bool() {
        return false;
    }
    let mut member = BOOL(0);
    // SAFETY: `token` is an impersonation token open for query, `psid` a valid SID, and
    // `member` writable.
    let ok = unsafe { CheckTokenMembership(token, psid, &mut member) }.as_bool();
    ok && member.as_bool()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn unique_pipe() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        PathBuf::from(format!(r"\\.\pipe\netnat-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    /// Whether this process's own token has `kind` enabled: what the daemon should find in
    /// the token of a client run by the same user.
    fn self_is_member(kind: WELL_KNOWN_SID_TYPE) -> bool {
        is_member(HANDLE::default(), kind)
    }

    #[test]
    fn a_client_line_reaches_the_daemon_and_the_reply_comes_back() {
        let path = unique_pipe();
        let listener = listen(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut peers = Vec::new();
            for _ in 0..2 {
                let (stream, peer) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                (&stream).write_all(format!("echo {line}").as_bytes()).unwrap();
                peers.push(peer);
            }
            peers
        });
        for i in 0..2 {
            let client = connect(&path).unwrap();
            (&client).write_all(format!("{{\"request\":{i}}}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            BufReader::new(client).read_line(&mut reply).unwrap();
            assert_eq!(reply, format!("echo {{\"request\":{i}}}\n"));
        }
        let peers = server.join().unwrap();
        // The client runs as this process's user: the daemon must see the same identity.
        let expected = self_is_member(WinLocalSystemSid) || self_is_member(WinBuiltinAdministratorsSid);
        println!("this process is an administrator: {expected}; the daemon saw the clients as: {peers:?}");
        for peer in peers {
            assert_eq!(peer, Peer { uid: None, administrator: expected });
        }
    }

    #[test]
    fn a_second_daemon_cannot_take_the_name() {
        let path = unique_pipe();
        let _first = listen(&path).unwrap();
        if crate::platform::win_security::wine::detected() {
            // Wine 8.0 ignores FILE_FLAG_FIRST_PIPE_INSTANCE: a second server of the same
            // name is created.
            crate::platform::win_security::wine::skip(
                "transport_windows::a_second_daemon_cannot_take_the_name",
                "Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE; checked on Windows only",
            );
            return;
        }
        let err = listen(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("another --socket NAME"), "{err}");
    }

    #[test]
    fn the_pipe_has_the_system_and_administrators_dacl() {
        let path = unique_pipe();
        let listener = listen(&path).unwrap();
        let next = listener.next.lock();
        let dacl = crate::platform::win_security::dacl_of_handle(raw(next.as_ref().unwrap())).unwrap();
        // Protected, SYSTEM and Administrators only. Windows maps GA (generic all) to the
        // pipe's own rights (FA) when it creates the object; Wine 8.0 keeps GA as given.
        assert!(dacl == "D:P(A;;FA;;;SY)(A;;FA;;;BA)" || dacl == "D:P(A;;GA;;;SY)(A;;GA;;;BA)", "{dacl}");
    }

    #[test]
    fn no_daemon_is_a_not_found_error() {
        let err = connect(&unique_pipe()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
