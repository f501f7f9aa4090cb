//! Handing back to the system the memory that loading approvals freed.
//!
//! A load reads the file whole (some 20 MB at 100 000 approvals) and each entry's text,
//! then drops them, interleaved with the approvals that stay. glibc's allocator returns
//! freed memory to the system only from the top of each arena's heap, and after one large
//! buffer is freed it serves the next from the heap rather than a fresh mapping; without
//! help those pages stay resident. Other allocators (musl) give large free blocks back
//! themselves; there this does nothing.

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
