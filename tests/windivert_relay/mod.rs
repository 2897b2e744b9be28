//! The Linux half of the emulated WinDivert device (`tools/windivert-emu/`): packets that
//! NFQUEUE holds at three netfilter hooks of the `nat` namespace go to the stand-in
//! WinDivert.dll inside `wine netnat.exe`, which decides with WinDivert's own filter evaluator
//! whether a handle diverts them; what the handles send comes back here and is injected with a
//! raw socket.
//!
//! | netfilter hook (`nat`) | WinDivert layer | `Outbound` | `IfIdx`                  |
//! |------------------------|-----------------|------------|--------------------------|
//! | mangle FORWARD         | NETWORK_FORWARD | 1          | outgoing interface       |
//! | mangle INPUT (not lo)  | NETWORK         | 0          | incoming interface       |
//! | mangle OUTPUT          | NETWORK         | 1          | outgoing; `Loopback` = lo|
//!
//! As the driver does (vendor/sys/windivert.c): the forward layer reports the destination
//! interface and `Outbound = 1`; loopback packets are seen outbound only.
//!
//! Per NFQUEUE batch the relay sends every packet to the DLL and waits (at most
//! [`VERDICT_TIMEOUT`]) for its verdicts: a diverted (stolen) or dropped packet gets a drop
//! verdict, a passed one is accepted. With no DLL connected no handle is open, so everything
//! passes, as on Windows without WinDivert. Injected packets carry [`MARK`] (`SO_MARK`) and
//! the rules let them through without queueing, so they are never diverted twice here (the
//! DLL itself offers them to lower-priority handles of the same layer, as the driver does).
//! The relay's own TCP connection on lo is exempt too.
//!
//! Every socket is created in the `nat` namespace by a short-lived thread that `setns`es
//! there (which affects only that thread); the threads that use them run anywhere.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netnat_capture::nfqueue::{Nfqueue, NfqueueConfig};
use netnat_capture::{Action, Batch, Capture};

/// `SO_MARK` of injected packets; the rules skip them.
pub const MARK: u32 = 0x4e4e_5744;
/// NFQUEUE numbers in `nat` (namespaced, so fixed numbers do not collide across tests).
const QUEUES: [u16; 3] = [7100, 7101, 7102];
/// How long a batch waits for the DLL's verdicts before its packets are dropped (counted).
pub const VERDICT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a receive waits before the queue threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);

const MSG_PACKET: u8 = 1;
const MSG_HELLO: u8 = 0x10;
const MSG_VERDICT: u8 = 0x11;
const MSG_INJECT: u8 = 0x12;
const MSG_OPEN: u8 = 0x13;
const MSG_CLOSE: u8 = 0x14;

/// The hook a queue serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// mangle FORWARD: WinDivert's forward layer.
    Forward,
    /// mangle INPUT: the network layer, inbound.
    Input,
    /// mangle OUTPUT: the network layer, outbound.
    Output,
}

const HOOKS: [Hook; 3] = [Hook::Forward, Hook::Input, Hook::Output];

impl Hook {
    fn index(self) -> u32 {
        match self {
            Hook::Forward => 0,
            Hook::Input => 1,
            Hook::Output => 2,
        }
    }
}

/// What the DLL told the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A process loaded the DLL and connected.
    Hello { pid: u32 },
    /// `WinDivertOpen` succeeded.
    Open { id: u64, forward: bool, priority: i16, flags: u64, filter: String },
    /// `WinDivertClose`.
    Close { id: u64 },
    /// The connection ended (the process exited or was killed).
    Disconnected,
}

/// Counters, per hook where it matters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets the DLL diverted (or dropped through a DROP handle), per hook.
    pub diverted: HashMap<Hook, u64>,
    /// Packets no handle wanted, per hook (with or without a DLL connected).
    pub passed: HashMap<Hook, u64>,
    /// Packets injected, by (forward layer, outbound).
    pub injected: HashMap<(bool, bool), u64>,
    /// Injections the kernel refused.
    pub inject_errors: u64,
    /// Packets dropped because the DLL did not answer within [`VERDICT_TIMEOUT`].
    pub verdict_timeouts: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// The connected DLL (newest wins) and its connection number.
    client: Mutex<Option<(u64, TcpStream)>>,
    connections: AtomicU64,
    events: Mutex<Vec<Event>>,
    counts: Mutex<Counts>,
    next_id: AtomicU32,
}

