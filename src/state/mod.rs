//! The daemon's persisted configuration: NATs, their external addresses and static mappings,
//! and the global settings. Sessions are not persisted.
//!
//! One JSON file, `state.json`, in the state directory (default `/var/lib/netnat`, on Windows
//! `%ProgramData%\netnat`, see [`default_state_dir`]). Writes are atomic: a temporary file in
//! the same directory is written and fsynced, renamed over the old file, and the directory is
//! fsynced, so a crash leaves either the old or the new file.
//!
//! On Unix the file is the daemon's alone: the temporary file gets an unpredictable name
//! (pid and a per-process random counter), is created with `O_CREAT|O_EXCL|O_NOFOLLOW` and
//! mode 0600 (a name that exists, a planted symbolic link included, is never opened: the next
//! name is tried), so `state.json` is 0600 after every save. Loading opens the file with
//! `O_NOFOLLOW`, and a file that group or others may read is tightened to 0600 and logged.
//! The daemon checks the directory itself before loading (`platform::private_dir`).
//!
//! On Windows `std::fs::rename` is `MoveFileExW(MOVEFILE_REPLACE_EXISTING)` (falling back to
//! `SetFileInformationByHandle(FileRenameInfoEx)` with POSIX semantics when that is denied;
//! read in the Rust 1.96 standard library source), which replaces an existing target within
//! one volume atomically. It fails while another process holds `state.json` open without
//! delete sharing (an editor, a backup or antivirus scan), so the rename is retried briefly
//! there. Directories cannot be fsynced on Windows; NTFS journals the rename itself.
//! A file that cannot be read or parsed stops the daemon with an error naming it; it is never
//! overwritten (the daemon refuses to start instead).

// The live NAT runs on Linux and Windows; elsewhere these modules are compiled (and
// type-checked) but not called.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code, unused_imports))]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use netnat_engine::{FilteringBehavior, HairpinningMode, Protocol};
use serde::{Deserialize, Serialize};

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Default state directory on Unix.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netnat";

/// Where ProgramData is when `%ProgramData%` is unset (it always is set on real Windows).
pub const PROGRAM_DATA_FALLBACK: &str = r"C:\ProgramData";

/// The state directory when `--state-dir` is not given: [`DEFAULT_STATE_DIR`] on Unix,
/// `%ProgramData%\netnat` on Windows.
pub fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        program_data_state_dir(std::env::var_os("ProgramData").as_deref())
    } else {
        PathBuf::from(DEFAULT_STATE_DIR)
    }
}

/// `<program_data>\netnat`, given the value of `%ProgramData%` (unset or blank: the
/// default `C:\ProgramData`). Built as a string with `\` so it is the same on every host.
pub fn program_data_state_dir(program_data: Option<&OsStr>) -> PathBuf {
    let base = program_data.map(|v| v.to_string_lossy().trim().to_owned()).filter(|v| !v.is_empty());
    let base = base.as_deref().unwrap_or(PROGRAM_DATA_FALLBACK).trim_end_matches(['\\', '/']);
    PathBuf::from(format!("{base}\\netnat"))
}

/// Version written in the file; a newer version is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// One NetNat object's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatRecord {
    /// Name.
    pub name: String,
    /// InternalIPInterfaceAddressPrefix, as given.
    pub internal_prefix: Ipv4Net,
    /// ExternalIPInterfaceAddressPrefix, as given.
    #[serde(default)]
    pub external_prefix: Option<Ipv4Net>,
    /// IcmpQueryTimeout, seconds.
    pub icmp_query_timeout: u32,
    /// TcpEstablishedConnectionTimeout, seconds.
    pub tcp_established_connection_timeout: u32,
    /// TcpTransientConnectionTimeout, seconds.
    pub tcp_transient_connection_timeout: u32,
    /// TcpFilteringBehavior.
    pub tcp_filtering_behavior: FilteringBehavior,
    /// UdpFilteringBehavior.
    pub udp_filtering_behavior: FilteringBehavior,
    /// UdpIdleSessionTimeout, seconds.
    pub udp_idle_session_timeout: u32,
    /// UdpInboundRefresh.
    pub udp_inbound_refresh: bool,
    /// netnat's extension: the filter policy given with `-FilterPolicyFile`. Absent from the
    /// file when none is set, so a state without policies reads as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_policy: Option<FilterPolicyRecord>,
}

