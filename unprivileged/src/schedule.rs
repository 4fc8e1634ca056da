//! When the daemon checks next. Pure: the clock (`now`, Unix seconds) and
//! the random source are passed in, so every rule is unit-tested.
//!
//! * first check: `now + U[0, jitter]` (DESIGN.md's interface);
//! * after a check that succeeded or was not allowed to update:
//!   `now + interval + U[0, jitter]`;
//! * after a failure: exponential back-off, `1 min · 2^(n-1)` for the n-th
//!   failure in a row, capped at the interval (a failing host never checks
//!   *less* often than a healthy one), spread over `[¾·b, b]` so a fleet
//!   that failed together does not retry together;
//! * after `Busy` / `LockHeld` (another package operation is running, which
//!   is not our failure): sooner, `1 min · 2^(n-1)` capped at 15 min (and at
//!   the interval), spread the same way;
//! * waiting for a phased rollout: at the end of the wait, or the regular
//!   check if that comes first.

use std::io::Read;
use std::time::Duration;

/// First back-off step after a failure.
pub const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(60);
/// First retry after `Busy` / `LockHeld`.
pub const BUSY_RETRY_BASE: Duration = Duration::from_secs(60);
/// Cap of the retries after `Busy` / `LockHeld`.
pub const BUSY_RETRY_CAP: Duration = Duration::from_secs(15 * 60);
/// First retry of the post-restart confirmation (local socket only).
pub const CONFIRM_RETRY_BASE: Duration = Duration::from_secs(1);
/// Cap of the post-restart confirmation retries.
pub const CONFIRM_RETRY_CAP: Duration = Duration::from_secs(60);

/// A source of random 64-bit numbers.
pub trait Random {
    fn next_u64(&mut self) -> u64;
}

/// Random numbers from `/dev/urandom` (no crate needed for a few numbers a
/// day). Should it be unreadable, a mix of the time and the pid: the jitter
/// only spreads load, it protects no secret.
#[derive(Debug, Default)]
pub struct Urandom;

impl Random for Urandom {
    fn next_u64(&mut self) -> u64 {
        let mut buf = [0u8; 8];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
        match read {
            Ok(()) => u64::from_le_bytes(buf),
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let seed = t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
                crate::rollout::fmix64(seed)
            }
        }
    }
}

/// A uniformly random whole number of seconds in `[0, max]`.
pub fn random_delay(max: Duration, rng: &mut dyn Random) -> Duration {
    let max = max.as_secs();
    if max == 0 {
        return Duration::ZERO;
    }
    // The modulo bias of a 64-bit number over at most ten years of seconds
    // is below 2^-35: irrelevant for spreading checks.
    Duration::from_secs(rng.next_u64() % (max + 1))
}

/// `now + d`, in Unix seconds, saturating.
pub fn after(now: u64, d: Duration) -> u64 {
    now.saturating_add(d.as_secs())
}

/// The first check of a daemon started at `now`.
pub fn first_check(now: u64, jitter: Duration, rng: &mut dyn Random) -> u64 {
    after(now, random_delay(jitter, rng))
}

/// The regular next check: `now + interval + U[0, jitter]`.
pub fn regular(now: u64, interval: Duration, jitter: Duration, rng: &mut dyn Random) -> u64 {
    after(now, interval + random_delay(jitter, rng))
}

/// `base · 2^(n-1)`, capped; `n` = 0 is treated as 1.
pub fn exponential(base: Duration, n: u32, cap: Duration) -> Duration {
    let shift = n.saturating_sub(1).min(30);
    base.checked_mul(1u32 << shift).unwrap_or(cap).min(cap)
}

/// A delay in `[¾·d, d]`: spread, never above `d` (so never above a cap).
fn spread(d: Duration, rng: &mut dyn Random) -> Duration {
    let quarter = Duration::from_secs(d.as_secs() / 4);
    d - quarter + random_delay(quarter, rng)
}

/// The back-off after the `failures`-th failure in a row.
pub fn failure_backoff(failures: u32, interval: Duration) -> Duration {
    exponential(FAILURE_BACKOFF_BASE.min(interval), failures, interval)
}

/// The next check after the `failures`-th failure in a row.
pub fn after_failure(now: u64, failures: u32, interval: Duration, rng: &mut dyn Random) -> u64 {
    after(now, spread(failure_backoff(failures, interval), rng))
}

/// The retry after the `n`-th `Busy`/`LockHeld` in a row.
pub fn busy_backoff(n: u32, interval: Duration) -> Duration {
    let cap = BUSY_RETRY_CAP.min(interval);
    exponential(BUSY_RETRY_BASE.min(cap), n, cap)
}

