//! examples/policy-modules/full-cone-3478.wat in Rust: full cone (endpoint-independent
//! filtering) for the mappings of internal UDP port 3478 only, address-dependent filtering for
//! everything else, whatever the NAT's own behaviours say.
#![no_std]

use netnat_policy::{netnat_policy, Decision, Inbound, Protocol};

fn decide(p: &Inbound) -> Decision {
    match p.protocol {
        Protocol::Udp if p.internal.port == 3478 => Decision::Allow,
        _ if p.sent_to_address => Decision::Allow,
        _ => Decision::Deny,
    }
}

netnat_policy!(decide);
