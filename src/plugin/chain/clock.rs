//! The clock that times plugin calls: the CPU's time-stamp counter where it is a clock
//! (x86-64 with an invariant TSC), `Instant` elsewhere.
//!
//! A traced session (a tape, `sluice plugin test`) times every plugin call, two reads
//! per call. `Instant::now` costs about 30 ns here (a vDSO call); `rdtsc` about 10 ns,
//! and a tape of a fast stream reads it twice per event on the proxy's path. Ticks are
//! turned into time with a rate measured against `Instant` over the first 10 ms after
//! the first read (until then each conversion measures it again, exact to a fraction of
//! a percent).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A point in time, only for [`between`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp(u64);

struct Origin {
    at: Instant,
    /// TSC at `at`; `None` when the TSC is not used.
    tsc: Option<u64>,
    /// Nanoseconds per tick (`f64` bits) once measured; 0 until then.
    rate: AtomicU64,
}

/// How long the rate is measured before it is fixed.
const CALIBRATION: Duration = Duration::from_millis(10);

fn origin() -> &'static Origin {
    static ORIGIN: OnceLock<Origin> = OnceLock::new();
    ORIGIN.get_or_init(|| Origin {
        at: Instant::now(),
        tsc: tsc(),
        rate: AtomicU64::new(0),
    })
}

/// The TSC, if it counts at a constant rate through frequency changes and sleep states.
#[cfg(target_arch = "x86_64")]
fn tsc() -> Option<u64> {
    use std::arch::x86_64::__cpuid;
    let invariant =
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0;
    // SAFETY: `rdtsc` reads a counter; it has no preconditions (x86-64 always has it).
    invariant.then(|| unsafe { std::arch::x86_64::_rdtsc() })
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> Option<u64> {
    None
}

/// Now.
#[inline]
pub(super) fn now() -> Stamp {
    let origin = origin();
    #[cfg(target_arch = "x86_64")]
    if origin.tsc.is_some() {
        // SAFETY: as in `tsc`.
        return Stamp(unsafe { std::arch::x86_64::_rdtsc() });
    }
    Stamp(u64::try_from(origin.at.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// The time from `start` to `end`.
pub(super) fn between(start: Stamp, end: Stamp) -> Duration {
    let origin = origin();
    let delta = end.0.saturating_sub(start.0);
    let Some(tsc_origin) = origin.tsc else {
        return Duration::from_nanos(delta);
    };
    let mut rate = f64::from_bits(origin.rate.load(Ordering::Relaxed));
    if rate == 0.0 {
        let elapsed = origin.at.elapsed();
        let ticks = end.0.max(tsc_origin + 1) - tsc_origin;
        rate = elapsed.as_nanos() as f64 / ticks as f64;
        if elapsed >= CALIBRATION {
            origin.rate.store(rate.to_bits(), Ordering::Relaxed);
        }
    }
    Duration::from_nanos((delta as f64 * rate) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_instant() {
        for _ in 0..3 {
            let (stamp, instant) = (now(), Instant::now());
            std::thread::sleep(Duration::from_millis(20));
            let (measured, expected) = (between(stamp, now()), instant.elapsed());
            let error = measured.as_secs_f64() / expected.as_secs_f64() - 1.0;
            assert!(error.abs() < 0.05, "{measured:?} vs {expected:?}");
        }
    }
}