/// A filter policy as the cmdlet read it. The text is kept, not only the path: the daemon runs
/// (and after a restart keeps running) exactly what was checked when the cmdlet ran, whether
/// or not the file is still there or has been edited since, and it never opens a path a
/// client names. The path is shown by Get-NetNat and names the file in errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterPolicyRecord {
    /// The file it was read from, made absolute by the cmdlet.
    pub path: String,
    /// Its contents (TOML, `policy_file`'s format; empty for a module file).
    pub text: String,
    /// The WASM module it is or names, as the cmdlet read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<crate::control::protocol::ModuleSource>,
}

impl NatRecord {
    /// A NAT with WinNAT's defaults.
    pub fn new(name: String, internal_prefix: Ipv4Net, external_prefix: Option<Ipv4Net>) -> Self {
        let t = netnat_engine::Timeouts::default();
        NatRecord {
            name,
            internal_prefix,
            external_prefix,
            icmp_query_timeout: secs(t.icmp_query),
            tcp_established_connection_timeout: secs(t.tcp_established),
            tcp_transient_connection_timeout: secs(t.tcp_transient),
            tcp_filtering_behavior: FilteringBehavior::default(),
            udp_filtering_behavior: FilteringBehavior::default(),
            udp_idle_session_timeout: secs(t.udp_idle),
            udp_inbound_refresh: false,
            filter_policy: None,
        }
    }
}

fn secs(d: netnat_engine::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// One NetNatStaticMapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMappingRecord {
    /// StaticMappingID.
    pub id: u32,
    /// NatName.
    pub nat_name: String,
    /// Protocol (TCP or UDP).
    pub protocol: Protocol,
    /// RemoteExternalIPAddressPrefix.
    pub remote_prefix: Ipv4Net,
    /// ExternalIPAddress (0.0.0.0 = any).
    pub external_address: Ipv4Addr,
    /// ExternalPort.
    pub external_port: u16,
    /// InternalIPAddress.
    pub internal_address: Ipv4Addr,
    /// InternalPort.
    pub internal_port: u16,
}

/// One NetNatExternalAddress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAddressRecord {
    /// ExternalAddressID.
    pub id: u32,
    /// NatName.
    pub nat_name: String,
    /// IPAddress.
    pub address: Ipv4Addr,
    /// PortStart.
    pub port_start: u16,
    /// PortEnd.
    pub port_end: u16,
}

