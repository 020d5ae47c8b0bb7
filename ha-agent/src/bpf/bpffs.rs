//! Making sure the pin directory lies on a bpf filesystem.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt as _, path::Path};

use super::PinDirError;

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Makes sure `dir` lies on a bpf filesystem, mounting one on /sys/fs/bpf when that is where
/// `dir` lies and nothing is mounted there (`ip netns exec` remounts /sys without one).
pub(super) fn ensure_bpffs(dir: &Path) -> Result<(), PinDirError> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if fs_magic(existing)? == BPF_FS_MAGIC {
        return Ok(());
    }
    let bpffs_root = Path::new("/sys/fs/bpf");
    if !dir.starts_with(bpffs_root) || !bpffs_root.is_dir() {
        return Err(PinDirError::NotBpffs(existing.display().to_string()));
    }
    let target = CString::new(bpffs_root.as_os_str().as_bytes()).expect("no NUL in a literal path");
    // SAFETY: all arguments are valid NUL-terminated strings; data may be null.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(PinDirError::Mount(io::Error::last_os_error()));
    }
    tracing::info!("mounted a bpf filesystem on /sys/fs/bpf");
    Ok(())
}

fn fs_magic(path: &Path) -> Result<i64, PinDirError> {
    let statfs_err = |err| PinDirError::Io(format!("statfs {}", path.display()), err);
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| statfs_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: statfs is plain old data for which all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) } != 0 {
        return Err(statfs_err(io::Error::last_os_error()));
    }
    Ok(stat.f_type)
}
