//! What the daemon counts, collected once for both of its outputs: `Get-NetNatStatistics`
//! (JSON, [`Snapshot::to_json`]) and the metrics endpoint (`metrics.rs`, which renders the
//! same [`Snapshot`] plus the port-use summary [`Usage`]).
//!
//! Collecting reads atomics and, for the kernel's queue counters, two small `/proc` files; the
//! usage summary walks the mappings one table shard at a time (`Nat::for_each_mapping`), a
//! read lock the packet path shares. Nothing here writes to the packet path's state.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use netnat_engine::{Instant, Protocol, Stats};

use super::dataplane::{CaptureCounters, Dataplane};
use super::supervise::ThreadHealth;
use crate::platform::nfqueue_stats::KernelQueueStats;

/// One engine instance's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStats {
    /// The external addresses it translates to.
    pub addresses: Vec<Ipv4Addr>,
    /// Its counters.
    pub stats: Stats,
}

/// One NAT's counters, per engine instance.
#[derive(Clone, Debug, PartialEq)]
pub struct NatStats {
    /// Its name.
    pub name: String,
    /// Its instances (one per host address for a NAT without NetNatExternalAddress objects).
    pub instances: Vec<InstanceStats>,
}

/// Everything Get-NetNatStatistics shows, at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The NATs, in the dataplane's order.
    pub nats: Vec<NatStats>,
    /// The kernel's counters of the daemon's NFQUEUE queues (Linux; `None` elsewhere).
    pub kernel: Option<KernelQueueStats>,
    /// The capture workers' counters, by queue number.
    pub capture: Vec<(u16, CaptureCounters)>,
    /// The supervised threads' health, by name.
    pub threads: BTreeMap<String, ThreadHealth>,
    /// The daemon's clock when it was taken, seconds (the clock of `last_packet_s`).
    pub now_s: f64,
}

/// Reads the counters of `plane` at `now` (the daemon's clock).
pub fn collect(plane: &Dataplane, now: Instant) -> Snapshot {
    let nats = plane
        .nats()
        .iter()
        .map(|nat| NatStats {
            name: nat.name.clone(),
            instances: nat
                .instances()
                .iter()
                .map(|i| InstanceStats { addresses: i.addresses.clone(), stats: i.nat.stats() })
                .collect(),
        })
        .collect();
    #[cfg(target_os = "linux")]
    let kernel = Some(crate::platform::nfqueue_stats::own_queues());
    #[cfg(not(target_os = "linux"))]
    let kernel = None;
    Snapshot {
        nats,
        kernel,
        capture: plane.capture_counters(),
        threads: plane.thread_health(),
        now_s: now.as_micros() as f64 / 1e6,
    }
}

impl Snapshot {
    /// The Get-NetNatStatistics object: the engines' counters by NAT name (an array of
    /// `{addresses, stats}` per NAT) and, on Linux, under [`KERNEL_QUEUES`], the counters of
    /// the daemon's NFQUEUE queues in the same shape: the kernel's (packets it dropped before
    /// netnat could see them) and the capture workers' (packets received, GSO super-packets,
    /// checksums completed, ...); under [`DAEMON_THREADS`] each thread's health.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for nat in &self.nats {
            let per: Vec<serde_json::Value> = nat
                .instances
                .iter()
                .map(|i| serde_json::json!({ "addresses": i.addresses, "stats": i.stats }))
                .collect();
            out.insert(nat.name.clone(), serde_json::Value::Array(per));
        }
        if let Some(kernel) = &self.kernel {
            let mut value =
                serde_json::to_value(kernel).unwrap_or_else(|e| serde_json::json!({ "note": e.to_string() }));
            add_capture_counters(&mut value, &self.capture);
            insert_unclaimed(&mut out, KERNEL_QUEUES, serde_json::Value::Array(vec![value]));
        }
        if !self.threads.is_empty() {
            let rows: Vec<serde_json::Value> = self
                .threads
                .iter()
                .map(|(name, h)| serde_json::json!({ "thread": name, "alive": h.alive, "last_packet_s": h.last_packet_s }))
                .collect();
            insert_unclaimed(&mut out, DAEMON_THREADS, serde_json::Value::Array(rows));
        }
        out
    }
}

/// Port use of one NAT: sessions by protocol, external ports in use per external address, and
/// the internal hosts holding the most ports ("who is exhausting ports").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sessions by protocol (every protocol present, zero or not).
    pub sessions: BTreeMap<Protocol, u64>,
    /// Per external address: the size of its dynamic port range (per protocol) and the
    /// mappings (external ports in use, static ones included) per protocol. At most
    /// [`TOP_EXTERNAL_ADDRESSES`], those with the most ports in use.
    pub external: Vec<ExternalUse>,
    /// The internal hosts with the most mappings, most first, at most [`TOP_INTERNAL_HOSTS`].
    pub top_hosts: Vec<HostUse>,
    /// Internal hosts holding at least one mapping (shown or not).
    pub hosts: u64,
}

