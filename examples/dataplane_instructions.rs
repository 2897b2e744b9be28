//! Instructions per packet on the daemon's packet path, for `valgrind --tool=callgrind`
//! (repeatable on a busy machine, unlike nanoseconds; see bench/src/bin/instructions.rs for
//! the engine's own figure and what such a count does not show).
//!
//! `dataplane_instructions <capture_thread|translator_per_batch|worker|handle_packet> <passes>` translates `passes`
//! times one 64-byte UDP packet on each of 1024 established outbound flows: in batches of 64
//! through a capture thread's `Translator` (`Dataplane::run_thread`, what the NFQUEUE and
//! WinDivert workers run), through a translator made for each batch
//! (`Dataplane::process_batch`: the workers before their translators lived across batches), or
//! straight through the same engine's `Worker` or `Nat::handle_packet`.
//! `bench/tools/instructions.sh dataplane` runs it with 1 and 11 passes and prints the
//! difference per packet.

use std::ops::ControlFlow;
use std::sync::Arc;

use netnat::dataplane::{Addressing, Dataplane, LiveNat, Template};
use netnat_bench::{config, establish_udp, udp, Packet, NOW, REMOTE, REMOTE_PORT};
use netnat_capture::{Action, Batch};
use netnat_engine::{UnmatchedInbound, Verdict};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: dataplane_instructions <capture_thread|translator_per_batch|worker|handle_packet> <passes>";
    let (case, passes) = match args.as_slice() {
        [_, case, passes] => (case.as_str(), passes.parse::<usize>().map_err(|e| anyhow::anyhow!("{usage}: {e}"))?),
        _ => anyhow::bail!("{usage}"),
    };
    let mut config = config(1, 1 << 20);
    config.unmatched_inbound = UnmatchedInbound::Host;
    let plane = Dataplane::new();
    plane.set_nats(vec![Arc::new(LiveNat::new(
        "bench".into(),
        Template { config, addressing: Addressing::Explicit },
        &[],
        &[],
    )?)]);
    let nats = plane.nats();
    let nat = &nats[0].instances()[0].nat;
    let templates: Vec<Packet> =
        establish_udp(nat, 1024)?.internal.iter().map(|&i| udp(i, (REMOTE, REMOTE_PORT))).collect();
    let mut forwarded = 0usize;
    match case {
        "capture_thread" => {
            let mut batch = Batch::new(64, 1500);
            let mut chunks = (0..passes).flat_map(|_| templates.chunks(64));
            plane.run_thread(|translator| {
                let Some(chunk) = chunks.next() else { return ControlFlow::Break(()) };
                batch.clear();
                for t in chunk {
                    batch.push(t, 0, 0);
                }
                translator.process_batch(NOW, &mut batch, |_, _| Action::Accept);
                translator.batch_done(chunk.len() < 64);
                forwarded += batch.iter().filter(|p| p.action() == Action::Accept).count();
                ControlFlow::Continue(())
            });
        }
        "translator_per_batch" => {
            let mut batch = Batch::new(64, 1500);
            for _ in 0..passes {
                for chunk in templates.chunks(64) {
                    batch.clear();
                    for t in chunk {
                        batch.push(t, 0, 0);
                    }
                    plane.process_batch(NOW, &mut batch, |_, _| Action::Accept);
                    forwarded += batch.iter().filter(|p| p.action() == Action::Accept).count();
                }
            }
        }
        "worker" => {
            let mut worker = nat.worker();
            for _ in 0..passes {
                for t in &templates {
                    let mut buf: Packet = *t;
                    forwarded += usize::from(matches!(worker.handle_packet(NOW, &mut buf), Verdict::Forward { .. }));
                }
            }
        }
        "handle_packet" => {
            for _ in 0..passes {
                for t in &templates {
                    let mut buf: Packet = *t;
                    forwarded += usize::from(matches!(nat.handle_packet(NOW, &mut buf), Verdict::Forward { .. }));
                }
            }
        }
        other => anyhow::bail!("unknown case {other:?}; {usage}"),
    }
    anyhow::ensure!(forwarded == passes * templates.len(), "only {forwarded} packets forwarded");
    Ok(())
}
