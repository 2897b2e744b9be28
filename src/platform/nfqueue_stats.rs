//! The kernel's counters for the daemon's NFQUEUE queues (Linux): packets a queue dropped
//! because it was full (`queue_dropped`) or because the netlink socket to the daemon was
//! full (`user_dropped`). netnat never sees these packets, so only the kernel can count them.
//!
//! Read from `/proc/net/netfilter/nfnetlink_queue` of the daemon's network namespace, one
//! line per bound queue:
//! `queue_number peer_portid queue_total copy_mode copy_range queue_dropped user_dropped
//! id_sequence 1`. A queue is the daemon's when its `peer_portid` is the port id of one of
//! the daemon's own netlink sockets (`/proc/net/netlink`, matched to `/proc/self/fd` by
//! inode), so another program's queues are not counted. The kernel keeps 32-bit counters
//! per binding: they start at 0 when the daemon binds the queue and wrap at 2^32.
//!
//! The parsers are pure; [`own_queues`] does the reading. An absent queue file (the
//! `nfnetlink_queue` module not loaded) gives zeros and a note, not an error. The types and
//! parsers compile everywhere (the daemon's statistics carry them); only Linux reads the files.

#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

/// The kernel's per-queue table.
pub const QUEUE_FILE: &str = "/proc/net/netfilter/nfnetlink_queue";

/// The kernel's table of netlink sockets.
pub const NETLINK_FILE: &str = "/proc/net/netlink";

/// `NETLINK_NETFILTER`, the netlink family NFQUEUE sockets belong to.
const NETLINK_NETFILTER: u32 = 12;

/// One line of [`QUEUE_FILE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QueueRow {
    /// The queue number (`--queue-num`).
    pub queue_number: u16,
    /// The port id of the netlink socket bound to the queue.
    pub peer_portid: u32,
    /// Packets waiting in the queue for a verdict (`queue_total`).
    pub waiting: u32,
    /// Packets dropped because the queue was full (`queue_dropped`).
    pub queue_dropped: u32,
    /// Packets dropped because the netlink socket was full (`user_dropped`).
    pub user_dropped: u32,
}

/// Parses [`QUEUE_FILE`]; lines that do not have the expected numeric columns are skipped.
pub fn parse_queues(text: &str) -> Vec<QueueRow> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                return None;
            }
            Some(QueueRow {
                queue_number: f[0].parse().ok()?,
                peer_portid: f[1].parse().ok()?,
                waiting: f[2].parse().ok()?,
                queue_dropped: f[5].parse().ok()?,
                user_dropped: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// The port ids of the `NETLINK_NETFILTER` sockets in [`NETLINK_FILE`] whose inode is in
/// `inodes` (columns: `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`; `Pid` is the
/// port id). The header and malformed lines are skipped.
pub fn parse_netfilter_portids(text: &str, inodes: &HashSet<u64>) -> HashSet<u32> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let protocol: u32 = f.get(1)?.parse().ok()?;
            let portid: u32 = f.get(2)?.parse().ok()?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            (protocol == NETLINK_NETFILTER && inodes.contains(&inode)).then_some(portid)
        })
        .collect()
}

/// The inode of a socket from a `/proc/<pid>/fd/<n>` link target (`socket:[12345]`).
pub fn socket_inode(target: &Path) -> Option<u64> {
    target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The sums over the daemon's queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Packets dropped because a queue was full.
    pub queue_dropped: u64,
    /// Packets dropped because a netlink socket was full.
    pub user_dropped: u64,
    /// Both: every packet the kernel diverted to the daemon but could not deliver.
    pub dropped: u64,
}

/// The kernel's counters for the daemon's queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelQueueStats {
    /// Sums over `queues`.
    pub stats: Totals,
    /// The daemon's queues, by queue number.
    pub queues: Vec<QueueRow>,
    /// Why the numbers may be incomplete (no queue file, no queue of ours found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The rows of `rows` bound by one of `own` (port ids), with their sums.
pub fn summarise(rows: &[QueueRow], own: &HashSet<u32>) -> KernelQueueStats {
    let mut queues: Vec<QueueRow> = rows.iter().filter(|r| own.contains(&r.peer_portid)).copied().collect();
    queues.sort_by_key(|r| r.queue_number);
    let queue_dropped = queues.iter().map(|r| u64::from(r.queue_dropped)).sum();
    let user_dropped = queues.iter().map(|r| u64::from(r.user_dropped)).sum();
    let note = queues.is_empty().then(|| format!("no NFQUEUE in {QUEUE_FILE} is bound by this daemon"));
    KernelQueueStats {
        stats: Totals { queue_dropped, user_dropped, dropped: queue_dropped + user_dropped },
        queues,
        note,
    }
}

