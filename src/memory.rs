//! Handing back to the system the memory that loading approvals freed.
//!
//! A load reads text in large pieces (a document of the file, a page of ConfigMaps as
//! listed, each some hundreds of kilobytes to megabytes) and each entry's text, then drops
//! them, interleaved with the approvals that stay. glibc's allocator returns freed memory
//! to the system only from the top of each arena's heap; by default, after one large
//! buffer is freed it raises the size from which it maps a block on its own, and serves
//! the next from a heap. Without help the pages those buffers took stay resident, and
//! count in the peak. Other allocators (musl) give large free blocks back themselves;
//! there this does nothing.

/// Sets glibc's allocator up for `serve`, before the async runtime's threads start: a
/// block of 128 KiB or more is always mapped on its own and unmapped when freed (glibc's
/// initial threshold, kept instead of raised). At 100 000 approvals listed from the API
/// server this took the peak from some 71–74 to 66 MiB. The request path rarely allocates
/// such a block (a review of 128 KiB or more), and then pays a system call to map it. It
/// overrides a threshold set through the environment (`MALLOC_MMAP_THRESHOLD_`,
/// `GLIBC_TUNABLES`), and, as glibc does once a threshold is set, keeps its trim
/// threshold fixed too.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "one FFI call to glibc's mallopt")]
pub fn configure() {
    // SAFETY: mallopt takes two integers and no pointers; glibc applies the setting under
    // its own lock. Were it refused, the threshold would stay as it was (the return value
    // says so, and nothing depends on it).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

/// Asks glibc to return every whole free page of every arena (`malloc_trim(0)`). It locks
/// each arena while it walks it: call it after a load, not on the request path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "one FFI call to glibc's malloc_trim")]
pub fn release_freed() {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; glibc serialises it
    // with every other allocator call through the arenas' locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Elsewhere the allocator gives back large free blocks by itself.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}
