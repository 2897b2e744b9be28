//! The leak guard (Linux): a second, netfilter-independent wall between the internal
//! prefixes and the outside.
//!
//! netnat's NFQUEUE rules ([`super::rules`]) make outbound traffic fail closed, but they live
//! in netfilter, and anyone can flush netfilter (`nft flush ruleset`, `iptables -F`, a
//! firewall reload). Between such a flush and the daemon putting its rules back, forwarded
//! packets of the internal hosts would leave with their internal source. So on every
//! interface but `lo` netnat also installs a tc egress filter (`clsact` qdisc, classic BPF in
//! direct-action mode, preference [`TC_PREF`]) that drops any IPv4 packet whose source is in
//! an internal prefix and whose destination is not. It runs after POSTROUTING, so translated
//! packets (external source) and traffic between internal hosts pass; what it drops is exactly
//! what the NAT must never let out untranslated. Nothing in netfilter touches it, and like the
//! rules it stays while any NAT is configured, also when the daemon stops or dies.
//!
//! Loads are relative to the network header (`SKF_NET_OFF`), so the program is right on
//! interfaces with or without a link-layer header (ethernet, tun, wireguard).

use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::rules::RulesError;

/// The tc filter preference netnat's egress filter uses on each interface: unusual, so it does
/// not replace someone else's filter, and low enough to run before most.
pub const TC_PREF: u16 = 20033;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

