//! The daemon's worker loop over the unprivileged backends: `Loopback` (packets in, verdicts
//! out, as NFQUEUE would give them) and `Fault` around it (seeded drop, duplicate, reorder,
//! truncation). These run the production loop and dataplane, without root.

use std::net::Ipv4Addr;
use std::sync::Arc;

use netnat_capture::fault::{Fault, FaultConfig};
use netnat_capture::loopback::{Loopback, LoopbackHandle, LoopbackPacket};
use netnat_engine::{NatConfig, UnmatchedInbound};

use super::*;
use crate::daemon::dataplane::{Addressing, LiveNat, Template};

const EXT: [u8; 4] = [203, 0, 113, 1];
const SERVER: [u8; 4] = [198, 51, 100, 10];
const SIZE: BatchSize = BatchSize { packets: 8, spare: 0, max_len: 1500 };

/// UDP `src:sport -> dst:dport` with `payload`, no UDP checksum, valid IP checksum.
fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(28 + payload.len()).unwrap();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(total - 20).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    netnat_engine::wire::ipv4::fill_checksum(&mut p);
    p
}

fn src(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[12], p[13], p[14], p[15])
}

fn dst(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[16], p[17], p[18], p[19])
}

fn ports(p: &[u8]) -> (u16, u16) {
    (u16::from_be_bytes([p[20], p[21]]), u16::from_be_bytes([p[22], p[23]]))
}

/// One NAT 10.100.0.0/16 -> 203.0.113.1, compiled as the service compiles it.
fn plane() -> Dataplane {
    plane_with(|_| {})
}

/// [`plane`] with `change` made to its engine configuration.
fn plane_with(change: impl FnOnce(&mut NatConfig)) -> Dataplane {
    let mut config = NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::from(EXT));
    config.seed = 3;
    config.unmatched_inbound = UnmatchedInbound::Host;
    change(&mut config);
    let nat = LiveNat::new("WinNAT".into(), Template { config, addressing: Addressing::Explicit }, &[], &[]).unwrap();
    let plane = Dataplane::new();
    plane.set_nats(vec![Arc::new(nat)]);
    plane
}

/// Linux's egress without the raw socket: translated packets are accepted, hairpinned ones
/// and released fragments are recorded as sent by the host.
#[derive(Default)]
struct Recorder {
    from_host: Vec<Vec<u8>>,
    rounds: usize,
}

impl<C> Egress<C> for Recorder {
    fn before_receive(&mut self, _: &mut C) -> Option<Duration> {
        None
    }

    fn rewritten(&mut self, p: &mut Packet, delivery: Delivery) -> CaptureAction {
        match delivery {
            Delivery::FromHost { .. } => {
                self.from_host.push(p.ip().to_vec());
                CaptureAction::Drop
            }
            _ => CaptureAction::Accept,
        }
    }

    fn after_send(&mut self, plane: &Dataplane, _: &C, received: Option<usize>) {
        self.rounds += usize::from(received.is_some());
        plane.drain_released(|p| self.from_host.push(p.to_vec()));
    }
}

/// Runs the loop over `capture` until the loopback input (already closed) runs out.
fn run_to_end<C: Capture>(capture: &mut C, plane: &Dataplane) -> Recorder {
    let mut egress = Recorder::default();
    let mut seen = 0;
    run(capture, &mut egress, plane, Clock::start(), SIZE, |_| seen += 1).expect("the loop ends when the input does");
    assert!(seen > 0, "rounds with packets were reported");
    egress
}

fn sent(handle: &LoopbackHandle) -> Vec<LoopbackPacket> {
    handle.take_sent()
}

#[test]
fn the_loop_translates_both_ways_passes_the_hosts_packets_and_drops_garbage() {
    let plane = plane();
    let (mut capture, handle) = Loopback::new();
    handle.inject(&udp([10, 100, 10, 11], 5000, SERVER, 53, b"query"), 0);
    handle.inject(&udp([10, 100, 10, 11], 5000, [10, 100, 10, 12], 53, b"inside"), 0);
    let mut truncated = udp([10, 100, 10, 11], 5001, SERVER, 53, b"cut");
    truncated.truncate(24);
    handle.inject(&truncated, 0);
    handle.close();
    run_to_end(&mut capture, &plane);
    let out = sent(&handle);
    assert_eq!(out.len(), 2, "the query and the internal packet; the cut one is dropped");
    assert_eq!((src(&out[0].data), dst(&out[0].data)), (Ipv4Addr::from(EXT), Ipv4Addr::from(SERVER)));
    assert_eq!(dst(&out[1].data), Ipv4Addr::new(10, 100, 10, 12), "internal traffic is not the NAT's");
    assert_eq!(handle.take_dropped().len(), 1);
    let external_port = ports(&out[0].data).0;

    // The reply comes back to the vm; an unsolicited packet to the external address is the
    // host's (accepted unchanged, not counted as a drop).
    let (mut capture, handle) = Loopback::new();
    handle.inject(&udp(SERVER, 53, EXT, external_port, b"answer"), 0);
    let to_host = udp(SERVER, 53, EXT, external_port.wrapping_add(1), b"host");
    handle.inject(&to_host, 0);
    handle.close();
    run_to_end(&mut capture, &plane);
    let out = sent(&handle);
    assert_eq!(out.len(), 2);
    assert_eq!((dst(&out[0].data), ports(&out[0].data).1), (Ipv4Addr::new(10, 100, 10, 11), 5000));
    assert_eq!(out[1].data, to_host, "the host's packet passes unchanged");
    let stats = plane.nats()[0].instances()[0].nat.stats();
    assert_eq!((stats.translated_out, stats.translated_in, stats.dropped_total()), (1, 1, 1), "{stats:?}");
}

