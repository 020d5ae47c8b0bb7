//! Reading a whole hash map in a few syscalls: `BPF_MAP_LOOKUP_BATCH`, which aya does not wrap.
//! Iterating with aya costs two syscalls per entry (next key, then lookup); the loop reads the
//! peer map every poll, and with 256 groups of 8 nodes that map holds 1,792 entries.

use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{maps::MapData, Pod};

/// `BPF_MAP_LOOKUP_BATCH` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// How many entries one syscall asks for: large enough that a few calls read the largest map,
/// small enough that the buffers stay off mmap (and a hash bucket never outgrows it).
const BATCH: usize = 256;

/// The `batch` member of `union bpf_attr`, as the kernel reads it.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `map`, keyed `K` with values `V`, in as many syscalls as there are
/// [`BATCH`]es of entries (and one more that finds the end). Entries that change meanwhile come
/// back either way; none is skipped unless it is deleted.
pub(super) fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let mut keys: Vec<MaybeUninit<K>> = Vec::with_capacity(BATCH);
    let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(BATCH);
    let mut entries = Vec::new();
    // The position in the map: for a hash map, a bucket index the kernel hands back.
    let mut position = 0u32;
    let mut next = 0u32;
    let mut first = true;
    let fd = u32::try_from(map.fd().as_fd().as_raw_fd()).map_err(|_| io::Error::other("a negative fd"))?;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { std::ptr::addr_of!(position) as u64 },
            out_batch: std::ptr::addr_of_mut!(next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr.batch` of the size passed; the kernel writes at most
        // `count` keys and values into buffers that have room for `BATCH` of each, and a u32
        // bucket index into `next`; all of them outlive the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::addr_of_mut!(attr),
                size_of::<BatchAttr>() as u32,
            )
        };
        let error = (result < 0).then(io::Error::last_os_error);
        let filled = (attr.count as usize).min(BATCH);
        // SAFETY: the kernel filled the first `filled` keys (on success, and with ENOENT at the
        // end of the map alike), within the capacity.
        unsafe { keys.set_len(filled) };
        // SAFETY: and as many values.
        unsafe { values.set_len(filled) };
        entries.extend(keys.drain(..).zip(values.drain(..)).map(|(key, value)| {
            // SAFETY: see above: these were filled.
            let key = unsafe { key.assume_init() };
            // SAFETY: and so were these.
            (key, unsafe { value.assume_init() })
        }));
        match error {
            None => {}
            // The end of the map.
            Some(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            Some(err) => return Err(err),
        }
        position = next;
        first = false;
    }
}
