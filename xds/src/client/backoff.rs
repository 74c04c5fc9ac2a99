//! The wait before the next connection attempt.

use std::time::Duration;

use super::options::Backoff;

pub(crate) struct Delays {
    config: Backoff,
    next: Duration,
}

impl Delays {
    pub fn new(config: Backoff) -> Self {
        Delays {
            config,
            next: config.initial,
        }
    }

    /// The next wait, drawn from `[d/2, d]`; `d` doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.config.max);
        let half = d / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }

    /// After a stream that worked, start again from the initial delay.
    pub fn reset(&mut self) {
        self.next = self.config.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max_and_resets() {
        let mut d = Delays::new(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
        });
        let bounds = [(50, 100), (100, 200), (200, 400), (200, 400), (200, 400)];
        for (lo, hi) in bounds {
            let got = d.next_delay().as_millis();
            assert!((lo..=hi).contains(&got), "{got} not in {lo}..={hi}");
        }
        d.reset();
        assert!(d.next_delay() <= Duration::from_millis(100));
    }
}