/// The next check after the `n`-th `Busy`/`LockHeld` in a row.
pub fn after_busy(now: u64, n: u32, interval: Duration, rng: &mut dyn Random) -> u64 {
    after(now, spread(busy_backoff(n, interval), rng))
}

/// The next check while a phased rollout makes us wait until `until`.
pub fn while_waiting(
    now: u64,
    until: u64,
    interval: Duration,
    jitter: Duration,
    rng: &mut dyn Random,
) -> u64 {
    regular(now, interval, jitter, rng).min(until.max(now))
}

/// The `n`-th retry of the post-restart confirmation.
pub fn confirm_retry(n: u32) -> Duration {
    exponential(CONFIRM_RETRY_BASE, n, CONFIRM_RETRY_CAP)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A random source replaying fixed numbers, cycling.
    pub(crate) struct Fixed(pub Vec<u64>, pub usize);

    impl Random for Fixed {
        fn next_u64(&mut self) -> u64 {
            let v = self.0[self.1 % self.0.len()];
            self.1 += 1;
            v
        }
    }

    /// A small deterministic generator (splitmix64) for distributions.
    pub(crate) struct SplitMix(pub u64);

    impl Random for SplitMix {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            crate::rollout::fmix64(self.0)
        }
    }

    const H: u64 = 3600;

    #[test]
    fn first_check_is_within_zero_and_jitter() {
        let now = 1_700_000_000;
        let mut rng = SplitMix(1);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2000 {
            let t = first_check(now, Duration::from_secs(H), &mut rng);
            assert!((now..=now + H).contains(&t), "{t}");
            seen_low |= t < now + H / 10;
            seen_high |= t > now + H * 9 / 10;
        }
        assert!(seen_low && seen_high, "the delay covers the whole range");
        assert_eq!(first_check(now, Duration::ZERO, &mut rng), now);
        assert_eq!(
            first_check(now, Duration::from_secs(10), &mut Fixed(vec![10], 0)),
            now + 10
        );
        assert_eq!(
            first_check(now, Duration::from_secs(10), &mut Fixed(vec![11], 0)),
            now
        );
    }

    #[test]
    fn regular_checks_are_interval_plus_fresh_jitter() {
        let mut rng = Fixed(vec![5, 7], 0);
        let i = Duration::from_secs(6 * H);
        let j = Duration::from_secs(H);
        assert_eq!(regular(0, i, j, &mut rng), 6 * H + 5);
        assert_eq!(regular(0, i, j, &mut rng), 6 * H + 7);
        assert_eq!(regular(100, i, Duration::ZERO, &mut rng), 100 + 6 * H);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_interval() {
        let i = Duration::from_secs(6 * H);
        let got: Vec<u64> = (1..=12).map(|n| failure_backoff(n, i).as_secs()).collect();
        assert_eq!(
            got,
            [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]
        );
        assert_eq!(failure_backoff(u32::MAX, i), i);
        // A short interval caps the base too.
        assert_eq!(failure_backoff(1, Duration::from_secs(10)).as_secs(), 10);
        // Spread within [3/4 b, b], never past the cap.
        let mut rng = SplitMix(7);
        for n in 1..40 {
            let b = failure_backoff(n, i).as_secs();
            let t = after_failure(1000, n, i, &mut rng) - 1000;
            assert!(t <= b && t >= b - b / 4, "n={n} t={t} b={b}");
        }
    }

    #[test]
    fn busy_is_retried_sooner_than_failures_are_capped() {
        let i = Duration::from_secs(6 * H);
        let got: Vec<u64> = (1..=7).map(|n| busy_backoff(n, i).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 900, 900, 900]);
        assert!(busy_backoff(10, i) < failure_backoff(10, i));
        assert_eq!(busy_backoff(3, Duration::from_secs(100)).as_secs(), 100);
        let mut rng = SplitMix(3);
        let t = after_busy(0, 1, i, &mut rng);
        assert!((45..=60).contains(&t), "{t}");
    }

    #[test]
    fn a_rollout_wait_ends_at_its_time_or_the_regular_check() {
        let mut rng = Fixed(vec![0], 0);
        let i = Duration::from_secs(H);
        assert_eq!(while_waiting(0, 600, i, Duration::ZERO, &mut rng), 600);
        assert_eq!(while_waiting(0, 10 * H, i, Duration::ZERO, &mut rng), H);
        assert_eq!(while_waiting(500, 100, i, Duration::ZERO, &mut rng), 500);
    }

    #[test]
    fn confirmation_retries_are_quick_and_capped() {
        let got: Vec<u64> = (1..=8).map(|n| confirm_retry(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn urandom_gives_different_numbers() {
        let mut r = Urandom;
        let a: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]), "{a:?}");
    }
}
