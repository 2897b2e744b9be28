//! The kernel rules that divert the NATs' packets to netnat through NFQUEUE (Linux).
//!
//! What is installed, and nothing else:
//! - iptables (with iptables-nft these live in the nftables tables `ip raw` and `ip mangle`):
//!   two chains of netnat's own, jumped to from the top of the built-in chains.
//!   - `raw` / `NETNAT-PRE` (from PREROUTING), before conntrack and routing: a packet with a
//!     source inside an internal prefix that did not arrive on the interface the host routes
//!     that prefix through is dropped (`-m rpfilter --invert`, a strict reverse-path check):
//!     netnat tells internal from external traffic by source address, so a forged internal
//!     source from outside must never reach it (it would open sessions for the forged host,
//!     or be hairpinned past the filtering). Traffic between
//!     internal prefixes and loopback traffic is left alone. Then every packet from outside
//!     the internal prefixes addressed to an internal host (not to one of the host's own
//!     addresses) is dropped: the **routed bypass**, a remote that routes the internal prefix
//!     via the NAT host, must never reach a VM without a mapping. Translated inbound packets
//!     are not affected: they are still addressed to the external address here, and a packet
//!     accepted from a queue continues after the `raw` table. Packets that may belong to a
//!     NAT (inbound, or hairpinned from an internal host; to an external address, or to
//!     any local address when the NAT uses the host's addresses; TCP/UDP to the dynamic port
//!     range or a static mapping port; ICMP echo replies and errors) are queued **fail-open**
//!     (`--queue-bypass`): with no daemon they reach the host as if netnat were not there, so
//!     the host's own traffic never black-holes. netnat hands back to the host every inbound
//!     packet that belongs to no NAT session.
//!   - `mangle` / `NETNAT-POST` (from POSTROUTING), after routing: outbound packets of a NAT
//!     (source in its internal prefix, destination outside all internal prefixes) are queued
//!     **fail-closed** (no bypass): with no daemon they are dropped, so internal addresses
//!     never leak to the outside untranslated.
//! - nftables table `ip netnat`, chain `prerouting` at priority -250 (after `raw`, before
//!   conntrack): the flows netnat owns are exempted from conntrack (`notrack`), so the
//!   kernel's own NAT (masquerade) can never also rewrite them and stateful firewalls do not
//!   see half-translated connections: outbound packets of a NAT (before translation), and
//!   packets routed toward an internal prefix from outside it (inbound packets after
//!   translation). (iptables cannot do the second: a packet accepted from a queue leaves the
//!   `raw` table, so the notrack must come from a later base chain.)
//! - the leak guard ([`super::leak_guard`]): a tc egress filter on every interface, outside
//!   netfilter, that drops internal sources leaving for outside; it holds while someone has
//!   flushed the rules above and the daemon has not yet put them back.
//!
//! The rules stay in place while any NAT is configured, also when the daemon stops or dies:
//! outbound traffic then fails closed. Only removing the last NAT (or `netnat daemon
//! --remove-rules`) removes them. [`Installed`] reads them back so the daemon can notice
//! when someone else removed or changed them (`nft flush ruleset`, a firewall reload) and put
//! them back.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use netnat_engine::Protocol;

use super::leak_guard;

/// The chain in `raw` (PREROUTING).
pub const PRE_CHAIN: &str = "NETNAT-PRE";
/// The chain in `mangle` (POSTROUTING).
pub const POST_CHAIN: &str = "NETNAT-POST";
/// netnat's own nftables table (family ip).
pub const NFT_TABLE: &str = "netnat";

/// Which NFQUEUE numbers the workers listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queues {
    /// First queue number.
    pub first: u16,
    /// How many (one worker thread each).
    pub count: u16,
}

impl Queues {
    fn target(&self) -> String {
        if self.count <= 1 {
            format!("NFQUEUE --queue-num {}", self.first)
        } else {
            format!("NFQUEUE --queue-balance {}:{}", self.first, self.first + self.count - 1)
        }
    }
}

