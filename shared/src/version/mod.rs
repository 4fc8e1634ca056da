//! Version ordering, as the package managers themselves order versions:
//! used by the helper for "never downgrade" and by the agent for its
//! version gate. Each algorithm is tested against the real tool.

pub mod deb;
pub mod rpm;

#[cfg(test)]
pub(crate) mod testgen {
    /// A small deterministic generator (xorshift), so the comparisons with
    /// the real tools are reproducible without a randomness crate. Each
    /// ordering's tests add the version generator they need.
    pub(crate) struct Gen(pub(crate) u64);

    impl Gen {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            let n = items.len() as u64;
            items.get((self.next() % n) as usize).copied().unwrap_or("")
        }
    }
}