/// Port use of one external address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUse {
    /// The address.
    pub address: Ipv4Addr,
    /// Ports of its dynamic range (PortEnd - PortStart + 1), each protocol has its own.
    pub range_size: u32,
    /// External ports in use, by protocol (every protocol present).
    pub in_use: BTreeMap<Protocol, u64>,
}

/// Port use of one internal host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUse {
    /// The host.
    pub address: Ipv4Addr,
    /// Its mappings (external ports it holds), all protocols.
    pub ports: u64,
    /// Its sessions.
    pub sessions: u64,
}

/// The most external addresses a NAT's usage lists (metrics label cardinality).
pub const TOP_EXTERNAL_ADDRESSES: usize = 16;
/// The most internal hosts a NAT's usage lists (metrics label cardinality).
pub const TOP_INTERNAL_HOSTS: usize = 10;

const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];

/// The port use of the NAT named `name` in `plane`, `None` if there is none. Walks every
/// mapping once (not every session), a table shard at a time.
pub fn usage(plane: &Dataplane, name: &str) -> Option<Usage> {
    let nats = plane.nats();
    let nat = nats.iter().find(|n| n.name == name)?;
    let zero = || PROTOCOLS.iter().map(|p| (*p, 0u64)).collect::<BTreeMap<_, _>>();
    let mut sessions = zero();
    let mut external: HashMap<Ipv4Addr, ExternalUse> = HashMap::new();
    let mut hosts: HashMap<Ipv4Addr, (u64, u64)> = HashMap::new();
    for inst in nat.instances().iter() {
        for e in &inst.nat.config().external_addresses {
            external.entry(e.address).or_insert_with(|| ExternalUse {
                address: e.address,
                range_size: u32::from(e.port_end.saturating_sub(e.port_start)) + 1,
                in_use: zero(),
            });
        }
        inst.nat.for_each_mapping(|m| {
            let n = m.sessions as u64;
            *sessions.entry(m.protocol).or_default() += n;
            let ext = external.entry(m.external_address).or_insert_with(|| ExternalUse {
                address: m.external_address,
                range_size: 0,
                in_use: zero(),
            });
            *ext.in_use.entry(m.protocol).or_default() += 1;
            let host = hosts.entry(m.internal_address).or_default();
            host.0 += 1;
            host.1 += n;
        });
    }
    let mut external: Vec<ExternalUse> = external.into_values().collect();
    let used = |e: &ExternalUse| e.in_use.values().sum::<u64>();
    external.sort_by(|a, b| used(b).cmp(&used(a)).then(a.address.cmp(&b.address)));
    external.truncate(TOP_EXTERNAL_ADDRESSES);
    let host_count = hosts.len() as u64;
    let mut top: Vec<HostUse> =
        hosts.into_iter().map(|(address, (ports, sessions))| HostUse { address, ports, sessions }).collect();
    top.sort_by(|a, b| b.ports.cmp(&a.ports).then(b.sessions.cmp(&a.sessions)).then(a.address.cmp(&b.address)));
    top.truncate(TOP_INTERNAL_HOSTS);
    Some(Usage { sessions, external, top_hosts: top, hosts: host_count })
}

/// The statistics key of the daemon's threads (alive, last packet).
const DAEMON_THREADS: &str = "threads";

/// The statistics key of the kernel's NFQUEUE counters. A NAT named so keeps its entry; the
/// counters then go under the first free `nfqueue (kernel)`, `nfqueue (kernel) 2`, ...
const KERNEL_QUEUES: &str = "nfqueue";

/// Adds the capture workers' counters to the kernel's queue entry (`{stats, queues, note}`):
/// their sums to `stats` (zeros when no worker has published yet), each queue's own to the
/// row of the same `queue_number` under `queues`.
fn add_capture_counters(entry: &mut serde_json::Value, counters: &[(u16, CaptureCounters)]) {
    fn add(into: &mut serde_json::Map<String, serde_json::Value>, c: &CaptureCounters) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(c) else { return };
        for (k, v) in fields {
            let sum = into.get(&k).and_then(|x| x.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
            into.insert(k, sum.into());
        }
    }
    let mut sums = serde_json::Map::new();
    add(&mut sums, &Default::default());
    for (queue, c) in counters {
        add(&mut sums, c);
        let row = entry
            .get_mut("queues")
            .and_then(|q| q.as_array_mut())
            .and_then(|rows| rows.iter_mut().find(|r| r["queue_number"] == *queue))
            .and_then(|r| r.as_object_mut());
        if let Some(row) = row {
            add(row, c);
        }
    }
    match entry.get_mut("stats").and_then(|s| s.as_object_mut()) {
        Some(stats) => stats.extend(sums),
        None => {
            if let Some(e) = entry.as_object_mut() {
                e.insert("stats".into(), serde_json::Value::Object(sums));
            }
        }
    }
}

