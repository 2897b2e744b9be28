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