/// Which inbound packets to queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundMatch {
    /// Destination address; `None` is any address of the host.
    pub destination: Option<Ipv4Addr>,
    /// TCP, UDP or ICMP.
    pub protocol: Protocol,
    /// Destination ports (ignored for ICMP).
    pub ports: (u16, u16),
}

/// Everything the rules depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// Queue numbers.
    pub queues: Queues,
    /// The internal prefixes of all NATs.
    pub internal_prefixes: Vec<Ipv4Net>,
    /// Inbound matches (deduplicated by the caller or not; duplicates are harmless).
    pub inbound: Vec<InboundMatch>,
}

/// Why the rules could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// iptables or nft is missing or failed.
    #[error("{command} failed: {detail}; netnat needs iptables (iptables-nft, with the NFQUEUE target) and nft: apt-get install iptables nftables")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        detail: String,
    },
}

/// The `iptables-restore --noflush` input for `spec`.
pub fn render(spec: &RuleSpec) -> String {
    let bypass = format!("{} --queue-bypass", spec.queues.target());
    let mut raw = vec!["*raw".to_owned(), format!(":{PRE_CHAIN} - [0:0]"), format!("-A {PRE_CHAIN} -i lo -j RETURN")];
    for p in &spec.internal_prefixes {
        raw.push(format!("-A {PRE_CHAIN} -s {} -m rpfilter --invert -j DROP", p.trunc()));
    }
    for p in &spec.internal_prefixes {
        for q in &spec.internal_prefixes {
            raw.push(format!("-A {PRE_CHAIN} -s {} -d {} -j RETURN", p.trunc(), q.trunc()));
        }
    }
    for q in &spec.internal_prefixes {
        raw.push(format!("-A {PRE_CHAIN} -d {} -m addrtype ! --dst-type LOCAL -j DROP", q.trunc()));
    }
    // Every fragment of a datagram to a NAT's destinations is queued, whatever its ports
    // (`u32`: the flags and fragment offset word, MF or a non-zero offset): the port rules
    // below see a first fragment's ports, but a later fragment has none (its payload bytes
    // are read as ports, so it may or may not match). A datagram split between netnat and the
    // host is lost either way: netnat holds later fragments waiting for a first fragment the
    // host got, or the host waits for fragments netnat translated. netnat hands the
    // fragments of a datagram that is no NAT's to the host whole.
    let mut fragment_destinations: Vec<String> = Vec::new();
    for m in &spec.inbound {
        let dst = match m.destination {
            Some(a) => format!("-d {a}/32"),
            None => "-m addrtype --dst-type LOCAL".to_owned(),
        };
        if !fragment_destinations.contains(&dst) {
            raw.push(format!("-A {PRE_CHAIN} {dst} -m u32 --u32 \"4&0x3fff=0x1:0x3fff\" -j {bypass}"));
            fragment_destinations.push(dst);
        }
    }
    for m in &spec.inbound {
        let dst = match m.destination {
            Some(a) => format!("-d {a}/32"),
            None => "-m addrtype --dst-type LOCAL".to_owned(),
        };
        match m.protocol {
            Protocol::Icmp => {
                for t in ["echo-reply", "destination-unreachable", "time-exceeded", "parameter-problem"] {
                    raw.push(format!("-A {PRE_CHAIN} {dst} -p icmp --icmp-type {t} -j {bypass}"));
                }
            }
            Protocol::Tcp | Protocol::Udp => {
                let proto = if m.protocol == Protocol::Tcp { "tcp" } else { "udp" };
                let ports =
                    if m.ports.0 == m.ports.1 { m.ports.0.to_string() } else { format!("{}:{}", m.ports.0, m.ports.1) };
                raw.push(format!("-A {PRE_CHAIN} {dst} -p {proto} --dport {ports} -j {bypass}"));
            }
        }
    }
    raw.push("COMMIT".to_owned());
    let mut mangle = vec!["*mangle".to_owned(), format!(":{POST_CHAIN} - [0:0]")];
    for q in &spec.internal_prefixes {
        mangle.push(format!("-A {POST_CHAIN} -d {} -j RETURN", q.trunc()));
    }
    for p in &spec.internal_prefixes {
        mangle.push(format!("-A {POST_CHAIN} -s {} -j {}", p.trunc(), spec.queues.target()));
    }
    mangle.push("COMMIT".to_owned());
    let mut out = raw.join("\n");
    out.push('\n');
    out.push_str(&mangle.join("\n"));
    out.push('\n');
    out
}