/// Inserts `value` under `key`, or under the first of `key (kernel)`, `key (kernel) 2`, ...
/// that no entry holds yet.
fn insert_unclaimed(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    let mut candidate = key.to_owned();
    let mut n = 1;
    while map.contains_key(&candidate) {
        candidate = if n == 1 { format!("{key} (kernel)") } else { format!("{key} (kernel) {n}") };
        n += 1;
    }
    map.insert(candidate, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port use walks the engines' mappings: two hosts, three mappings, four sessions.
    #[test]
    fn usage_counts_ports_per_address_and_host_and_sessions_per_protocol() {
        use super::super::dataplane::{Addressing, LiveNat, Template};
        use netnat_engine::{ExternalAddress, NatConfig};
        let ext = Ipv4Addr::new(203, 0, 113, 1);
        let mut config = NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), ext);
        config.external_addresses = vec![ExternalAddress { address: ext, port_start: 1024, port_end: 2047 }];
        let live =
            LiveNat::new("WinNAT".into(), Template { config, addressing: Addressing::Explicit }, &[], &[]).unwrap();
        let plane = Dataplane::new();
        plane.set_nats(vec![std::sync::Arc::new(live)]);
        let udp = |src: [u8; 4], sport: u16, dst: [u8; 4]| {
            let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            p.extend_from_slice(&[(sport >> 8) as u8, sport as u8, 0, 53, 0, 8, 0, 0]);
            netnat_engine::wire::ipv4::fill_checksum(&mut p);
            p
        };
        let now = Instant::from_secs(1);
        for (src, sport, dst) in [
            ([10, 100, 10, 11], 5000, [198, 51, 100, 7]),
            ([10, 100, 10, 11], 5000, [198, 51, 100, 8]),
            ([10, 100, 10, 11], 5001, [198, 51, 100, 7]),
            ([10, 100, 10, 12], 6000, [198, 51, 100, 7]),
        ] {
            let action = plane.process(now, &mut udp(src, sport, dst));
            assert!(matches!(action, super::super::dataplane::Delivery::Translated { .. }), "{action:?}");
        }
        let u = usage(&plane, "WinNAT").unwrap();
        assert_eq!(u.sessions[&Protocol::Udp], 4);
        assert_eq!((u.sessions[&Protocol::Tcp], u.sessions[&Protocol::Icmp]), (0, 0));
        assert_eq!(u.external.len(), 1);
        assert_eq!(
            (u.external[0].address, u.external[0].range_size, u.external[0].in_use[&Protocol::Udp]),
            (ext, 1024, 3)
        );
        assert_eq!(u.hosts, 2);
        assert_eq!(
            u.top_hosts,
            vec![
                HostUse { address: Ipv4Addr::new(10, 100, 10, 11), ports: 2, sessions: 3 },
                HostUse { address: Ipv4Addr::new(10, 100, 10, 12), ports: 1, sessions: 1 },
            ]
        );
        assert!(usage(&plane, "Other").is_none());
        let json = collect(&plane, now).to_json();
        assert_eq!(json["WinNAT"][0]["stats"]["sessions_active"], 4, "{json:?}");
    }

    #[test]
    fn statistics_key_of_the_kernel_counters_never_hides_a_nat() {
        let mut map = serde_json::Map::new();
        insert_unclaimed(&mut map, "nfqueue", serde_json::json!(1));
        assert_eq!(map["nfqueue"], 1);
        insert_unclaimed(&mut map, "nfqueue", serde_json::json!(2));
        insert_unclaimed(&mut map, "nfqueue", serde_json::json!(3));
        assert_eq!(
            (&map["nfqueue"], &map["nfqueue (kernel)"], &map["nfqueue (kernel) 2"]),
            (&1.into(), &2.into(), &3.into())
        );
    }

    #[test]
    fn capture_counters_are_summed_into_stats_and_added_to_their_queue_rows() {
        let mut entry = serde_json::json!({
            "stats": { "queue_dropped": 3, "user_dropped": 0, "dropped": 3 },
            "queues": [
                { "queue_number": 0, "peer_portid": 7, "waiting": 0, "queue_dropped": 3, "user_dropped": 0 },
                { "queue_number": 1, "peer_portid": 8, "waiting": 0, "queue_dropped": 0, "user_dropped": 0 }
            ]
        });
        let q0 = CaptureCounters { received: 10, gso_packets: 4, checksums_completed: 9, ..Default::default() };
        let q1 = CaptureCounters { received: 5, gso_packets: 1, too_long: 2, ..Default::default() };
        // Queue 9 is not in the kernel's file: it counts in the sums only.
        let q9 = CaptureCounters { received: 1, ..Default::default() };
        add_capture_counters(&mut entry, &[(0, q0), (1, q1), (9, q9)]);
        let stats = &entry["stats"];
        assert_eq!((&stats["received"], &stats["gso_packets"], &stats["too_long"]), (&16.into(), &5.into(), &2.into()));
        assert_eq!((&stats["dropped"], &stats["checksum_not_ready"]), (&3.into(), &0.into()), "{stats}");
        let rows = entry["queues"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((&rows[0]["received"], &rows[0]["gso_packets"]), (&10.into(), &4.into()));
        assert_eq!((&rows[1]["received"], &rows[1]["queue_dropped"]), (&5.into(), &0.into()));
    }
}
