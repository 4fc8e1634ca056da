//! Version ordering, as the package managers themselves order versions:
//! used by the helper for "never downgrade" and by the agent for its
//! version gate. Each algorithm is tested against the real tool.

pub mod deb;
pub mod rpm;

#[cfg(test)]
pub(crate) mod testgen {
    use std::cmp::Ordering;

    use crate::Evr;

    /// One ordering's comparison of two versions.
    pub(crate) type Compare = fn(&Evr, &Evr) -> Ordering;

    /// `compare` on two version strings, both of which must parse.
    pub(crate) fn cmp(compare: Compare, a: &str, b: &str) -> Ordering {
        compare(&Evr::parse(a).unwrap(), &Evr::parse(b).unwrap())
    }

    /// Each `(a, b, want)`: `a` against `b` is `want`, and `b` against `a`
    /// its reverse.
    pub(crate) fn assert_orderings(compare: Compare, cases: &[(&str, &str, Ordering)]) {
        for &(a, b, want) in cases {
            assert_eq!(cmp(compare, a, b), want, "{a} vs {b}");
            assert_eq!(cmp(compare, b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Compares every pair both ways: with `compare`, and with the real
    /// tool through `tool_verdicts` (one call per batch of `batch` pairs,
    /// the batches in parallel: the tool is the slow part). Every pair
    /// must get a verdict, and the two must agree.
    pub(crate) fn assert_agrees_with_tool(
        compare: Compare,
        pairs: &[(String, String)],
        batch: usize,
        tool_verdicts: impl Fn(&[(String, String)]) -> Vec<Ordering> + Sync,
    ) {
        let batches: Vec<&[(String, String)]> = pairs.chunks(batch).collect();
        let verdicts: Vec<Vec<Ordering>> = std::thread::scope(|s| {
            let handles: Vec<_> = batches
                .iter()
                .map(|batch| {
                    let tool_verdicts = &tool_verdicts;
                    s.spawn(move || tool_verdicts(batch))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("batch thread"))
                .collect()
        });
        let mut checked = 0;
        for (batch, verdicts) in batches.iter().zip(&verdicts) {
            assert_eq!(batch.len(), verdicts.len(), "one verdict per pair");
            for ((a, b), tool) in batch.iter().zip(verdicts) {
                assert_eq!(cmp(compare, a, b), *tool, "{a} vs {b}");
                checked += 1;
            }
        }
        assert_eq!(checked, pairs.len());
    }

    /// For any two strings: where both parse, the order is antisymmetric
    /// and a version equals itself (and nothing panics on the way).
    pub(crate) fn check_antisymmetric(
        compare: Compare,
        a: &str,
        b: &str,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        if let (Ok(a), Ok(b)) = (Evr::parse(a), Evr::parse(b)) {
            proptest::prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
            proptest::prop_assert_eq!(compare(&a, &a), Ordering::Equal);
        }
        Ok(())
    }

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