/// The `nft -f` input for `spec`: netnat's own table, replaced as a whole.
pub fn render_nft(spec: &RuleSpec) -> String {
    let set: Vec<String> = spec.internal_prefixes.iter().map(|p| p.trunc().to_string()).collect();
    let set = format!("{{ {} }}", set.join(", "));
    format!(
        "table ip {NFT_TABLE} {{}}\nflush table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -250; policy accept;\n\
         \t\tip saddr {set} ip daddr != {set} fib daddr type != local notrack\n\
         \t\tip daddr {set} ip saddr != {set} notrack\n\
         \t}}\n}}\n"
    )
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), RulesError> {
    let command = args.join(" ");
    let fail = |detail: String| RulesError::Command { command: command.clone(), detail };
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

const JUMPS: [(&str, &str, &str); 2] = [("raw", "PREROUTING", PRE_CHAIN), ("mangle", "POSTROUTING", POST_CHAIN)];

/// Installs or replaces the rules (atomically per table), then makes sure the jumps exist.
pub fn apply(spec: &RuleSpec) -> Result<(), RulesError> {
    run(&["nft", "-f", "-"], Some(&render_nft(spec)))?;
    run(&["iptables-restore", "--noflush"], Some(&render(spec)))?;
    for (table, builtin, chain) in JUMPS {
        if run(&["iptables", "-w", "-t", table, "-C", builtin, "-j", chain], None).is_err() {
            run(&["iptables", "-w", "-t", table, "-I", builtin, "1", "-j", chain], None)?;
        }
    }
    leak_guard::apply(&spec.internal_prefixes)
}

/// The rules as the kernel holds them, read back after [`apply`]: what [`Installed::intact`]
/// compares against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    readback: String,
}

/// Reads back netnat's chains, the jumps to them and its nftables table (empty parts where
/// something is missing).
fn read_back() -> String {
    let capture = |args: &[&str]| -> String {
        match Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).stderr(Stdio::null()).output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => String::from("<missing>\n"),
        }
    };
    let mut text = String::new();
    for (table, builtin, chain) in JUMPS {
        text.push_str(&capture(&["iptables", "-w", "-t", table, "-S", chain]));
        let jumps = capture(&["iptables", "-w", "-t", table, "-S", builtin]);
        let jump = format!("-j {chain}");
        let n = jumps.lines().filter(|l| l.ends_with(&jump)).count();
        text.push_str(&format!("{table} {builtin} jumps to {chain}: {n}\n"));
    }
    text.push_str(&capture(&["nft", "list", "table", "ip", NFT_TABLE]));
    text.push_str(&leak_guard::read_back());
    text
}

impl Installed {
    /// Whether the rules are still as they were installed.
    pub fn intact(&self) -> bool {
        read_back() == self.readback
    }
}

/// [`apply`], then reads the result back for [`Installed::intact`].
pub fn apply_and_read_back(spec: &RuleSpec) -> Result<Installed, RulesError> {
    apply(spec)?;
    Ok(Installed { readback: read_back() })
}