/// Everything the daemon persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// NATs in creation order.
    pub nats: Vec<NatRecord>,
    /// Static mappings in creation order.
    pub static_mappings: Vec<StaticMappingRecord>,
    /// External addresses in creation order.
    pub external_addresses: Vec<ExternalAddressRecord>,
    /// InterRoutingDomainHairpinningMode.
    pub hairpinning_mode: HairpinningMode,
    /// Next StaticMappingID.
    pub next_static_mapping_id: u32,
    /// Next ExternalAddressID.
    pub next_external_address_id: u32,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: FORMAT_VERSION,
            nats: Vec::new(),
            static_mappings: Vec::new(),
            external_addresses: Vec::new(),
            hairpinning_mode: HairpinningMode::default(),
            next_static_mapping_id: 0,
            next_external_address_id: 0,
        }
    }
}

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("cannot read the state file {path}: {source}; check its permissions (the daemon runs as root, or as an Administrator on Windows)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid state.
    #[error(
        "the state file {path} is corrupt: {detail}. netnat did not start and left the file as it is; \
         repair it, or move it away to start with no NATs (e.g. mv {path} {path}.bad)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The state file is a symbolic link or not a regular file (Unix).
    #[error(
        "the state file {path} is not a regular file (a symbolic link?): {source}. netnat does not follow a \
         link for its configuration, and every save replaces the file; move the real file into place \
         (e.g. mv \"$(readlink -f {path})\" {path})"
    )]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// The OS error (ELOOP for a link).
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("cannot save the state to {path}: {source}; check that the state directory is writable and not full")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The state file in a state directory.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// The store in `dir` (created on first save if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    /// Path of the state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Loads the state; no file means a fresh, empty state. On Unix a symbolic link is
    /// refused and a file readable by group or others is tightened to 0600.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.path();
        let mut file = match open_for_load(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) if is_not_a_file(&source) => return Err(StateError::NotAFile { path, source }),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        tighten(&file, &path).map_err(|source| StateError::Read { path: path.clone(), source })?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|source| StateError::Read { path: path.clone(), source })?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt { path: path.clone(), detail: e.to_string() })?;
        if state.version != FORMAT_VERSION {
            return Err(StateError::Corrupt {
                path,
                detail: format!(
                    "format version {} is not the version {FORMAT_VERSION} this netnat understands",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Writes `state` atomically (temp file + fsync + rename + fsync of the directory).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Write { path, source }
        };
        create_dir_private(&self.dir).map_err(werr(&self.dir))?;
        let path = self.path();
        let mut text = serde_json::to_string_pretty(state)
            .map_err(|e| StateError::Write { path: path.clone(), source: std::io::Error::other(e) })?;
        text.push('\n');
        let (mut f, tmp) = create_temp(&self.dir, temp_names()).map_err(werr(&self.dir))?;
        let write = || -> std::io::Result<()> {
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            warn_if_loose(&path);
            rename_replacing(&tmp, &path)?;
            sync_dir(&self.dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StateError::Write { path: path.clone(), source: e }
        })
    }
}

/// How many names [`create_temp`] tries before giving up (each taken name, e.g. a planted
/// link, costs one).
const TEMP_ATTEMPTS: usize = 16;

/// Names for the temporary file: `.state.json.tmp.<pid>.<16 hex digits>`, the digits a
/// counter hashed with the process's random hash keys, so another user cannot guess them.
fn temp_names() -> impl Iterator<Item = String> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    std::iter::repeat_with(move || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        format!(".{STATE_FILE}.tmp.{pid}.{:016x}", h.finish())
    })
}

