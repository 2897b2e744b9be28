//! Windows security descriptors from SDDL ([`super::sddl`]), for the control pipe and the
//! state directory. Type-checked for x86_64-pc-windows-gnu on Linux; not run on Windows by us.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows::core::PCWSTR;
use windows::Win32::Foundation::{BOOL, HLOCAL};
use windows::Win32::Security::Authorization::{ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1};
use windows::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows::Win32::Storage::FileSystem::CreateDirectoryW;
use windows::Win32::System::Memory::LocalFree;

/// A security descriptor allocated by `ConvertStringSecurityDescriptorToSecurityDescriptorW`.
pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is memory owned by this value, never written after creation, and
// freed once in Drop; Windows reads it from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above; it is only read.
unsafe impl Sync for SecurityDescriptor {}

impl std::fmt::Debug for SecurityDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecurityDescriptor")
    }
}

impl SecurityDescriptor {
    /// The descriptor written as `sddl`.
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let mut sd = PSECURITY_DESCRIPTOR::default();
        // SAFETY: `text` is NUL-terminated UTF-16 that outlives the call; `sd` receives a
        // LocalAlloc'd descriptor that Drop frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(PCWSTR(text.as_ptr()), SDDL_REVISION_1, &mut sd, None)
        };
        if !ok.as_bool() {
            return Err(io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(sd))
    }

    /// Attributes pointing at this descriptor (not inheritable by child processes); valid
    /// while `self` lives.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0 .0,
            bInheritHandle: BOOL(0),
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from LocalAlloc (inside the conversion) and is freed once.
        let _ = unsafe { LocalFree(HLOCAL(self.0 .0 as isize)) };
    }
}

/// Creates `dir` (parents as usual) with the state directory's descriptor, readable and
/// writable by SYSTEM and Administrators only. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let sd = SecurityDescriptor::from_sddl(&super::sddl::state_dir_sddl())?;
    let attributes = sd.attributes();
    let name: Vec<u16> = dir.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    // SAFETY: `name` is NUL-terminated UTF-16 and `attributes` points at `sd`; both outlive
    // the call.
    let ok = unsafe { CreateDirectoryW(PCWSTR(name.as_ptr()), Some(&attributes)) };
    if !ok.as_bool() {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Ok(())
}

/// The DACL of `path` (a file or directory), as SDDL (`D:P(A;...)...`). For tests: reads back
/// what [`create_private_dir`] and the control pipe were given.
#[cfg(test)]
pub fn dacl_of_path(path: &Path) -> io::Result<String> {
    use windows::Win32::Security::Authorization::{GetNamedSecurityInfoW, SE_FILE_OBJECT};
    use windows::Win32::Security::DACL_SECURITY_INFORMATION;
    let name: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: `name` is NUL-terminated UTF-16; `sd` receives a LocalAlloc'd descriptor that
    // `descriptor_sddl` frees.
    let status = unsafe {
        GetNamedSecurityInfoW(
            PCWSTR(name.as_ptr()),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            None,
            None,
            &mut sd,
        )
    };
    if status.0 != 0 {
        return Err(io::Error::from_raw_os_error(status.0 as i32));
    }
    descriptor_sddl(sd)
}

/// The DACL of the kernel object behind `handle` (e.g. a named pipe instance), as SDDL.
#[cfg(test)]
pub fn dacl_of_handle(handle: windows::Win32::Foundation::HANDLE) -> io::Result<String> {
    use windows::Win32::Security::Authorization::{GetSecurityInfo, SE_KERNEL_OBJECT};
    use windows::Win32::Security::DACL_SECURITY_INFORMATION;
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: `handle` is open (READ_CONTROL is part of a pipe server's access); `sd`
    // receives a LocalAlloc'd descriptor that `descriptor_sddl` frees.
    let status = unsafe {
        GetSecurityInfo(handle, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION.0, None, None, None, None, Some(&mut sd))
    };
    if status.0 != 0 {
        return Err(io::Error::from_raw_os_error(status.0 as i32));
    }
    descriptor_sddl(sd)
}

/// `sd`'s DACL as SDDL; frees `sd`.
#[cfg(test)]
fn descriptor_sddl(sd: PSECURITY_DESCRIPTOR) -> io::Result<String> {
    use windows::core::PWSTR;
    use windows::Win32::Security::Authorization::ConvertSecurityDescriptorToStringSecurityDescriptorW;
    use windows::Win32::Security::DACL_SECURITY_INFORMATION;
    let owned = SecurityDescriptor(sd); // freed on return
    let mut text = PWSTR::null();
    // SAFETY: `owned.0` is a valid descriptor; `text` receives a LocalAlloc'd string freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            owned.0,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION.0,
            &mut text,
            None,
        )
    };
    if !ok.as_bool() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated string from the call above, freed once after copying.
    let s = unsafe { text.to_string() }.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    // SAFETY: allocated by the conversion with LocalAlloc.
    let _ = unsafe { LocalFree(HLOCAL(text.0 as isize)) };
    s
}

