//! Latency percentiles over every event of a run.

/// Latencies in nanoseconds, merged from every stream.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn extend(&mut self, more: Vec<u32>) {
        if self.0.is_empty() {
            self.0 = more;
        } else {
            self.0.extend_from_slice(&more);
        }
    }

    /// Sorts once; afterwards [`Latencies::percentile_us`] is a lookup.
    pub fn finish(&mut self) {
        self.0.sort_unstable();
    }

    /// The `p`-th percentile (0–100) in microseconds, 0 when there is no sample.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        f64::from(self.0[rank.min(self.0.len() - 1)]) / 1000.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let mut l = Latencies::default();
        l.extend((1..=1000u32).rev().map(|n| n * 1000).collect());
        l.extend(vec![1_000_000]);
        l.finish();
        assert_eq!(l.len(), 1001);
        assert_eq!(l.percentile_us(0.0), 1.0);
        assert_eq!(l.percentile_us(50.0), 501.0);
        assert_eq!(l.percentile_us(100.0), 1000.0);
        assert_eq!(Latencies::default().percentile_us(99.0), 0.0);
    }
}
