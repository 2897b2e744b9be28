//! The kernel rules that divert the NATs' packets to netnat through NFQUEUE (Linux).
//!
//! What is installed (with iptables-nft these live in nftables tables `ip raw` and
//! `ip mangle`; `nft list ruleset` shows them): two chains of netnat's own, jumped to from the
//! top of the built-in chains, and nothing else.
//!
//! - `raw` / `NETNAT-PRE` (from PREROUTING), before conntrack and routing:
//!   - packets netnat translated inbound and re-injected (mark [`MARK`]) are exempted from
//!     conntrack (`CT --notrack`) and leave the chain;
//!   - traffic between internal prefixes and loopback traffic is left alone;
//!   - outbound packets of a NAT (source in its internal prefix, destination not local) are
//!     exempted from conntrack, so the kernel's own NAT (masquerade) can never also rewrite
//!     them; they are translated later, in `mangle` POSTROUTING;
//!   - inbound packets that may belong to a NAT (to an external address, or to any local
//!     address when the NAT uses the host's addresses; TCP/UDP to the dynamic port range or
//!     a static mapping port; ICMP echo replies and errors) are queued **fail-open**
//!     (`--queue-bypass`): with no daemon they reach the host as if netnat were not there, so
//!     the host's own traffic never black-holes. netnat hands back to the host every inbound
//!     packet that belongs to no NAT session.
//! - `mangle` / `NETNAT-POST` (from POSTROUTING), after routing: outbound packets of a NAT
//!   are queued **fail-closed** (no bypass): with no daemon they are dropped, so internal
//!   addresses never leak to the outside untranslated.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use netnat_engine::Protocol;

/// The chain in `raw` (PREROUTING).
pub const PRE_CHAIN: &str = "NETNAT-PRE";
/// The chain in `mangle` (POSTROUTING).
pub const POST_CHAIN: &str = "NETNAT-POST";
/// The mark bit netnat sets on inbound packets it translated and re-injected.
pub const MARK: u32 = 0x1000_0000;

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
    /// iptables is missing or failed.
    #[error("{command} failed: {detail}; netnat needs iptables (iptables-nft) with the NFQUEUE target: apt-get install iptables")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        detail: String,
    },
}

/// The `iptables-restore --noflush` input for `spec`.
pub fn render(spec: &RuleSpec) -> String {
    let mark = format!("-m mark --mark {MARK:#x}/{MARK:#x}");
    let bypass = format!("{} --queue-bypass", spec.queues.target());
    let mut raw = vec![
        "*raw".to_owned(),
        format!(":{PRE_CHAIN} - [0:0]"),
        format!("-A {PRE_CHAIN} {mark} -j CT --notrack"),
        format!("-A {PRE_CHAIN} {mark} -j RETURN"),
        format!("-A {PRE_CHAIN} -i lo -j RETURN"),
    ];
    for p in &spec.internal_prefixes {
        for q in &spec.internal_prefixes {
            raw.push(format!("-A {PRE_CHAIN} -s {} -d {} -j RETURN", p.trunc(), q.trunc()));
        }
    }
    for p in &spec.internal_prefixes {
        raw.push(format!("-A {PRE_CHAIN} -s {} -m addrtype ! --dst-type LOCAL -j CT --notrack", p.trunc()));
        raw.push(format!("-A {PRE_CHAIN} -s {} -j RETURN", p.trunc()));
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
    run(&["iptables-restore", "--noflush"], Some(&render(spec)))?;
    for (table, builtin, chain) in JUMPS {
        if run(&["iptables", "-w", "-t", table, "-C", builtin, "-j", chain], None).is_err() {
            run(&["iptables", "-w", "-t", table, "-I", builtin, "1", "-j", chain], None)?;
        }
    }
    Ok(())
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
        assert!(text.contains("-A NETNAT-PRE -s 10.100.0.0/16 -m addrtype ! --dst-type LOCAL -j CT --notrack"));
        assert!(text.contains("-A NETNAT-POST -s 10.100.0.0/16 -j NFQUEUE --queue-balance 0:1\n"));
        assert!(!text.lines().filter(|l| l.starts_with("-A NETNAT-POST")).any(|l| l.contains("bypass")));
        assert!(text.contains("--icmp-type echo-reply"));
        assert_eq!(text.matches("COMMIT").count(), 2);
    }
}
