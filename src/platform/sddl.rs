//! Security descriptors in SDDL for what the Windows daemon creates, as pure functions
//! (compiled and tested everywhere; `win_security.rs` turns them into real descriptors).
//!
//! Both grant access to LocalSystem (`SY`) and BUILTIN\Administrators (`BA`) only, with a
//! protected DACL (`P`: nothing inherited from the parent, e.g. ProgramData's write access
//! for Users). An elevated administrator's token and SYSTEM's both carry `BA` enabled; an
//! unelevated one carries it deny-only, so it is refused too.

/// The identities allowed, as SDDL SID strings.
pub const ALLOWED_SIDS: [&str; 2] = ["SY", "BA"];

/// A protected DACL with one allow entry per SID in `sids`: `(A;flags;rights;;;sid)`.
pub fn dacl_sddl(sids: &[&str], flags: &str, rights: &str) -> String {
    let mut s = String::from("D:P");
    for sid in sids {
        s.push_str(&format!("(A;{flags};{rights};;;{sid})"));
    }
    s
}

/// The control pipe's descriptor: generic all for SYSTEM and Administrators.
pub fn pipe_sddl() -> String {
    dacl_sddl(&ALLOWED_SIDS, "", "GA")
}

/// The state directory's descriptor: full control for SYSTEM and Administrators, inherited
/// by the files and folders created inside (`OICI`).
pub fn state_dir_sddl() -> String {
    dacl_sddl(&ALLOWED_SIDS, "OICI", "FA")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_allow_system_and_administrators_only() {
        assert_eq!(pipe_sddl(), "D:P(A;;GA;;;SY)(A;;GA;;;BA)");
        assert_eq!(state_dir_sddl(), "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)");
        for s in [pipe_sddl(), state_dir_sddl()] {
            for other in ["WD", "AU", "BU", "IU", "AN"] {
                assert!(!s.contains(&format!(";;;{other})")), "{s} must not grant {other}");
            }
        }
        assert_eq!(dacl_sddl(&[], "", "GA"), "D:P", "no entry: nobody is allowed");
    }
}