// Opcodes (linux/filter.h): class | size/operation | mode/source.
/// `BPF_LD | BPF_W | BPF_ABS` (0x00 | 0x00 | 0x20).
const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
const ALU_AND_K: u16 = 0x04 | 0x50;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_JMP | BPF_JA`.
const JMP_JA: u16 = 0x05;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;
/// `SKF_NET_OFF`: loads at this offset and above are relative to the network header.
const NET_OFF: i32 = -0x100000;
/// `TC_ACT_SHOT`: drop.
const SHOT: u32 = 2;
/// `TC_ACT_UNSPEC`: not this filter's business; the next filter (or the default) decides.
const UNSPEC: u32 = u32::MAX;

fn ld_net(offset: i32) -> Insn {
    Insn { code: LD_W_ABS, jt: 0, jf: 0, k: (NET_OFF + offset) as u32 }
}

/// The program: `SHOT` when the source is in one of `prefixes` and the destination is in
/// none of them, else `UNSPEC`.
pub fn program(prefixes: &[Ipv4Net]) -> Vec<Insn> {
    // Per prefix: load the address, mask it, compare; on a match jump (with `ja`, whose
    // 32-bit offset has no limit on the number of prefixes) to the next stage.
    fn matches_any(out: &mut Vec<Insn>, field: i32, prefixes: &[Ipv4Net], then: usize) {
        for p in prefixes {
            out.push(ld_net(field));
            out.push(Insn { code: ALU_AND_K, jt: 0, jf: 0, k: u32::from(p.netmask()) });
            out.push(Insn { code: JMP_JEQ_K, jt: 0, jf: 1, k: u32::from(p.network()) });
            let here = out.len();
            out.push(Insn { code: JMP_JA, jt: 0, jf: 0, k: (then - here - 1) as u32 });
        }
    }
    let n = prefixes.len();
    // Layout: [source checks: 4n] [ret UNSPEC] [destination checks: 4n] [ret SHOT] [ret UNSPEC]
    let source_internal = 4 * n + 1;
    let pass = source_internal + 4 * n + 1;
    let mut out = Vec::with_capacity(pass + 1);
    matches_any(&mut out, 12, prefixes, source_internal);
    out.push(Insn { code: RET_K, jt: 0, jf: 0, k: UNSPEC });
    matches_any(&mut out, 16, prefixes, pass);
    out.push(Insn { code: RET_K, jt: 0, jf: 0, k: SHOT });
    out.push(Insn { code: RET_K, jt: 0, jf: 0, k: UNSPEC });
    out
}

/// The program in tc's `bytecode` syntax (`n,code jt jf k,...`), as `tc filter show` prints it.
pub fn bytecode(program: &[Insn]) -> String {
    let mut text = program.len().to_string();
    for i in program {
        text.push_str(&format!(",{} {} {} {}", i.code, i.jt, i.jf, i.k));
    }
    text
}

/// The interfaces that get the filter: every network device but loopback (not the other
/// entries `/sys/class/net` may hold, such as the bonding driver's `bonding_masters` file).
fn interfaces() -> Result<Vec<String>, RulesError> {
    let fail = |e: std::io::Error| RulesError::Command { command: "ls /sys/class/net".into(), detail: e.to_string() };
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net").map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "lo" && entry.path().join("ifindex").exists() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn tc(args: &[&str]) -> Result<String, RulesError> {
    let command = format!("tc {}", args.join(" "));
    let fail = |detail: String| RulesError::Command { command: command.clone(), detail };
    let out = Command::new("tc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("{e} (tc is in iproute2: apt-get install iproute2)")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Installs or replaces the filter for `prefixes` on every interface but `lo`. An interface
/// that refuses it (a device without qdiscs) is logged and left out: the NFQUEUE rules
/// still fail closed there, and [`read_back`] shows it as missing, so it is tried again
/// only when something changes.
pub fn apply(prefixes: &[Ipv4Net]) -> Result<(), RulesError> {
    let code = bytecode(&program(prefixes));
    let pref = TC_PREF.to_string();
    for dev in interfaces()? {
        let attach = || -> Result<(), RulesError> {
            if !tc(&["qdisc", "show", "dev", &dev])?.contains("clsact") {
                tc(&["qdisc", "add", "dev", &dev, "clsact"])?;
            }
            let filter = ["filter", "replace", "dev", &dev, "egress", "pref", &pref, "handle", "1", "protocol", "ip"];
            let mut args = filter.to_vec();
            args.extend(["bpf", "direct-action", "bytecode", &code]);
            tc(&args).map(|_| ())
        };
        if let Err(e) = attach() {
            tracing::warn!(
                interface = %dev,
                "cannot attach the leak guard (needs the clsact qdisc and cls_bpf): {e}; the NFQUEUE rules alone keep internal sources in there"
            );
        }
    }
    Ok(())
}

/// What the kernel holds: each interface with netnat's filter on it (or nothing), for
/// [`super::rules::Installed`]'s comparison. A new interface shows up here without the
/// filter, so the keeper installs it there too.
pub fn read_back() -> String {
    let pref = TC_PREF.to_string();
    let mut text = String::new();
    for dev in interfaces().unwrap_or_default() {
        let shown = tc(&["filter", "show", "dev", &dev, "egress", "pref", &pref]).unwrap_or_default();
        let code = shown.lines().find_map(|l| l.split_once("bytecode ").map(|(_, c)| c.trim().to_owned()));
        text.push_str(&format!("tc egress {dev}: {}\n", code.as_deref().unwrap_or("<missing>")));
    }
    text
}

/// Removes the filter from every interface; the `clsact` qdisc goes too when nothing else
/// is attached to it.
pub fn remove() {
    let pref = TC_PREF.to_string();
    for dev in interfaces().unwrap_or_default() {
        if tc(&["filter", "del", "dev", &dev, "egress", "pref", &pref]).is_ok() {
            let others = ["egress", "ingress"]
                .iter()
                .any(|dir| tc(&["filter", "show", "dev", &dev, dir]).is_ok_and(|s| !s.trim().is_empty()));
            if !others {
                let _ = tc(&["qdisc", "del", "dev", &dev, "clsact"]);
            }
        }
    }
}

/// Runs `program` on an IPv4 header the way the kernel does for our instruction subset
/// (tests only: the kernel is the real interpreter, the e2e tests check it there).
#[cfg(test)]
fn run(program: &[Insn], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> u32 {
    let mut header = [0u8; 20];
    header[12..16].copy_from_slice(&src.octets());
    header[16..20].copy_from_slice(&dst.octets());
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let at = (i.k as i32 - NET_OFF) as usize;
                a = u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= i.k,
            JMP_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JMP_JA => pc += i.k as usize,
            RET_K => return i.k,
            other => panic!("instruction {other} not in the subset"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn drops_exactly_internal_sources_leaving_for_outside() {
        let prefixes = nets(&["10.100.0.0/16", "10.101.4.0/24"]);
        let p = program(&prefixes);
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let cases = [
            ("10.100.0.2", "198.51.100.7", SHOT),    // a vm's packet, untranslated
            ("10.101.4.9", "203.0.113.9", SHOT),     // the second NAT's
            ("10.100.0.2", "224.0.0.251", SHOT),     // inside to multicast
            ("10.100.0.2", "10.101.4.9", UNSPEC),    // between internal prefixes
            ("10.100.0.1", "10.100.0.2", UNSPEC),    // the host to a vm
            ("203.0.113.1", "198.51.100.7", UNSPEC), // translated
            ("198.51.100.7", "10.100.0.2", UNSPEC),  // translated inbound
            ("10.101.5.1", "198.51.100.7", UNSPEC),  // outside the /24
            ("10.99.255.255", "198.51.100.7", UNSPEC),
        ];
        for (src, dst, want) in cases {
            assert_eq!(run(&p, a(src), a(dst)), want, "{src} -> {dst}");
        }
    }

    #[test]
    fn every_jump_stays_inside_the_program_and_it_ends_in_a_return() {
        for n in [0, 1, 2, 70] {
            let prefixes: Vec<Ipv4Net> =
                (0..n).map(|i| Ipv4Net::new(Ipv4Addr::new(10, 100, i as u8, 0), 24).unwrap()).collect();
            let p = program(&prefixes);
            assert_eq!(p.last().unwrap().code, RET_K);
            for (at, i) in p.iter().enumerate() {
                let targets: Vec<usize> = match i.code {
                    JMP_JEQ_K => vec![at + 1 + usize::from(i.jt), at + 1 + usize::from(i.jf)],
                    JMP_JA => vec![at + 1 + i.k as usize],
                    _ => vec![],
                };
                assert!(targets.iter().all(|t| *t < p.len()), "n={n}: jump out of range at {at}");
            }
            if n == 0 {
                assert_eq!(run(&p, Ipv4Addr::new(10, 100, 0, 2), Ipv4Addr::new(198, 51, 100, 7)), UNSPEC);
            }
        }
    }

    #[test]
    fn bytecode_is_what_tc_takes_and_prints() {
        let text = bytecode(&program(&nets(&["10.100.0.0/16"])));
        // 4 + 1 + 4 + 2 instructions; the source load at the network header + 12.
        assert!(text.starts_with("11,32 0 0 4293918732,84 0 0 4294901760,21 0 1 174325760,5 0 0 "), "{text}");
        assert!(text.ends_with(",6 0 0 2,6 0 0 4294967295"), "{text}");
    }
}