/// Removes the jumps and netnat's chains; absent ones are fine.
pub fn remove() -> Result<(), RulesError> {
    for (table, builtin, chain) in JUMPS {
        // At most a few duplicate jumps can exist (e.g. after a crash during install).
        for _ in 0..16 {
            if run(&["iptables", "-w", "-t", table, "-D", builtin, "-j", chain], None).is_err() {
                break;
            }
        }
        let _ = run(&["iptables", "-w", "-t", table, "-F", chain], None);
        let _ = run(&["iptables", "-w", "-t", table, "-X", chain], None);
    }
    let _ = run(&["nft", "delete", "table", "ip", NFT_TABLE], None);
    leak_guard::remove();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_queues_outbound_fail_closed_and_inbound_fail_open() {
        let spec = RuleSpec {
            queues: Queues { first: 0, count: 2 },
            internal_prefixes: vec!["10.100.0.0/16".parse().unwrap()],
            inbound: vec![
                InboundMatch { destination: None, protocol: Protocol::Udp, ports: (1024, 65535) },
                InboundMatch {
                    destination: Some(Ipv4Addr::new(203, 0, 113, 1)),
                    protocol: Protocol::Tcp,
                    ports: (80, 80),
                },
                InboundMatch { destination: None, protocol: Protocol::Icmp, ports: (0, 0) },
            ],
        };
        let text = render(&spec);
        assert!(text.contains(
            "-A NETNAT-PRE -m addrtype --dst-type LOCAL -p udp --dport 1024:65535 -j NFQUEUE --queue-balance 0:1 --queue-bypass"
        ));
        assert!(text.contains("-A NETNAT-PRE -d 203.0.113.1/32 -p tcp --dport 80 -j NFQUEUE"));
        let nft = render_nft(&spec);
        assert!(nft.contains("priority -250"), "{nft}");
        assert!(nft.contains("ip daddr { 10.100.0.0/16 } ip saddr != { 10.100.0.0/16 } notrack"), "{nft}");
        // Every fragment to a NAT destination is queued, ports or not; once per destination.
        let frag = "-m u32 --u32 \"4&0x3fff=0x1:0x3fff\" -j NFQUEUE --queue-balance 0:1 --queue-bypass";
        assert!(text.contains(&format!("-A NETNAT-PRE -m addrtype --dst-type LOCAL {frag}\n")), "{text}");
        assert!(text.contains(&format!("-A NETNAT-PRE -d 203.0.113.1/32 {frag}\n")), "{text}");
        assert_eq!(text.matches("--u32").count(), 2, "{text}");
        assert!(text.contains("-A NETNAT-POST -s 10.100.0.0/16 -j NFQUEUE --queue-balance 0:1\n"));
        assert!(!text.lines().filter(|l| l.starts_with("-A NETNAT-POST")).any(|l| l.contains("bypass")));
        assert!(text.contains("--icmp-type echo-reply"));
        assert_eq!(text.matches("COMMIT").count(), 2);
        // Forged internal sources are dropped before anything is queued.
        let pre: Vec<&str> = text.lines().filter(|l| l.starts_with("-A NETNAT-PRE")).collect();
        assert_eq!(pre[1], "-A NETNAT-PRE -s 10.100.0.0/16 -m rpfilter --invert -j DROP");
        assert!(pre[2..].iter().all(|l| !l.contains("rpfilter")));
        // Routed bypass: from outside straight to an internal host is dropped, after the
        // internal-to-internal exemption and before anything is queued.
        let bypass = "-A NETNAT-PRE -d 10.100.0.0/16 -m addrtype ! --dst-type LOCAL -j DROP";
        let at = pre.iter().position(|l| *l == bypass).expect("routed-bypass drop");
        assert_eq!(pre[at - 1], "-A NETNAT-PRE -s 10.100.0.0/16 -d 10.100.0.0/16 -j RETURN");
        assert!(pre[at + 1..].iter().all(|l| l.contains("NFQUEUE")));
    }
}
