//! The daemon's private directories on Unix: the state directory (its configuration) and the
//! control socket's directory. Whoever can write into either can replace what netnat reads
//! or serves there, so before using one the daemon insists that it is a real directory (not
//! a symbolic link), owned by the daemon's user or root, and not writable by group or
//! others. A missing directory is created with mode 0700. Parents are not checked.
//!
//! The Windows counterpart is the DACL that `win_security::create_private_dir` sets.

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Which directory is checked; it names the directory and says why it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirRole {
    /// The state directory (`--state-dir`).
    State,
    /// The directory of the control socket (`--socket`).
    Socket,
}

impl DirRole {
    fn name(self) -> &'static str {
        match self {
            DirRole::State => "state directory",
            DirRole::Socket => "control socket directory",
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            DirRole::State => "netnat keeps its configuration there",
            DirRole::Socket => "netnat's control socket is there",
        }
    }

    fn option(self) -> &'static str {
        match self {
            DirRole::State => "--state-dir",
            DirRole::Socket => "--socket",
        }
    }
}

impl fmt::Display for DirRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a private directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// The path is a symbolic link; it is not followed.
    #[error(
        "{role} {path} is a symbolic link (to {target}); {purpose}, and netnat does not follow a link \
         for it: give {option} a real directory, or replace the link: rm {path} && mkdir -m 0700 {path}",
        purpose = role.purpose(),
        option = role.option(),
        path = path.display(),
        target = target.display()
    )]
    Symlink {
        /// Which directory.
        role: DirRole,
        /// The link.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// The path exists and is not a directory.
    #[error(
        "{role} {path} is not a directory; {purpose}: move it away, or give {option} another path",
        purpose = role.purpose(),
        option = role.option(),
        path = path.display()
    )]
    NotADirectory {
        /// Which directory.
        role: DirRole,
        /// The path.
        path: PathBuf,
    },
    /// The directory is owned by another user, or group or others may write into it.
    #[error(
        "{role} {path} is {problems}; {purpose}: {fix}",
        purpose = role.purpose(),
        path = path.display()
    )]
    Unsafe {
        /// Which directory.
        role: DirRole,
        /// The directory.
        path: PathBuf,
        /// What is wrong, e.g. "owned by uid 1000 and writable by others".
        problems: String,
        /// The commands that repair it.
        fix: String,
    },
    /// The directory could not be created or inspected.
    #[error("cannot create or inspect the {role} {path}: {source}", path = path.display())]
    Io {
        /// Which directory.
        role: DirRole,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Makes sure `dir` is a private directory of the user `owner` (the daemon's euid): creates
/// it with mode 0700 (and missing parents) if it does not exist, else checks it. Root may
/// own it too. `owner` is a parameter so tests can check against a uid that is not theirs.
pub fn ensure_private_dir(dir: &Path, role: DirRole, owner: u32) -> Result<(), PrivateDirError> {
    let io_err = |source| PrivateDirError::Io { role, path: dir.to_path_buf(), source };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err)?;
        }
        Err(e) => return Err(io_err(e)),
        Ok(_) => {}
    }
    // Checked after creating too: what exists now is what will be used.
    let meta = std::fs::symlink_metadata(dir).map_err(io_err)?;
    check(dir, role, owner, &meta)
}

