//! The Windows control channel's names and access rule, as pure functions (compiled and
//! tested everywhere; only `transport_windows.rs` calls Windows).
//!
//! The daemon listens on a named pipe, `\\.\pipe\netnat` unless `--socket` (or
//! `NETNAT_SOCKET`) names another. Who may connect is decided twice: the pipe's security
//! descriptor (`platform::sddl::pipe_sddl`) lets only SYSTEM and the Administrators group
//! open it, so an unelevated prompt gets "access denied" from Windows itself; and the daemon
//! checks the client's token for the same two identities before it answers (see `Peer`).

/// The pipe the daemon listens on unless told otherwise.
pub const DEFAULT_PIPE: &str = r"\\.\pipe\netnat";

/// The prefix of every local named pipe path.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";

/// The pipe path for what the user gave: a full `\\.\pipe\NAME` is kept (any case of the
/// prefix, `/` accepted for `\`); a bare `NAME` becomes `\\.\pipe\NAME`; an empty value is
/// the default.
pub fn pipe_path(given: &str) -> String {
    let given = given.trim();
    if given.is_empty() {
        return DEFAULT_PIPE.to_owned();
    }
    let normalised = given.replace('/', "\\");
    if normalised.len() >= PIPE_PREFIX.len() && normalised[..PIPE_PREFIX.len()].eq_ignore_ascii_case(PIPE_PREFIX) {
        return format!("{PIPE_PREFIX}{}", &normalised[PIPE_PREFIX.len()..]);
    }
    format!("{PIPE_PREFIX}{}", normalised.trim_start_matches('\\'))
}

/// Why a pipe path cannot be used.
pub fn check_pipe_path(path: &str) -> Result<(), String> {
    let name = path.get(PIPE_PREFIX.len()..).unwrap_or("");
    if !path.starts_with(PIPE_PREFIX) || name.is_empty() {
        return Err(format!(
            "{path:?} is not a local pipe path; use e.g. {DEFAULT_PIPE} (or just a name such as netnat2)"
        ));
    }
    // Windows caps pipe paths at 256 characters.
    if path.encode_utf16().count() > 256 {
        return Err(format!("the pipe path {path:?} is longer than the 256 characters Windows allows"));
    }
    Ok(())
}

/// A UTF-16, NUL-terminated copy of `s`, for the wide-string Windows APIs.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_paths_from_names_and_full_paths() {
        assert_eq!(pipe_path(""), DEFAULT_PIPE);
        assert_eq!(pipe_path("netnat2"), r"\\.\pipe\netnat2");
        assert_eq!(pipe_path(r"\\.\pipe\netnat2"), r"\\.\pipe\netnat2");
        assert_eq!(pipe_path(r"\\.\PIPE\netnat2"), r"\\.\pipe\netnat2");
        assert_eq!(pipe_path("//./pipe/netnat2"), r"\\.\pipe\netnat2");
        assert_eq!(pipe_path(" lab\\a "), r"\\.\pipe\lab\a");
        assert_eq!(pipe_path(r"\netnat"), DEFAULT_PIPE);
    }

    #[test]
    fn pipe_paths_are_checked() {
        assert!(check_pipe_path(DEFAULT_PIPE).is_ok());
        assert!(check_pipe_path(r"\\.\pipe\").unwrap_err().contains("not a local pipe path"));
        assert!(check_pipe_path("/run/netnat/netnat.sock").is_err());
        let long = pipe_path(&"x".repeat(300));
        assert!(check_pipe_path(&long).unwrap_err().contains("256"));
    }

    #[test]
    fn wide_strings_end_with_nul() {
        assert_eq!(wide("ab"), vec![97, 98, 0]);
    }
}
