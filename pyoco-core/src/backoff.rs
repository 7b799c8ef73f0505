//! The one retry backoff of pyoco: exponential growth from a base, a cap, and "equal jitter"
//! (half of each wait fixed, half random) so many retrying runs or workers do not stampede
//! together.
//!
//! A tiny pure function rather than a crate: the `backoff` crate is unmaintained, and `backon`
//! would own the retry loop, while our loops also race the wait against cancel and shutdown.
//! [`Backoff::delay`] takes the random number as an argument so the schedule is unit-tested
//! exactly; [`Backoff::jittered`] draws it from `fastrand`.

use std::time::Duration;

/// An exponential backoff schedule with a cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// Growth per retry; 1.0 keeps the wait constant.
    pub multiplier: f64,
    /// No wait (before jitter) is longer than this.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, multiplier: f64, max: Duration) -> Backoff {
        Backoff {
            base,
            multiplier,
            max,
        }
    }

    /// The wait before retry number `retry` (1 = the first retry), given `random` in [0, 1]:
    /// `base * multiplier^(retry-1)`, capped at `max`, of which half is fixed and half is
    /// scaled by `random`.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let exp = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let raw = if raw.is_finite() && raw > 0.0 {
            raw
        } else {
            0.0
        };
        let half = raw / 2.0;
        Duration::from_secs_f64(half + half * random.clamp(0.0, 1.0))
    }

    /// [`Backoff::delay`] with a fresh random number.
    pub fn jittered(&self, retry: u32) -> Duration {
        self.delay(retry, random_fraction())
    }
}

/// A random number in [0, 1), for jitter.
pub fn random_fraction() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_millis(500));

    #[test]
    fn grows_exponentially_from_the_base() {
        assert_eq!(B.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(B.delay(2, 1.0), Duration::from_millis(200));
        assert_eq!(B.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(B.delay(0, 1.0), Duration::from_millis(100), "0 counts as 1");
    }

    #[test]
    fn is_capped() {
        assert_eq!(B.delay(4, 1.0), Duration::from_millis(500));
        assert_eq!(B.delay(u32::MAX, 1.0), Duration::from_millis(500));
    }

    #[test]
    fn equal_jitter_keeps_half_of_the_wait_fixed() {
        assert_eq!(B.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(B.delay(3, 0.5), Duration::from_millis(300));
        assert_eq!(
            B.delay(2, 7.0),
            Duration::from_millis(200),
            "random is clamped"
        );
        for _ in 0..100 {
            let d = B.jittered(2);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }

    #[test]
    fn a_constant_or_zero_schedule_is_allowed() {
        let flat = Backoff::new(Duration::from_secs(1), 1.0, Duration::from_secs(30));
        assert_eq!(flat.delay(9, 1.0), Duration::from_secs(1));
        let zero = Backoff::new(Duration::ZERO, 2.0, Duration::from_secs(1));
        assert_eq!(zero.delay(3, 1.0), Duration::ZERO);
    }
}
