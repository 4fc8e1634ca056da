//! Phased rollout: a host that first sees version V waits
//! `hash(machine-id, V) mod window` before installing it, so a fleet spreads
//! a release evenly over `rollout_window` (from `server-group.json`) and a
//! bad release can be stopped, by flipping the group switch, before most
//! hosts have it. Deterministic: a host always gets the same place in the
//! queue for the same version, across restarts; a different version
//! reshuffles the order, so the same hosts are not always first.
//!
//! The hash is FNV-1a (64-bit) over `machine-id`, a NUL byte and the
//! version, followed by MurmurHash3's 64-bit finaliser (`fmix64`): FNV-1a
//! alone mixes its low bits poorly for inputs that differ only in their last
//! bytes, and the modulo keeps exactly those bits. Both are a few lines,
//! stable across platforms and versions of this program (a test pins the
//! values: changing them would reshuffle every fleet), and need no crate.
//! Nothing here is a secret: a host may compute its own place, which only
//! lets it choose to be late.

use std::time::Duration;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The stable hash of `(machine_id, version)`.
pub fn host_version_hash(machine_id: &str, version: &str) -> u64 {
    let mut input = Vec::with_capacity(machine_id.len() + 1 + version.len());
    input.extend_from_slice(machine_id.trim().as_bytes());
    input.push(0);
    input.extend_from_slice(version.as_bytes());
    fmix64(fnv1a64(&input))
}

/// How long this host waits, after first seeing `version`, before
/// installing it: `hash(machine_id, version) mod window` (whole seconds).
pub fn delay(machine_id: &str, version: &str, window: Duration) -> Duration {
    let w = window.as_secs();
    if w == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(host_version_hash(machine_id, version) % w)
}

/// This host's identity for the rollout: `/etc/machine-id` (systemd), else
/// `/var/lib/dbus/machine-id`, else the host name. `None` only when all
/// three are unreadable or empty; the caller then does not wait (and logs
/// it): an unknown position must not stall updates for ever.
pub fn machine_id() -> Option<String> {
    [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().chars().take(256).collect::<String>())
    .find(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_test_vectors() {
        // From the FNV reference (Fowler/Noll/Vo test suite).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing these reshuffles every fleet's order: do not.
        let id = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        let h = host_version_hash(id, "1.7.1-1");
        assert_eq!(h, host_version_hash(&format!("{id}\n"), "1.7.1-1"));
        assert_eq!(h, PINNED);
        assert_eq!(
            delay(id, "1.7.1-1", Duration::from_secs(86400)).as_secs(),
            PINNED % 86400
        );
    }
    const PINNED: u64 = 5_787_154_540_425_830_652;

    #[test]
    fn deterministic_and_within_the_window() {
        let w = Duration::from_secs(86400);
        let a = delay("abc", "1.7.1-1", w);
        assert_eq!(a, delay("abc", "1.7.1-1", w));
        assert!(a < w);
        assert_eq!(delay("abc", "1.7.1-1", Duration::ZERO), Duration::ZERO);
        assert_eq!(
            delay("abc", "1.7.1-1", Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    fn fleet(n: usize) -> Vec<String> {
        // Machine ids look like 32 hex digits; make them so, deterministically.
        (0..n as u64)
            .map(|i| format!("{:016x}{:016x}", fmix64(i), fmix64(i ^ 0xdead_beef)))
            .collect()
    }

    #[test]
    fn a_fleet_spreads_evenly_over_the_window() {
        let hosts = fleet(5000);
        let w = Duration::from_secs(24 * 3600);
        let buckets = 10;
        let mut counts = vec![0usize; buckets];
        for h in &hosts {
            let d = delay(h, "1.7.1-1", w).as_secs();
            counts[(d * buckets as u64 / w.as_secs()) as usize] += 1;
        }
        // 500 expected per tenth; a fair spread stays well within ±20 %.
        for (i, c) in counts.iter().enumerate() {
            assert!((400..=600).contains(c), "tenth {i}: {c} hosts ({counts:?})");
        }
        // After half the window about half the fleet has it.
        let first_half: usize = counts[..5].iter().sum();
        assert!((2300..=2700).contains(&first_half), "{first_half}");
    }

    #[test]
    fn sequential_machine_ids_spread_too() {
        // Cloned VMs sometimes get ids that differ only in the last digits.
        let w = Duration::from_secs(3600);
        let mut counts = [0usize; 4];
        for i in 0..2000u32 {
            let id = format!("00000000000000000000000000{i:06}");
            counts[(delay(&id, "2.0.0-1", w).as_secs() * 4 / 3600) as usize] += 1;
        }
        for c in counts {
            assert!((400..=600).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_new_version_reshuffles_the_order() {
        let hosts = fleet(1000);
        let w = Duration::from_secs(86400);
        let early =
            |v: &str| -> Vec<bool> { hosts.iter().map(|h| delay(h, v, w) < w / 10).collect() };
        let (a, b) = (early("1.7.1-1"), early("1.7.2-1"));
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
        // Independent: about 1 % of hosts are early both times, not 10 %.
        assert!(both < 30, "{both} hosts early for both versions");
    }

    #[test]
    fn this_host_has_an_identity() {
        assert!(machine_id().is_some_and(|m| !m.is_empty()));
    }
}
