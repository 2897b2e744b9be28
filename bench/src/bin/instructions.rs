//! Instructions per packet on the established fast path, for `valgrind --tool=callgrind`.
//!
//! Why: criterion's nanoseconds move with whatever else runs on this shared 2-core machine;
//! an instruction count does not (callgrind gives the same total for the same binary and
//! input). It is a proxy (an atomic read-modify-write or a cache miss costs far more than one
//! plain instruction), used to see what a change to the packet path adds or removes.
//!
//! `instructions <udp_out|udp_in|tcp_out|tcp_in> <passes>` translates `passes` times one
//! 64-byte packet on each of 1024 established flows through one `Worker`.
//! `bench/tools/instructions.sh` runs it under callgrind with 1 and 11 passes and prints the
//! difference per packet, so the set-up cancels out.

use netnat_bench::{config, establish_tcp, establish_udp, tcp, udp, Packet, ACK, NOW, REMOTE, REMOTE_PORT};
use netnat_engine::{Nat, Verdict};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: instructions <udp_out|udp_in|tcp_out|tcp_in> <passes>";
    let (case, passes) = match args.as_slice() {
        [_, case, passes] => (case.as_str(), passes.parse::<usize>().map_err(|e| anyhow::anyhow!("{usage}: {e}"))?),
        _ => anyhow::bail!("{usage}"),
    };
    let nat = Nat::new(config(1, 1 << 20))?;
    let templates: Vec<Packet> = match case {
        "udp_out" => establish_udp(&nat, 1024)?.internal.iter().map(|&i| udp(i, (REMOTE, REMOTE_PORT))).collect(),
        "udp_in" => establish_udp(&nat, 1024)?.external.iter().map(|&e| udp((REMOTE, REMOTE_PORT), e)).collect(),
        "tcp_out" => establish_tcp(&nat, 1024)?.internal.iter().map(|&i| tcp(i, (REMOTE, REMOTE_PORT), ACK)).collect(),
        "tcp_in" => establish_tcp(&nat, 1024)?.external.iter().map(|&e| tcp((REMOTE, REMOTE_PORT), e, ACK)).collect(),
        other => anyhow::bail!("unknown case {other:?}; {usage}"),
    };
    let mut worker = nat.worker();
    let mut forwarded = 0usize;
    for _ in 0..passes {
        for t in &templates {
            let mut buf: Packet = *t;
            if let Verdict::Forward { .. } = worker.handle_packet(NOW, &mut buf) {
                forwarded += 1;
            }
        }
    }
    anyhow::ensure!(forwarded == passes * templates.len(), "only {forwarded} packets forwarded");
    Ok(())
}