fn check(dir: &Path, role: DirRole, owner: u32, meta: &std::fs::Metadata) -> Result<(), PrivateDirError> {
    let path = dir.to_path_buf();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(dir).unwrap_or_else(|_| PathBuf::from("?"));
        return Err(PrivateDirError::Symlink { role, path, target });
    }
    if !meta.is_dir() {
        return Err(PrivateDirError::NotADirectory { role, path });
    }
    let mut problems = Vec::new();
    let mut fix = Vec::new();
    let uid = meta.uid();
    if uid != owner && uid != 0 {
        problems.push(format!("owned by uid {uid}"));
        let who = if owner == 0 { "root:root".to_owned() } else { owner.to_string() };
        fix.push(format!("chown {who} {}", dir.display()));
    }
    let mode = meta.mode();
    let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("writable by group and others"),
        (true, false) => Some("writable by group"),
        (false, true) => Some("writable by others"),
        (false, false) => None,
    };
    if let Some(w) = writable {
        problems.push(w.to_owned());
        fix.push(format!("chmod 0700 {}", dir.display()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(PrivateDirError::Unsafe { role, path, problems: problems.join(" and "), fix: fix.join(" && ") })
}

/// The directory a socket path lives in (the current directory for a bare file name).
pub fn socket_dir(socket: &Path) -> &Path {
    match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn own_uid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn a_missing_directory_is_created_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir, DirRole::State, own_uid()).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_private_or_0755_directory_of_the_daemon_user_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        for m in [0o700, 0o755, 0o750] {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(m)).unwrap();
            ensure_private_dir(tmp.path(), DirRole::State, own_uid()).unwrap();
        }
        assert_eq!(mode(tmp.path()), 0o750, "an accepted directory is left as it is");
    }

    #[test]
    fn a_group_or_world_writable_directory_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().display().to_string();
        for (m, what) in [
            (0o777, "writable by group and others"),
            (0o1777, "writable by group and others"),
            (0o770, "writable by group"),
            (0o707, "writable by others"),
        ] {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(m)).unwrap();
            let err = ensure_private_dir(tmp.path(), DirRole::State, own_uid()).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("state directory {p} is {what}; netnat keeps its configuration there: chmod 0700 {p}"),
                "mode {m:o}"
            );
            assert_eq!(mode(tmp.path()), m, "a refused directory is not changed");
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o722)).unwrap();
        let err = ensure_private_dir(tmp.path(), DirRole::Socket, own_uid()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("control socket directory {p} is writable by group and others;")), "{err}");
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().display().to_string();
        let mut dir_uid = std::fs::metadata(tmp.path()).unwrap().uid();
        if dir_uid == 0 {
            // Root owns everything it creates and root is always accepted: give the
            // directory to another user (we are root, so we may).
            dir_uid = 4242;
            std::os::unix::fs::chown(tmp.path(), Some(dir_uid), None).unwrap();
        }
        // The daemon runs as root: someone else's directory is refused.
        let err = ensure_private_dir(tmp.path(), DirRole::State, 0).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("state directory {p} is owned by uid {dir_uid}; netnat keeps its configuration there: chown root:root {p}")
        );
        // The daemon runs as another user.
        let other = dir_uid + 1;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(tmp.path(), DirRole::State, other).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "state directory {p} is owned by uid {dir_uid} and writable by group and others; \
                 netnat keeps its configuration there: chown {other} {p} && chmod 0700 {p}"
            )
        );
        // Its owner may use it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        ensure_private_dir(tmp.path(), DirRole::State, dir_uid).unwrap();
    }

    #[test]
    fn a_root_owned_directory_is_accepted_for_any_daemon_user() {
        let Ok(meta) = std::fs::metadata("/") else { return };
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return; // an unusual root directory; nothing to learn here
        }
        ensure_private_dir(Path::new("/"), DirRole::State, 4242).unwrap();
    }

    #[test]
    fn a_symlink_or_a_file_is_refused_and_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure_private_dir(&link, DirRole::Socket, own_uid()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("control socket directory {} is a symbolic link", link.display())), "{err}");
        assert!(err.contains("--socket"), "{err}");
        // A dangling link is not created through.
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("victim"), &dangling).unwrap();
        assert!(ensure_private_dir(&dangling, DirRole::State, own_uid()).is_err());
        assert!(!tmp.path().join("victim").exists());
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file, DirRole::State, own_uid()).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn the_socket_directory_of_a_bare_name_is_the_current_one() {
        assert_eq!(socket_dir(Path::new("/run/netnat/netnat.sock")), Path::new("/run/netnat"));
        assert_eq!(socket_dir(Path::new("netnat.sock")), Path::new("."));
    }
}
