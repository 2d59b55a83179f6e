//! How much freed memory glibc's allocator keeps, set once at start.
//!
//! glibc hands freed memory at the top of a heap back to the kernel as soon as 128 KiB
//! of it is free, and adjusts when large blocks come from `mmap` as the process runs.
//! A proxy frees and takes the same sizes over and over (hyper's read buffers, a
//! poll's output of up to 64 KiB, 16 KiB events), so memory went back and came again
//! as fresh pages: each a page fault and a zeroed page, and where a VM's host backs
//! guest memory lazily (as on the machine the benchmarks run on) a fault in the host
//! too. With `--record`, whose buffers change where blocks fall, one stream of 16 KiB
//! events took about 1 500 more faults in 2 s; keeping up to [`TRIM_THRESHOLD`] free
//! cut what recording costs per event from 3.4 to 2.5 µs (BENCHMARKS.md, "Recording").
//!
//! The price: up to that much memory freed after a burst stays with the process (per
//! allocator arena) instead of going back to the system. Setting `GLIBC_TUNABLES`,
//! `MALLOC_TRIM_THRESHOLD_` or `MALLOC_MMAP_THRESHOLD_` leaves glibc's settings to the
//! environment.

/// Free memory at the top of a heap that glibc keeps rather than gives back.
pub const TRIM_THRESHOLD: usize = 32 << 20;
/// Blocks at least this large come straight from `mmap` (and go back when freed). Fixed,
/// because setting the trim threshold stops glibc adjusting it, and above the largest
/// buffer the proxy reuses (hyper's reads stay under half a MiB).
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds set.
    Applied,
    /// The environment sets glibc's allocator: left as it is.
    LeftToEnvironment,
    /// Not glibc (or glibc refused): nothing to do.
    Unsupported,
}

/// Whether the environment (read through `var`) already tunes glibc's allocator.
fn environment_tunes(var: impl Fn(&str) -> bool) -> bool {
    [
        "GLIBC_TUNABLES",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_MMAP_THRESHOLD_",
    ]
    .into_iter()
    .any(var)
}

/// Sets glibc's trim and mmap thresholds, unless the environment does. Call first
/// thing in `main`, before any thread starts.
pub fn tune() -> Tuning {
    if environment_tunes(|name| std::env::var_os(name).is_some()) {
        return Tuning::LeftToEnvironment;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    let as_int = |n: usize| libc::c_int::try_from(n).expect("a threshold fits a C int");
    // SAFETY: `mallopt` only changes the allocator's parameters; any value is allowed.
    let set = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    };
    if set {
        Tuning::Applied
    } else {
        Tuning::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_of_glibcs_variables_leaves_the_allocator_alone() {
        assert!(!environment_tunes(|_| false));
        for set in [
            "GLIBC_TUNABLES",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_MMAP_THRESHOLD_",
        ] {
            assert!(environment_tunes(|name| name == set), "{set}");
        }
        assert!(!environment_tunes(|name| name == "MALLOC_ARENA_MAX"));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_thresholds() {
        assert_eq!(set_thresholds(), Tuning::Applied);
    }
}