#[test]
fn hairpinned_packets_leave_from_the_host_and_held_fragments_are_sent_when_released() {
    // Endpoint-independent filtering: the second vm may reach the first's mapping although
    // the first never sent to the external address.
    let plane = plane_with(|c| c.udp_filtering = netnat_engine::FilteringBehavior::EndpointIndependent);
    let (mut capture, handle) = Loopback::new();
    handle.inject(&udp([10, 100, 10, 11], 5000, SERVER, 53, b"open"), 0);
    handle.close();
    run_to_end(&mut capture, &plane);
    let external_port = ports(&sent(&handle)[0].data).0;

    // A second vm reaches the first through the external address (hairpin), and a datagram
    // whose second fragment arrives before its first.
    let whole = udp([10, 100, 20, 22], 6000, SERVER, 53, &[7u8; 32]);
    let mut first = whole[..20 + 16].to_vec();
    first[2..4].copy_from_slice(&36u16.to_be_bytes());
    first[6] = 0x20; // more fragments
    let mut second = [&whole[..20], &whole[36..]].concat();
    let second_len = u16::try_from(second.len()).unwrap();
    second[2..4].copy_from_slice(&second_len.to_be_bytes());
    second[7] = 2; // offset 16 bytes
    for f in [&mut first, &mut second] {
        netnat_engine::wire::ipv4::fill_checksum(f);
    }
    let (mut capture, handle) = Loopback::new();
    handle.inject(&udp([10, 100, 20, 22], 7000, EXT, external_port, b"hairpin"), 0);
    handle.inject(&second, 0);
    handle.inject(&first, 0);
    handle.close();
    let egress = run_to_end(&mut capture, &plane);
    let out = sent(&handle);
    assert_eq!(out.len(), 1, "the first fragment, translated");
    assert_eq!(src(&out[0].data), Ipv4Addr::from(EXT));
    assert_eq!(egress.from_host.len(), 2, "the hairpinned packet and the released fragment");
    let hairpin = &egress.from_host[0];
    assert_eq!((src(hairpin), dst(hairpin)), (Ipv4Addr::from(EXT), Ipv4Addr::new(10, 100, 10, 11)));
    let released = &egress.from_host[1];
    assert_eq!((src(released), released[7]), (Ipv4Addr::from(EXT), 2), "the second fragment, translated");
    assert_eq!(handle.take_dropped().len(), 2, "the hairpinned original and the held fragment's capture copy");
}

/// Seeded faults on the way in (drops, duplicates, reordering, truncation) over 40 vm flows
/// and a scan of the external address from a remote no vm talked to: every packet the loop
/// received got exactly one verdict, no packet left with an internal source toward the
/// outside, and no scan packet was translated toward a vm.
#[test]
fn under_faults_every_packet_gets_one_verdict_and_nothing_leaks_or_slips_in() {
    const SCANNER: [u8; 4] = [198, 51, 100, 99];
    for seed in [1u64, 2, 3] {
        let plane = plane();
        let (loopback, handle) = Loopback::new();
        let faults = FaultConfig { seed, drop: 0.1, duplicate: 0.1, reorder: 0.2, truncate: 0.1 };
        let mut capture = Fault::new(loopback, faults);
        let mut injected = 0u64;
        for round in 0..5u16 {
            for host in 0..40u8 {
                handle.inject(&udp([10, 100, 1, host], 4000 + u16::from(host), SERVER, 53, b"q"), 0);
                handle.inject(&udp(SCANNER, 53, EXT, 1024 + round * 40 + u16::from(host), b"scan"), 0);
                injected += 2;
            }
        }
        handle.close();
        run_to_end(&mut capture, &plane);
        let stats = capture.stats();
        let (out, dropped) = (handle.take_sent(), handle.take_dropped());
        let received = injected - stats.dropped + stats.duplicated;
        assert_eq!(out.len() as u64 + dropped.len() as u64, received, "seed {seed}: one verdict each ({stats:?})");
        assert!(stats.truncated > 0 && stats.duplicated > 0 && stats.reordered > 0, "seed {seed}: {stats:?}");
        let inside = |a: Ipv4Addr| a.octets()[..2] == [10, 100];
        let mut translated = 0;
        for d in out.iter().map(|p| &p.data).filter(|d| d.len() >= 20) {
            assert!(!inside(src(d)) || inside(dst(d)), "seed {seed}: an internal source left: {d:?}");
            if d.ends_with(b"scan") {
                assert_eq!(dst(d), Ipv4Addr::from(EXT), "seed {seed}: a scan packet was let in: {d:?}");
            }
            translated += usize::from(src(d) == Ipv4Addr::from(EXT));
        }
        assert!(translated > 100, "seed {seed}: most vm packets were translated ({translated})");
    }
}