/// A running relay; stopped (threads joined, sockets closed) on drop. Remove the rules
/// ([`Relay::rules`]) with the namespace.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the three queues, a raw socket and a TCP listener on 127.0.0.1 in namespace
    /// `netns` (a name under /run/netns), and starts serving. Install [`Relay::rules`] next.
    pub fn start(netns: &str) -> io::Result<Relay> {
        let path = format!("/run/netns/{netns}");
        let (queues, raw, listener) = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<_> {
                let ns = std::fs::File::open(&path)?;
                // SAFETY: setns on a namespace file descriptor; it changes only this thread,
                // which ends right after creating the sockets.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let queues = QUEUES
                    .iter()
                    .map(|&queue| {
                        // gso off: the kernel segments and completes checksums before queueing,
                        // so every packet is one MTU-sized datagram with valid checksums.
                        Nfqueue::open(NfqueueConfig { queue, gso: false, ..NfqueueConfig::default() })
                            .map_err(|e| io::Error::other(e.to_string()))
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                let raw = raw_socket()?;
                let listener = TcpListener::bind("127.0.0.1:0")?;
                Ok((queues, raw, listener))
            })
            .join()
            .map_err(|_| io::Error::other("the setns thread panicked"))?
        })?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let raw = Arc::new(raw);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for (hook, queue) in HOOKS.into_iter().zip(queues) {
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            let shared = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || queue_loop(hook, queue, &shared, &rx)));
        }
        let accept_shared = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || accept_loop(&listener, &accept_shared, &senders, &raw)));
        Ok(Relay { port, shared, threads })
    }

    /// The port the DLL connects to (`NETNAT_WINDIVERT_EMU`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The iptables commands (arguments after `iptables`) that feed the queues: mangle FORWARD,
    /// INPUT (not from lo) and OUTPUT, except injected packets and the relay's own TCP.
    pub fn rules(&self) -> Vec<Vec<String>> {
        let mark = format!("{MARK:#x}");
        let port = self.port.to_string();
        let q = |n: u16| vec!["-j".to_owned(), "NFQUEUE".into(), "--queue-num".into(), n.to_string()];
        let rule = |chain: &str, rest: &[&str]| {
            let mut r: Vec<String> = ["-t", "mangle", "-A", chain].iter().map(|s| s.to_string()).collect();
            r.extend(rest.iter().map(|s| s.to_string()));
            r
        };
        let mut rules = Vec::new();
        for chain in ["FORWARD", "INPUT", "OUTPUT"] {
            rules.push(rule(chain, &["-m", "mark", "--mark", &mark, "-j", "RETURN"]));
        }
        // WinDivert does not capture loopback packets inbound (they are seen outbound).
        rules.push(rule("INPUT", &["-i", "lo", "-j", "RETURN"]));
        rules.push(rule("OUTPUT", &["-o", "lo", "-p", "tcp", "--dport", &port, "-j", "RETURN"]));
        rules.push(rule("OUTPUT", &["-o", "lo", "-p", "tcp", "--sport", &port, "-j", "RETURN"]));
        for (chain, n) in [("FORWARD", QUEUES[0]), ("INPUT", QUEUES[1]), ("OUTPUT", QUEUES[2])] {
            let mut r = rule(chain, &[]);
            r.extend(q(n));
            rules.push(r);
        }
        rules
    }

    /// What the DLL has reported so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.shared.counts.lock().unwrap().clone()
    }

    /// The handles open now: (forward layer, filter), in the order they were opened.
    pub fn open_handles(&self) -> Vec<(bool, String)> {
        let mut open: Vec<(u64, bool, String)> = Vec::new();
        for e in self.events() {
            match e {
                Event::Open { id, forward, filter, .. } => open.push((id, forward, filter)),
                Event::Close { id } => open.retain(|(i, ..)| *i != id),
                Event::Disconnected => open.clear(),
                Event::Hello { .. } => {}
            }
        }
        open.into_iter().map(|(_, f, s)| (f, s)).collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some((_, c)) = self.shared.client.lock().unwrap().take() {
            let _ = c.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mark = MARK;
    // SAFETY: `mark` is a live u32 whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends an IPv4 packet as it is (IPPROTO_RAW implies IP_HDRINCL); the kernel routes it by its
/// destination, through OUTPUT and POSTROUTING, or to lo when the destination is local.
fn inject(raw: &OwnedFd, packet: &[u8]) -> io::Result<()> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an IPv4 packet"));
    }
    // SAFETY: sockaddr_in is plain data; zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
    // SAFETY: `packet` and `sa` are valid for the lengths passed.
    let n = unsafe {
        libc::sendto(
            raw.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, body: &[&[u8]]) {
    let len: usize = 1 + body.iter().map(|b| b.len()).sum::<usize>();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind);
    for b in body {
        out.extend_from_slice(b);
    }
}

fn queue_loop(hook: Hook, mut queue: Nfqueue, shared: &Shared, verdicts: &Receiver<(u32, u8)>) {
    let mut batch = Batch::new(64, 65535);
    let mut out = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match queue.recv_batch(&mut batch, Some(TICK)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => {
                eprintln!("windivert relay: {hook:?}: {e}");
                std::thread::sleep(TICK);
                continue;
            }
        }
        // Verdicts of an earlier batch that timed out are stale now.
        while verdicts.try_recv().is_ok() {}
        let mut client = shared.client.lock().unwrap();
        let mut ids = Vec::with_capacity(batch.len());
        let sent = if let Some((_, stream)) = client.as_mut() {
            out.clear();
            for p in batch.iter() {
                // The low two bits say which queue thread waits for the verdict.
                let id = (shared.next_id.fetch_add(1, Ordering::Relaxed) << 2) | hook.index();
                ids.push(id);
                let (layer, outbound, ifidx) = match hook {
                    Hook::Forward => (1u8, 1u8, p.meta.out_interface),
                    Hook::Input => (0, 0, p.meta.in_interface),
                    Hook::Output => (0, 1, p.meta.out_interface),
                };
                let loopback = u8::from(hook == Hook::Output && ifidx == 1);
                // Checksums are valid: the kernel completed them (gso off).
                let head = [layer, outbound, loopback, 0b111];
                frame(
                    &mut out,
                    MSG_PACKET,
                    &[&id.to_le_bytes(), &head, &ifidx.to_le_bytes(), &0u32.to_le_bytes(), p.ip()],
                );
            }
            stream.write_all(&out).is_ok()
        } else {
            false
        };
        drop(client);
        let mut answers: HashMap<u32, u8> = HashMap::new();
        if sent {
            let deadline = Instant::now() + VERDICT_TIMEOUT;
            while answers.len() < ids.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                match verdicts.recv_timeout(left) {
                    Ok((id, v)) => {
                        if ids.contains(&id) {
                            answers.insert(id, v);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let mut counts = shared.counts.lock().unwrap();
        for (i, p) in batch.iter_mut().enumerate() {
            let verdict = if sent { ids.get(i).and_then(|id| answers.get(id)).copied() } else { Some(0) };
            match verdict {
                Some(0) => {
                    *counts.passed.entry(hook).or_default() += 1;
                    p.set_action(Action::Accept);
                }
                Some(_) => {
                    *counts.diverted.entry(hook).or_default() += 1;
                    p.set_action(Action::Drop);
                }
                None => {
                    counts.verdict_timeouts += 1;
                    p.set_action(Action::Drop);
                }
            }
        }
        drop(counts);
        if let Err(e) = queue.send_batch(&mut batch) {
            eprintln!("windivert relay: {hook:?}: verdicts: {e}");
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, senders: &[Sender<(u32, u8)>], raw: &Arc<OwnedFd>) {
    listener.set_nonblocking(true).expect("non-blocking listener");
    let mut readers = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let n = shared.connections.fetch_add(1, Ordering::Relaxed);
                let writer = stream.try_clone().expect("clone the connection");
                if let Some((_, old)) = shared.client.lock().unwrap().replace((n, writer)) {
                    let _ = old.shutdown(Shutdown::Both);
                }
                let (shared, senders, raw) = (Arc::clone(shared), senders.to_vec(), Arc::clone(raw));
                readers.push(std::thread::spawn(move || read_loop(n, stream, &shared, &senders, &raw)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                eprintln!("windivert relay: accept: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
    if let Some((_, c)) = shared.client.lock().unwrap().take() {
        let _ = c.shutdown(Shutdown::Both);
    }
    for r in readers {
        let _ = r.join();
    }
}

fn read_loop(n: u64, mut stream: TcpStream, shared: &Shared, senders: &[Sender<(u32, u8)>], raw: &OwnedFd) {
    let mut buf = vec![0u8; 70_000];
    let mut inject_errors_logged = 0;
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            break;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > buf.len() || stream.read_exact(&mut buf[..len]).is_err() {
            break;
        }
        let (kind, body) = (buf[0], &buf[1..len]);
        match kind {
            MSG_VERDICT if body.len() >= 5 => {
                let id = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
                if let Some(s) = senders.get((id & 3) as usize) {
                    let _ = s.send((id, body[4]));
                }
            }
            MSG_INJECT if body.len() >= 20 => {
                let (forward, outbound) = (body[0] == 1, body[1] != 0);
                let packet = &body[20..];
                let result = inject(raw, packet);
                let mut counts = shared.counts.lock().unwrap();
                match result {
                    Ok(()) => *counts.injected.entry((forward, outbound)).or_default() += 1,
                    Err(e) => {
                        counts.inject_errors += 1;
                        if inject_errors_logged < 5 {
                            inject_errors_logged += 1;
                            eprintln!("windivert relay: cannot inject a {}-byte packet: {e}", packet.len());
                        }
                    }
                }
            }
            MSG_HELLO if body.len() >= 8 => {
                let pid = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
                shared.events.lock().unwrap().push(Event::Hello { pid });
            }
            MSG_OPEN if body.len() >= 20 => {
                let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                let priority = i16::from_le_bytes(body[10..12].try_into().expect("2 bytes"));
                let flags = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
                let filter = String::from_utf8_lossy(&body[20..]).into_owned();
                shared.events.lock().unwrap().push(Event::Open { id, forward: body[8] == 1, priority, flags, filter });
            }
            MSG_CLOSE if body.len() >= 8 => {
                let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                shared.events.lock().unwrap().push(Event::Close { id });
            }
            _ => {
                eprintln!("windivert relay: unknown or short message {kind:#x} ({len} bytes); closing");
                break;
            }
        }
    }
    shared.events.lock().unwrap().push(Event::Disconnected);
    let mut client = shared.client.lock().unwrap();
    if client.as_ref().is_some_and(|(c, _)| *c == n) {
        *client = None;
    }
}
