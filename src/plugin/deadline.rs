//! Call deadlines that count the plugin's running time, not the machine's load.
//!
//! Deadlines are enforced with wasmtime's epoch interruption: a ticker thread advances
//! the engine's epoch every [`super::EPOCH_TICK`], and a call whose deadline epoch
//! passes is stopped at its next loop header or call. Epochs are wall-clock time, so on
//! a busy machine a healthy one-microsecond call whose thread is descheduled for longer
//! than the deadline would be cut, and a fail-open policy would pass the event
//! unfiltered: a redactor would leak under load (seen in tests at a 10 ms deadline).
//!
//! So the epoch deadline is only the moment to *look*: when it passes, the store's
//! callback reads the calling thread's CPU clock and lets the call go on in steps of
//! half a deadline for as long as the thread has used less than half the deadline of
//! CPU time since that first look. A call that really computes (a loop) is cut after
//! about 1.5× its deadline when it has a core to itself; a call that was only waiting
//! for a core is not cut at all, up to [`BACKSTOP`] deadlines of wall time. Nothing is
//! read on the hot path: a call that ends before its deadline never looks at a clock.

use std::time::Duration;

use wasmtime::{Trap, UpdateDeadline};

use super::EPOCH_TICK;

/// However little CPU the call got, it is cut after this many deadlines of wall time
/// (a thread starved that long means the process is in trouble anyway).
pub(crate) const BACKSTOP: u32 = 100;

/// One store's deadline, re-armed before every call.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuDeadline {
    /// Epoch ticks of one deadline.
    ticks: u64,
    /// CPU time of one deadline.
    budget: Duration,
    /// The thread's CPU clock at the first look of the current call.
    mark: Option<Duration>,
    /// Looks so far in the current call, in half-deadline steps.
    looks: u32,
}

/// What to do when the epoch deadline of a call passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Look again after this many more ticks.
    Extend(u64),
    /// Stop the call: it used its time.
    Interrupt,
}

impl CpuDeadline {
    /// The epoch ticks to set before a call; forgets the previous call.
    pub(crate) fn arm(&mut self, ticks: u64) -> u64 {
        self.ticks = ticks.max(1);
        self.budget = EPOCH_TICK * u32::try_from(self.ticks).unwrap_or(u32::MAX);
        self.mark = None;
        self.looks = 0;
        self.ticks
    }

    /// The epoch deadline passed; `cpu_now` is the calling thread's CPU clock (`None`
    /// where it cannot be read: then the deadline is wall-clock time, as before).
    pub(crate) fn on_expiry(&mut self, cpu_now: Option<Duration>) -> Expiry {
        let Some(cpu_now) = cpu_now else {
            return Expiry::Interrupt;
        };
        self.looks += 1;
        let step = (self.ticks / 2).max(1);
        // Half-deadline steps: BACKSTOP deadlines of wall time in all.
        if self.looks > BACKSTOP * 2 {
            return Expiry::Interrupt;
        }
        match self.mark {
            None => {
                self.mark = Some(cpu_now);
                Expiry::Extend(step)
            }
            Some(mark) if cpu_now.saturating_sub(mark) >= self.budget / 2 => Expiry::Interrupt,
            Some(_) => Expiry::Extend(step),
        }
    }

    /// The store callback's answer for [`CpuDeadline::on_expiry`].
    pub(crate) fn decide(&mut self) -> wasmtime::Result<UpdateDeadline> {
        match self.on_expiry(thread_cpu_time()) {
            Expiry::Extend(ticks) => Ok(UpdateDeadline::Continue(ticks)),
            Expiry::Interrupt => Err(Trap::Interrupt.into()),
        }
    }
}

/// CPU time the calling thread has used (Linux, and other Unix with the POSIX
/// per-thread clock).
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_call_that_keeps_computing_is_cut_once_it_used_half_a_deadline_more() {
        let mut d = CpuDeadline::default();
        assert_eq!(d.arm(10), 10, "EPOCH_TICK is 1 ms: 10 ticks, 10 ms");
        assert_eq!(d.on_expiry(Some(100 * MS)), Expiry::Extend(5));
        assert_eq!(d.on_expiry(Some(104 * MS)), Expiry::Extend(5));
        assert_eq!(d.on_expiry(Some(105 * MS)), Expiry::Interrupt);
    }

    #[test]
    fn a_call_whose_thread_was_descheduled_is_not_cut() {
        let mut d = CpuDeadline::default();
        d.arm(10);
        assert_eq!(d.on_expiry(Some(7 * MS)), Expiry::Extend(5));
        // Fifty more looks (250 ms of wall time) with almost no CPU: still running.
        for i in 1..=50u32 {
            let cpu = 7 * MS + Duration::from_micros(u64::from(i) * 10);
            assert_eq!(d.on_expiry(Some(cpu)), Expiry::Extend(5), "look {i}");
        }
    }

    #[test]
    fn a_starved_call_is_still_cut_at_the_backstop() {
        let mut d = CpuDeadline::default();
        d.arm(10);
        let mut last = Expiry::Extend(0);
        let mut looks = 0;
        while last != Expiry::Interrupt {
            last = d.on_expiry(Some(MS));
            looks += 1;
        }
        assert_eq!(looks, BACKSTOP * 2 + 1);
    }

    #[test]
    fn each_call_starts_afresh_and_no_cpu_clock_means_wall_clock() {
        let mut d = CpuDeadline::default();
        d.arm(10);
        d.on_expiry(Some(MS));
        assert_eq!(d.on_expiry(Some(20 * MS)), Expiry::Interrupt);
        d.arm(4);
        assert_eq!(d.on_expiry(Some(30 * MS)), Expiry::Extend(2));
        assert_eq!(d.on_expiry(None), Expiry::Interrupt);
    }

    #[test]
    fn the_thread_cpu_clock_advances_while_computing() {
        let before = thread_cpu_time().expect("a per-thread CPU clock on Linux");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < 5 * MS {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = thread_cpu_time().unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
    }
}