/// The kernel's counters for the queues this process has bound.
#[cfg(target_os = "linux")]
pub fn own_queues() -> KernelQueueStats {
    let text = match std::fs::read_to_string(QUEUE_FILE) {
        Ok(text) => text,
        Err(e) => {
            return KernelQueueStats {
                note: Some(format!(
                    "cannot read {QUEUE_FILE} ({e}): kernel queue drops unknown, shown as 0 (is the nfnetlink_queue module loaded?)"
                )),
                ..KernelQueueStats::default()
            }
        }
    };
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).filter_map(|t| socket_inode(&t)).collect()
        })
        .unwrap_or_default();
    let own = std::fs::read_to_string(NETLINK_FILE).map(|t| parse_netfilter_portids(&t, &inodes)).unwrap_or_default();
    summarise(&parse_queues(&text), &own)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two queues of the daemon (port ids 4242 and 2151672320), one of another program.
    const QUEUES: &str = "    0   4242     3 2 65531  1200     7    90210  1
    1 2151672320     0 2 65531     0    35    12000  1
   77   9999     0 2 65531   500     0      400  1
";

    const NETLINK: &str = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
000000000366fc3a 0   0          00000000 0        0        0     2        0        4
00000000c26f0c0b 12  4242       00000000 0        0        0     2        0        50001
000000005fc22d54 12  2151672320 00000000 0        0        0     2        0        50002
000000006ed5fa61 12  9999       00000000 0        0        0     2        0        60000
0000000012345678 0   4242       00000000 0        0        0     2        0        50003
";

    #[test]
    fn queue_lines_are_parsed_by_column() {
        let rows = parse_queues(QUEUES);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            QueueRow { queue_number: 0, peer_portid: 4242, waiting: 3, queue_dropped: 1200, user_dropped: 7 }
        );
        assert_eq!(rows[1].peer_portid, 2_151_672_320);
        assert_eq!((rows[1].queue_dropped, rows[1].user_dropped), (0, 35));
        assert_eq!(rows[2].queue_number, 77);
    }

    #[test]
    fn malformed_queue_lines_are_skipped() {
        let text =
            "garbage\n0 1 2 3\n  5 4242 0 2 65531 x 0 1 1\n70000 1 0 2 65531 1 1 1 1\n\n  3 4242 0 2 65531 4 5 6 1\n";
        let rows = parse_queues(text);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].queue_number, rows[0].queue_dropped, rows[0].user_dropped), (3, 4, 5));
        assert!(parse_queues("").is_empty());
    }

    #[test]
    fn own_port_ids_are_netfilter_sockets_with_our_inodes() {
        let ours: HashSet<u64> = [50001, 50002, 50003, 4].into();
        let got = parse_netfilter_portids(NETLINK, &ours);
        // 50003 has port id 4242 too but is a NETLINK_ROUTE socket; 60000 is not ours.
        assert_eq!(got, [4242, 2_151_672_320].into());
        assert!(parse_netfilter_portids(NETLINK, &HashSet::new()).is_empty());
    }

    #[test]
    fn socket_inodes_come_from_fd_links() {
        assert_eq!(socket_inode(Path::new("socket:[50001]")), Some(50001));
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(socket_inode(Path::new("anon_inode:[eventfd]")), None);
        assert_eq!(socket_inode(Path::new("socket:[12")), None);
    }

    #[test]
    fn only_our_queues_are_summed_and_listed() {
        let own = parse_netfilter_portids(NETLINK, &[50001, 50002].into());
        let s = summarise(&parse_queues(QUEUES), &own);
        assert_eq!(s.queues.iter().map(|r| r.queue_number).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(s.stats, Totals { queue_dropped: 1200, user_dropped: 42, dropped: 1242 });
        assert_eq!(s.note, None);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["stats"]["dropped"], 1242);
        assert_eq!(json["queues"][1]["user_dropped"], 35);
        assert!(json.get("note").is_none());
    }

    #[test]
    fn sums_do_not_wrap_at_32_bits() {
        let row = |q, d| QueueRow { queue_number: q, peer_portid: 1, waiting: 0, queue_dropped: d, user_dropped: d };
        let s = summarise(&[row(0, u32::MAX), row(1, u32::MAX)], &[1].into());
        assert_eq!(s.stats.dropped, 4 * u64::from(u32::MAX));
    }

    #[test]
    fn no_queue_of_ours_gives_zeros_and_a_note() {
        let s = summarise(&parse_queues(QUEUES), &HashSet::new());
        assert_eq!(s.stats, Totals::default());
        assert!(s.queues.is_empty());
        assert!(s.note.as_deref().is_some_and(|n| n.contains("no NFQUEUE")), "{s:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_no_queues() {
        // The test binary binds no NFQUEUE: zeros, and a note whether or not the module is loaded.
        let s = own_queues();
        assert_eq!(s.stats, Totals::default());
        assert!(s.note.is_some());
    }
}
