//! Output files written atomically: into a temporary file beside the target, fsynced, then
//! renamed over it, so a crash or an error never leaves a half-written file at the target
//! path (at worst a `.NAME.netnat-tmp-PID` file beside it). `-` and `/dev/stdout` mean
//! standard output; anything under `/dev` or `/proc`, and any existing target that is not a
//! regular file (a FIFO), is written directly, since it cannot and must not be replaced by a
//! rename. A symlink is followed, so the file it points to is replaced, not the link.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Names of standard output, written through the process's handle (never renamed over).
const STDOUT_NAMES: [&str; 4] = ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];
/// Names of standard error.
const STDERR_NAMES: [&str; 3] = ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"];
/// Bytes buffered before a `write` to the file: 8 KiB (`BufWriter`'s default) meant 10 K
/// write calls for a 80 MB capture.
const BUFFER_BYTES: usize = 256 << 10;

/// A file being written; it appears at its path only on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    sink: Sink,
}

enum Sink {
    /// Written to `temp`, renamed to the target on commit, removed if dropped uncommitted.
    Temp { temp: PathBuf, file: Option<BufWriter<WriteBehind>> },
    /// Standard output or a device: written in place.
    Direct(BufWriter<Box<dyn Write + Send>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Temp { temp, .. } => f.debug_struct("Temp").field("temp", temp).finish_non_exhaustive(),
            Sink::Direct(_) => f.write_str("Direct"),
        }
    }
}

impl AtomicFile {
    /// Starts writing `target` (`-` is standard output).
    pub fn create(target: &Path) -> anyhow::Result<AtomicFile> {
        let direct = |out: Box<dyn Write + Send>| AtomicFile {
            target: target.to_owned(),
            sink: Sink::Direct(BufWriter::with_capacity(BUFFER_BYTES, out)),
        };
        if STDOUT_NAMES.iter().any(|n| target == Path::new(n)) {
            return Ok(direct(Box::new(io::stdout())));
        }
        if STDERR_NAMES.iter().any(|n| target == Path::new(n)) {
            return Ok(direct(Box::new(io::stderr())));
        }
        // /dev holds devices (a missing name there is a typo, not a file to create), except
        // /dev/shm, a tmpfs for ordinary files like /tmp.
        let special = (target.starts_with("/dev") && !target.starts_with("/dev/shm")) || target.starts_with("/proc");
        match fs::metadata(target) {
            Ok(meta) if meta.is_dir() => {
                anyhow::bail!("cannot write {}: it is a directory; give a file name", target.display())
            }
            // A device, FIFO or /proc file cannot be replaced by a rename (and must not be).
            Ok(meta) if special || !meta.is_file() => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(target)
                    .with_context(|| format!("cannot open {} for writing", target.display()))?;
                return Ok(direct(Box::new(file)));
            }
            Err(_) if special => {
                anyhow::bail!(
                    "cannot write {}: no such device; give a regular file or `-` for stdout",
                    target.display()
                )
            }
            _ => {}
        }
        // Write where a symlink points, so the rename replaces the file, not the link.
        let resolved = match fs::symlink_metadata(target) {
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(target).unwrap_or_else(|_| target.to_owned()),
            _ => target.to_owned(),
        };
        AtomicFile::create_temp(target, &resolved)
    }

    fn create_temp(target: &Path, resolved: &Path) -> anyhow::Result<AtomicFile> {
        let name = resolved
            .file_name()
            .with_context(|| format!("cannot write {}: it does not name a file", target.display()))?;
        let dir = match resolved.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let temp = dir.join(format!(".{}.netnat-tmp-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&temp).with_context(|| {
            format!(
                "cannot create {} (the temporary file for {}); check that the directory {} exists and is writable",
                temp.display(),
                target.display(),
                dir.display()
            )
        })?;
        Ok(AtomicFile {
            target: resolved.to_owned(),
            sink: Sink::Temp { temp, file: Some(BufWriter::with_capacity(BUFFER_BYTES, WriteBehind::new(file))) },
        })
    }

    /// Flushes, fsyncs and renames the file into place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let target = self.target.clone();
        match &mut self.sink {
            Sink::Direct(out) => out.flush().with_context(|| format!("cannot write {}", target.display())),
            Sink::Temp { temp, file } => {
                let Some(file) = file.take() else { return Ok(()) };
                let file = file.into_inner().map_err(|e| e.into_error()).and_then(|f| {
                    let f = f.file;
                    f.sync_all()?;
                    Ok(f)
                });
                let done = file.and_then(|f| {
                    drop(f);
                    fs::rename(&*temp, &target)
                });
                if let Err(e) = done {
                    let _ = fs::remove_file(&*temp);
                    return Err(e).with_context(|| format!("cannot write {}", target.display()));
                }
                // Make the rename itself durable; failure here loses nothing already written.
                if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                    if let Ok(d) = File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(())
            }
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Temp { file: Some(f), .. } => f.write(buf),
            Sink::Temp { file: None, .. } => Err(io::Error::other("file already committed")),
            Sink::Direct(out) => out.write(buf),
        }
    }

    // Forwarded so a small write is one copy into the buffer, not the default loop over `write`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Temp { file: Some(f), .. } => f.write_all(buf),
            Sink::Temp { file: None, .. } => Err(io::Error::other("file already committed")),
            Sink::Direct(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Temp { file: Some(f), .. } => f.flush(),
            Sink::Temp { file: None, .. } => Ok(()),
            Sink::Direct(out) => out.flush(),
        }
    }
}