/// Creates a new file in `dir` under the first of `names` that does not exist, mode 0600 on
/// Unix, never opening an existing file or following a link (`O_CREAT|O_EXCL|O_NOFOLLOW`).
fn create_temp(dir: &Path, names: impl IntoIterator<Item = String>) -> std::io::Result<(File, PathBuf)> {
    let mut last = None;
    for name in names.into_iter().take(TEMP_ATTEMPTS) {
        let tmp = dir.join(name);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        match options.open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no name left for the temporary state file")))
}

/// Creates `dir` and its missing parents, mode 0700 on Unix.
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens the state file for reading, not through a symbolic link on Unix.
fn open_for_load(path: &Path) -> std::io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Whether opening failed because the path is a symbolic link (`O_NOFOLLOW`'s ELOOP).
fn is_not_a_file(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Sets an opened state file that group or others may access to 0600, and says so.
fn tighten(file: &File, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                path = %path.display(),
                "the state file had mode {mode:04o} (group or others could access it); set it to 0600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Logs that the file a save replaces was open to group or others (the new one is 0600).
fn warn_if_loose(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::symlink_metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_file() && mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the state file had mode {mode:04o} (group or others could access it); its replacement is 0600"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Renames `from` over `to`, replacing it. On Windows a transient sharing violation or
/// access denial (another process has `to` open) is retried for up to about a second.
fn rename_replacing(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(windows)]
    {
        const ERROR_ACCESS_DENIED: i32 = 5;
        const ERROR_SHARING_VIOLATION: i32 = 32;
        let mut attempt = 0;
        loop {
            match fs::rename(from, to) {
                Err(e)
                    if attempt < 20
                        && matches!(e.raw_os_error(), Some(ERROR_ACCESS_DENIED | ERROR_SHARING_VIOLATION)) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }
    #[cfg(not(windows))]
    {
        fs::rename(from, to)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for syncing on Windows; rename is already durable there.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::default();
        s.nats.push(NatRecord::new("WinNAT".into(), "10.100.0.0/16".parse().unwrap(), None));
        s.static_mappings.push(StaticMappingRecord {
            id: 0,
            nat_name: "WinNAT".into(),
            protocol: Protocol::Tcp,
            remote_prefix: "0.0.0.0/0".parse().unwrap(),
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: 8080,
            internal_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_port: 80,
        });
        s.next_static_mapping_id = 1;
        s
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("sub"));
        assert_eq!(store.load().unwrap(), State::default());
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
    }

    #[test]
    fn corrupt_file_is_named_in_the_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(store.path(), "{ not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains(&store.path().display().to_string()), "{err}");
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), "{ not json");
    }

    #[test]
    fn program_data_paths() {
        let dir = |v: Option<&str>| program_data_state_dir(v.map(OsStr::new));
        assert_eq!(dir(Some(r"C:\ProgramData")), PathBuf::from(r"C:\ProgramData\netnat"));
        assert_eq!(dir(Some(r"D:\Data\")), PathBuf::from(r"D:\Data\netnat"), "trailing separator");
        assert_eq!(dir(None), PathBuf::from(r"C:\ProgramData\netnat"));
        assert_eq!(dir(Some("  ")), PathBuf::from(r"C:\ProgramData\netnat"), "blank is unset");
        #[cfg(unix)]
        assert_eq!(default_state_dir(), PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn saving_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        store.save(&State::default()).unwrap();
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_and_its_temp_file_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("sub"));
        store.save(&sample()).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700, "a state directory the save creates");
        let (_f, tmp) = create_temp(dir.path(), temp_names()).unwrap();
        assert_eq!(mode(&tmp), 0o600);
    }

    #[test]
    fn temp_names_are_not_the_pid_alone_and_never_repeat() {
        let names: Vec<String> = temp_names().take(100).collect();
        let pid = format!(".{STATE_FILE}.tmp.{}", std::process::id());
        for n in &names {
            assert!(n.starts_with(&format!("{pid}.")) && n.len() == pid.len() + 17, "{n}");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_old_predictable_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let store = StateStore::new(dir.path().join("state"));
        fs::create_dir(dir.path().join("state")).unwrap();
        let planted = dir.path().join("state").join(format!(".{STATE_FILE}.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        store.save(&sample()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(store.path()).unwrap().is_file(), "state.json is a file, not the link");
        assert_eq!(store.load().unwrap(), sample());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_at_the_next_temp_name_is_not_followed_and_the_next_name_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("taken")).unwrap();
        // A dangling link: creating through it would make the file it names.
        std::os::unix::fs::symlink(dir.path().join("made"), dir.path().join("dangling")).unwrap();
        let names = ["taken", "dangling", "fresh"].map(String::from);
        let (mut f, tmp) = create_temp(dir.path(), names).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(tmp, dir.path().join("fresh"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!dir.path().join("made").exists(), "the dangling link was followed");
        // Every name taken: an error, and still nothing written through a link.
        let err = create_temp(dir.path(), ["taken", "dangling"].map(String::from)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!dir.path().join("made").exists());
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_0644_state_file_becomes_0600_at_load_and_at_save() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(store.path(), serde_json::to_string(&sample()).unwrap()).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        assert_eq!(mode(&store.path()), 0o600);
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&State::default()).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_state_file_is_refused_and_its_target_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        fs::create_dir(dir.path().join("state")).unwrap();
        let target = dir.path().join("elsewhere.json");
        fs::write(&target, serde_json::to_string(&sample()).unwrap()).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, store.path()).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StateError::NotAFile { .. }), "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(mode(&target), 0o644, "the link's target is not chmodded");
    }

    #[test]
    fn newer_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let mut s = sample();
        s.version = 99;
        fs::write(store.path(), serde_json::to_string(&s).unwrap()).unwrap();
        assert!(store.load().unwrap_err().to_string().contains("version 99"));
    }
}