/// A loopback whose input, once used up, first looks like a receive that timed out (a
/// pause in traffic) and then closes; it records each receive's wait and what the engine's
/// statistics showed then.
struct Pausing<'p> {
    inner: Loopback,
    plane: &'p Dataplane,
    paused: bool,
    /// (the wait asked for, translated_out in the statistics) at each receive.
    receives: Vec<(Option<Duration>, u64)>,
}

impl Capture for Pausing<'_> {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        let counted = self.plane.nats()[0].instances()[0].nat.stats().translated_out;
        self.receives.push((timeout, counted));
        match self.inner.recv_batch(batch, timeout) {
            Err(CaptureError::Closed { .. }) if !self.paused => {
                self.paused = true;
                batch.clear();
                Ok(0)
            }
            other => other,
        }
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        self.inner.send_batch(batch)
    }
}

/// The thread's workers keep counts across full batches; the receive after a full batch waits
/// at most `COUNTS_WAIT` (the platform asked for no limit), and the pause that follows puts
/// every count in the statistics while the thread lives on.
#[test]
fn counts_held_after_a_full_batch_reach_the_statistics_when_traffic_pauses() {
    let plane = plane();
    let (inner, handle) = Loopback::new();
    for port in 0..SIZE.packets as u16 * 2 {
        handle.inject(&udp([10, 100, 10, 11], 5000 + port, SERVER, 53, b"q"), 0);
    }
    handle.close();
    let mut capture = Pausing { inner, plane: &plane, paused: false, receives: Vec::new() };
    run(&mut capture, &mut Recorder::default(), &plane, Clock::start(), SIZE, |_| {}).unwrap();
    let full = SIZE.packets as u64;
    assert_eq!(
        capture.receives,
        [(None, 0), (Some(COUNTS_WAIT), 0), (Some(COUNTS_WAIT), 0), (None, 2 * full)],
        "two full batches held their counts; the pause flushed them"
    );
}

/// A capture whose first receive waits through a configuration change: the NATs of `next`
/// are put in force before the packets are handed over.
struct ChangeDuringReceive<'p> {
    inner: Loopback,
    plane: &'p Dataplane,
    next: Option<Vec<Arc<LiveNat>>>,
}

impl Capture for ChangeDuringReceive<'_> {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        if let Some(nats) = self.next.take() {
            self.plane.set_nats(nats);
        }
        self.inner.recv_batch(batch, timeout)
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        self.inner.send_batch(batch)
    }
}

/// The first NAT is created while the worker waits for packets (the daemon started with
/// none): the packet that ends the wait is translated by it, never passed untranslated.
#[test]
fn a_batch_received_across_a_change_of_nats_is_translated_with_the_new_ones() {
    let empty = Dataplane::new();
    let (inner, handle) = Loopback::new();
    handle.inject(&udp([10, 100, 10, 11], 5000, SERVER, 53, b"first"), 0);
    handle.close();
    let mut capture = ChangeDuringReceive { inner, plane: &empty, next: Some(plane().nats().to_vec()) };
    run(&mut capture, &mut Recorder::default(), &empty, Clock::start(), SIZE, |_| {}).unwrap();
    let out = sent(&handle);
    assert_eq!(out.len(), 1);
    assert_eq!(src(&out[0].data), Ipv4Addr::from(EXT), "translated by the NAT created during the wait");
}

/// A capture whose every receive fails with `error()`.
struct Failing<F> {
    error: F,
    receives: u32,
}

