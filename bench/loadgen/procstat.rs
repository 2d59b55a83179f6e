//! CPU time and resident memory of other processes (the proxy under test), from /proc.

use std::time::Instant;

/// Linux reports CPU time in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU ticks of `pid`, 0 if it cannot be read.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Resident set size of `pid` in bytes, 0 if it cannot be read.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A group of processes measured together (nginx's workers, or one sluice).
pub struct Procs {
    pids: Vec<u32>,
    ticks_at_start: u64,
    started: Instant,
}

impl Procs {
    pub fn start(pids: Vec<u32>) -> Self {
        let ticks_at_start = pids.iter().map(|&p| cpu_ticks(p)).sum();
        Self {
            pids,
            ticks_at_start,
            started: Instant::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// CPU used since [`Procs::start`], in % of one core.
    pub fn cpu_percent(&self) -> f64 {
        let ticks: u64 = self.pids.iter().map(|&p| cpu_ticks(p)).sum();
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        ticks.saturating_sub(self.ticks_at_start) as f64 / TICKS_PER_SEC / seconds * 100.0
    }

    /// Their resident memory now, summed.
    pub fn rss_bytes(&self) -> u64 {
        self.pids.iter().map(|&p| rss_bytes(p)).sum()
    }
}