/// For tests that check what Wine does not implement: whether this process runs under Wine
/// (its ntdll exports `wine_get_version`), and a way to count such a check as skipped.
#[cfg(test)]
pub mod wine {
    /// Whether this process runs under Wine rather than Windows.
    pub fn detected() -> bool {
        use windows::core::{s, w};
        use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
        // SAFETY: ntdll is loaded in every process; both names are NUL-terminated literals.
        unsafe { GetModuleHandleW(w!("ntdll.dll")).is_ok_and(|m| GetProcAddress(m, s!("wine_get_version")).is_some()) }
    }

    /// Records a check that could not run (as `tests/common/skip.rs` does for integration
    /// tests): a `SKIPPED` line on stderr and one line in `NETNAT_SKIP_LOG`, which
    /// `.ci/windows-wine.sh` counts.
    pub fn skip(test: &str, why: &str) {
        eprintln!("SKIPPED ({why}): {test}");
        if let Some(path) = std::env::var_os("NETNAT_SKIP_LOG") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{test}\t{why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under %ProgramData% (where the daemon keeps its state), removed on drop.
    pub struct ProgramDataDir(pub std::path::PathBuf);

    impl ProgramDataDir {
        pub fn new(tag: &str) -> Self {
            let base = crate::state::program_data_state_dir(std::env::var_os("ProgramData").as_deref());
            let dir = base.with_file_name(format!("netnat-test-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            ProgramDataDir(dir)
        }
    }

    impl Drop for ProgramDataDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_state_directory_gets_the_private_dacl_and_an_existing_one_is_kept() {
        let dir = ProgramDataDir::new("dacl");
        create_private_dir(&dir.0).unwrap();
        assert!(dir.0.is_dir());
        let dacl = dacl_of_path(&dir.0).unwrap();
        create_private_dir(&dir.0).unwrap(); // exists: left as it is, no error
        assert_eq!(dacl_of_path(&dir.0).unwrap(), dacl);
        if wine::detected() {
            // Wine 8.0 does not store a file's security descriptor: it maps it to Unix
            // permissions (here 0700) and reports those back as owner + SYSTEM.
            assert!(!dacl.contains(";;;WD)") && !dacl.contains(";;;BU)"), "private under Wine too: {dacl}");
            wine::skip(
                "win_security::the_state_directory_gets_the_private_dacl (exact DACL)",
                "Wine does not keep file DACLs (maps them to Unix modes); checked on Windows only",
            );
            return;
        }
        assert_eq!(dacl, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)", "{}", dir.0.display());
    }
}

#[cfg(test)]
mod state_tests {
    use super::tests::ProgramDataDir;
    use super::*;
    use crate::state::{NatRecord, State, StateStore};

    #[test]
    fn the_state_file_under_program_data_is_replaced_whole_and_a_corrupt_one_is_refused() {
        let dir = ProgramDataDir::new("state");
        create_private_dir(&dir.0).unwrap();
        let store = StateStore::new(&dir.0);
        store.save(&State::default()).unwrap();

        let mut state = State::default();
        state.nats.push(NatRecord::new("WinNAT".into(), "10.100.0.0/16".parse().unwrap(), None));
        // Another program has state.json open without FILE_SHARE_DELETE (std's default, like an
        // editor): replacing it fails until it closes the file; the save retries meanwhile.
        let holder = std::fs::File::open(store.path()).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(holder);
        });
        store.save(&state).unwrap();
        release.join().unwrap();
        assert_eq!(store.load().unwrap(), state);
        let names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")], "no temporary file left");

        std::fs::write(store.path(), "{ not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains(&store.path().display().to_string()) && err.contains("corrupt"), "{err}");
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), "{ not json", "left alone");
    }
}
