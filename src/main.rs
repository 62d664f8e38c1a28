//! `wemaster`: thin entry point. Everything lives in the library so tests drive the same code.

fn main() -> std::process::ExitCode {
    tune_allocator();
    wemaster::cli::main()
}

/// glibc serves an allocation over its mmap threshold with a mapping of its own, returned to
/// the system when freed — but it raises the threshold to the size of any such block freed, up
/// to 32 MiB. After the first password hash (argon2id takes 19 MiB) every later one came from
/// the malloc arenas instead, one per thread that ran it, and stayed there: a burst of 400 logins
/// left the process at 537 MiB instead of 54 (bench/login-memory.sh, docs/benchmarks.md).
/// Setting the threshold explicitly turns that adjustment off. 4 MiB keeps media buffers (a raw
/// 1080p frame is 3 MiB) in the arenas, where reuse is cheapest.
///
/// It turns off the trim threshold's adjustment too, leaving it at 128 KiB: an arena gave back
/// (`madvise`) any free top larger than that, so each 256 KiB chunk of a file download
/// (storage's streamed reads) was faulted in, zero-filled by the kernel and handed back again —
/// page faults, `clear_page` and `madvise` were a tenth of the profile of replay Range GETs
/// (docs/benchmarks.md, "Replay downloads"). A 4 MiB trim threshold keeps one threshold's worth
/// per arena for reuse: downloads went from 0.44× to 0.61× nginx for 1 MiB ranges and from 0.70×
/// to 1.05× for whole files. What this bounds is the free top an arena keeps (4 MiB); free holes
/// below it stay held too, and they grow with the number of large buffers in flight at once:
/// 5.8 MB held free with 20 HLS players, 13.1 MB with 40 (whole 720 KB segment reads;
/// docs/benchmarks.md, "the second harness").
///
/// Arenas themselves are capped at one per core (at least two). glibc's default, eight per core,
/// gives a new arena to each thread that finds the others busy: over a 2-hour lesson the blocking
/// pool's threads came and went (8 → 12) and each left an arena holding what it had freed — RSS
/// grew 6.3 MiB an hour while the live heap stayed flat (docs/benchmarks.md, "a 2-hour recorded
/// lesson"). More arenas than cores only helps when more threads allocate at once than can run.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets malloc parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_ARENA_MAX, cores.max(2) as libc::c_int);
        }
    }
}