impl<F: Fn() -> CaptureError> Capture for Failing<F> {
    fn recv_batch(&mut self, _: &mut Batch, _: Option<Duration>) -> Result<usize, CaptureError> {
        self.receives += 1;
        Err((self.error)())
    }

    fn send_batch(&mut self, _: &mut Batch) -> Result<(), CaptureError> {
        Ok(())
    }
}

/// A file that cannot be read or written ends the loop at the first failure, with its
/// error (a replay's input is not read on past it); a live capture's error is tried again.
#[test]
fn a_final_error_ends_the_loop_at_once_and_a_passing_one_is_retried() {
    let plane = plane();
    let stopped = || CaptureError::Stopped { reason: "cannot write out.pcap: disk full".into() };
    let mut capture = Failing { error: stopped, receives: 0 };
    let e = run(&mut capture, &mut Recorder::default(), &plane, Clock::start(), SIZE, |_| {}).unwrap_err();
    assert_eq!((capture.receives, e.to_string()), (1, "cannot write out.pcap: disk full".to_owned()));
    let busy = || CaptureError::os("nfqueue: recvmmsg", std::io::Error::from(std::io::ErrorKind::WouldBlock), "");
    let mut capture = Failing { error: busy, receives: 0 };
    let e = run(&mut capture, &mut Recorder::default(), &plane, Clock::start(), SIZE, |_| {}).unwrap_err();
    assert_eq!(capture.receives, MAX_CONSECUTIVE_ERRORS, "{e:#}");
}

/// IPv4 packets, TTL and header checksum zeroed, sorted.
fn normalized_ip_packets(frames: impl Iterator<Item = (Vec<u8>, usize)>) -> Vec<Vec<u8>> {
    let mut packets: Vec<Vec<u8>> = frames
        .map(|(frame, offset)| {
            let mut ip = frame[offset..].to_vec();
            ip[8] = 0;
            ip[10..12].fill(0);
            ip
        })
        .collect();
    packets.sort();
    packets
}

/// The kernel sample (`samples/kernel-nat`: what a Linux NAT was given and what it sent on)
/// through the daemon's own loop and dataplane (a NAT as the service compiles it, which tells
/// the host's packets apart), read from and written to capture files by the replay's capture
/// backend: the daemon's production path sends on exactly what the kernel's NAT did (TTL and
/// IPv4 header checksum aside, which the kernel changed by routing; order aside, as the
/// kernel's answer merges two interfaces). `tests/kernel_sample.rs` checks `netnat replay`,
/// the same loop with the replay's one-engine dataplane, the same way.
#[test]
fn the_kernel_sample_through_the_daemons_loop_is_what_the_kernels_nat_sent() {
    use crate::replay::capture::{Outputs, ReplayCapture};
    use crate::replay::sink::{self, Recorded};
    use netnat_capture::pcap::PcapReader;

    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/kernel-nat");
    let plane = plane_with(|c| c.port_allocation = netnat_engine::PortAllocation::Preserve);
    let engine = Arc::clone(&plane.nats()[0].instances()[0]);
    let mut reader = PcapReader::open(sample.join("input.pcap")).unwrap();
    let mut frames: Vec<Recorded> = Vec::new();
    let mut out = sink::Recorder { frames: &mut frames };
    let progress = indicatif::ProgressBar::hidden();
    let outputs = Outputs { output: &mut out, drops: None, events: None, progress: &progress };
    let mut capture = ReplayCapture::new(&mut reader, &engine.nat, outputs, 8);
    let mut egress = Recorder::default();
    // Room for Ethernet frames of a 1500-byte MTU.
    let size = BatchSize { packets: 8, spare: 0, max_len: 1514 };
    run(&mut capture, &mut egress, &plane, Clock::start(), size, |_| {}).unwrap();
    assert!(egress.from_host.is_empty(), "the sample has no hairpinned packets");
    let counts = capture.finish(Clock::start().now()).unwrap();
    let all_sent_on = (counts.packets_written, counts.dropped, counts.held);
    assert_eq!(all_sent_on, (counts.packets_read, 0, 0), "all sent on: {counts:?}");
    let engine = engine.nat.stats();
    assert!(engine.translated_out > 0 && engine.translated_in > 0, "{engine:?}");
    const ETHERNET: usize = 14;
    let ours = normalized_ip_packets(frames.into_iter().map(|f| (f.data, ETHERNET)));
    let reader = PcapReader::open(sample.join("expected.pcap")).unwrap();
    let kernels = normalized_ip_packets(reader.map(|f| {
        let f = f.unwrap();
        (f.data, f.ipv4_offset.expect("the sample is all IPv4"))
    }));
    assert_eq!(ours.len(), kernels.len());
    let differ = ours.iter().zip(&kernels).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of {} packets differ from the kernel's", ours.len());
}