/// Bytes written to a temporary file between two requests to start writing them to disk.
#[cfg(target_os = "linux")]
const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// A temporary file whose pages are handed to the disk every [`WRITE_BEHIND_BYTES`] as they are
/// written (Linux: `sync_file_range(SYNC_FILE_RANGE_WRITE)`, which starts the writeback and
/// does not wait for it). The disk then works while the replay does, and the fsync at commit
/// waits for the last few MiB only: for an 80 MB capture it waited 55-60 ms, a fifth of the
/// replay (bench/replay). Nothing else changes: commit still fsyncs before the rename.
struct WriteBehind {
    file: File,
    #[cfg(target_os = "linux")]
    written: u64,
    /// Where the range not yet handed to the disk starts.
    #[cfg(target_os = "linux")]
    started: u64,
}

impl WriteBehind {
    fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            #[cfg(target_os = "linux")]
            written: 0,
            #[cfg(target_os = "linux")]
            started: 0,
        }
    }

    #[cfg(target_os = "linux")]
    fn wrote(&mut self, n: usize) {
        use std::os::fd::AsRawFd as _;
        self.written += n as u64;
        let len = self.written - self.started;
        if len < WRITE_BEHIND_BYTES {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(self.started), i64::try_from(len)) else { return };
        // SAFETY: the fd is this open file's for the call's duration; the call passes no
        // memory. A failure is ignored: this is only a hint, and an I/O error in the
        // writeback is reported by the fsync at commit.
        let _ = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        self.started = self.written;
    }

    #[cfg(not(target_os = "linux"))]
    fn wrote(&mut self, _: usize) {}
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.wrote(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Sink::Temp { temp, file: Some(_) } = &mut self.sink {
            // Not committed: an error happened; leave nothing behind.
            let _ = fs::remove_file(&*temp);
        }
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut file = AtomicFile::create(path)?;
    serde_json::to_writer_pretty(&mut file, value).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(b"\n").with_context(|| format!("cannot write {}", path.display()))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_on_commit_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"[1]").unwrap();
        f.flush().unwrap();
        assert!(!target.exists(), "not visible before commit");
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"[1]");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file renamed away");

        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(fs::read(&target).unwrap(), b"[1]", "old contents kept on failure");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file removed on drop");
    }

    #[test]
    fn a_file_written_behind_in_several_ranges_commits_whole() {
        // More than two write-behind ranges, in writes that do not divide them.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("big.pcap");
        let chunk: Vec<u8> = (0..65_521u32).map(|i| (i % 251) as u8).collect();
        let mut want = Vec::new();
        let mut f = AtomicFile::create(&target).unwrap();
        while want.len() < (17 << 20) + 3 {
            f.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        f.commit().unwrap();
        assert!(fs::read(&target).unwrap() == want, "the committed file holds every byte in order");
    }

    // Unix only: symbolic links need a privilege (SeCreateSymbolicLinkPrivilege) on Windows,
    // and its null device is NUL, not a file in a directory.
    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_devices_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(fs::read(&real).unwrap(), b"new");

        let mut null = AtomicFile::create(Path::new("/dev/null")).unwrap();
        null.write_all(b"discarded").unwrap();
        null.commit().unwrap();
        use std::os::unix::fs::FileTypeExt as _;
        assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null left a device");
    }

    /// /dev/shm is a tmpfs for ordinary files (`netnat replay -o /dev/shm/out.pcap` failed
    /// with "no such device" before): written atomically like any other file; a missing name
    /// elsewhere in /dev is still refused.
    #[test]
    fn dev_shm_is_an_ordinary_place_for_files() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else { return }; // no /dev/shm here
        let out = dir.path().join("out.pcap");
        let mut f = AtomicFile::create(&out).unwrap();
        f.write_all(b"frames").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"frames");
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, ["out.pcap"], "no temporary file left beside it");
        let err = AtomicFile::create(Path::new("/dev/netnat-no-such-device")).expect_err("refused");
        assert!(format!("{err:#}").contains("no such device"), "{err:#}");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = AtomicFile::create(Path::new("/nonexistent-netnat-dir/out.pcap")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent-netnat-dir") && msg.contains("exists and is writable"), "{msg}");
    }
}
