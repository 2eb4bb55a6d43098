//! Memory given back to the system after a burst of connections (Linux with glibc; a no-op elsewhere).
//!
//! An open connection costs about 17 KiB here, most of it hyper's two buffers (8 KiB to read the head, 8 KiB
//! to write the response head): 20,000 half-sent heads take 300 to 350 MB. When they close, glibc's `malloc`
//! keeps the freed pages for later (it gives back only the free space at the very top of each heap, and the
//! freed buffers lie between small allocations still in use), so the process stays at its peak.
//! Two settings of glibc's own bring it back to its level before the burst:
//!
//! - [`configure`], at start: `mallopt(M_MXFAST, 0)` turns off the "fast bins", which keep small freed
//!   pieces apart from their free neighbours; without them a freed piece is merged at once, as larger ones
//!   are. The per-thread cache in front of `malloc` (tcache) still serves small allocations without a lock,
//!   so this costs nothing measurable (see the production checklist in `docs/guide.md`). Left as it is when
//!   `GLIBC_TUNABLES` sets `glibc.malloc.mxfast`.
//! - [`release_free_memory`], once the connections have fallen back: `malloc_trim(0)` hands the free pages of
//!   every heap back to the kernel (`MADV_DONTNEED`). With fast bins on, its first step merges the last small
//!   pieces into the top of a thread's heap, which `malloc_trim` does not trim: tens of MB could stay.
//!
//! Both are plain glibc calls through the `libc` crate (already a dependency of tokio). On other systems
//! (musl, macOS, Windows) they compile to nothing; those allocators keep their own policies.

/// Sets the allocator up for bursts: glibc's fast bins off (see the module docs). Call it first thing.
pub(crate) fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let chosen =
            std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.mxfast"));
        if !chosen {
            #[allow(unsafe_code)]
            // SAFETY: `mallopt` only sets a parameter of glibc's allocator, under the allocator's own lock, and
            // may be called at any time from any thread; `M_MXFAST` with 0 is a documented value (no fast bins).
            let done = unsafe { libc::mallopt(libc::M_MXFAST, 0) };
            if done != 1 {
                tracing::warn!("mallopt(M_MXFAST, 0) failed; memory may stay high after bursts");
            }
        }
    }
}

/// Gives the allocator's free pages back to the system (`malloc_trim(0)`); returns whether any was given.
/// Blocks for a few milliseconds after a large burst: call it on a blocking thread.
pub(crate) fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: `malloc_trim` takes each arena's lock in turn and only releases pages no allocation uses; it
        // is safe to call at any time from any thread. 0 keeps no extra padding at the top of the main heap.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
