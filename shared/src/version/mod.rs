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

    /// `printed`, one of a tool's three verdict `words` (less, equal,
    /// greater), as an ordering.
    pub(crate) fn verdict(tool: &str, words: [&str; 3], printed: &str) -> Ordering {
        match words.iter().position(|w| *w == printed) {
            Some(0) => Ordering::Less,
            Some(1) => Ordering::Equal,
            Some(_) => Ordering::Greater,
            None => panic!("{tool} printed {printed:?}, not one of {words:?}"),
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

    /// What one family's generated versions are made of: [`Gen::version`]
    /// writes `[epoch:]start{0..3 pieces}[-release{0..1 piece}]`.
    pub(crate) struct Grammar {
        pub(crate) starts: &'static [&'static str],
        pub(crate) pieces: &'static [&'static str],
        pub(crate) releases: &'static [&'static str],
        /// A release is left out one time in this many.
        pub(crate) no_release_one_in: u64,
        /// With a release, the upstream version contains a `-` one time in
        /// this many (dpkg splits at the last one); `None`: never.
        pub(crate) dash_in_version_one_in: Option<u64>,
    }

    /// A small deterministic generator (xorshift), so the comparisons with
    /// the real tools are reproducible without a randomness crate. Each
    /// ordering's tests give the [`Grammar`] of their versions.
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

        /// A version of `grammar`.
        pub(crate) fn version(&mut self, grammar: &Grammar) -> String {
            let mut s = String::new();
            if self.next() % 4 == 0 {
                s.push_str(self.pick(&["1:", "0:", "2:", "10:"]));
            }
            s.push_str(self.pick(grammar.starts));
            for _ in 0..self.next() % 4 {
                s.push_str(self.pick(grammar.pieces));
            }
            if self.next() % grammar.no_release_one_in != 0 {
                if let Some(n) = grammar.dash_in_version_one_in {
                    if self.next() % n == 0 {
                        s.push_str("-x");
                    }
                }
                s.push('-');
                s.push_str(self.pick(grammar.releases));
                for _ in 0..self.next() % 2 {
                    s.push_str(self.pick(grammar.pieces));
                }
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering::{self, *};

    use super::testgen::{check_antisymmetric, cmp, Compare};

    const LT: Option<Ordering> = Some(Less);
    const EQ: Option<Ordering> = Some(Equal);
    const GT: Option<Ordering> = Some(Greater);
    /// Not a version of that family (dpkg: "bad syntax").
    const NA: Option<Ordering> = None;

    type Row = (
        &'static str,
        &'static str,
        Option<Ordering>,
        Option<Ordering>,
    );

    /// `(a, b, dpkg, rpm)`: `a` against `b` as `dpkg --compare-versions`
    /// and as rpm's `rpm.vercmp` order them, side by side: where the two
    /// families differ shows here. Every verdict is the real tool's.
    const KNOWN: &[Row] = &[
        ("1.0", "1.0", EQ, EQ),
        ("1.0", "1.0-0", EQ, LT),
        ("1.0-1", "1.0-1", EQ, EQ),
        ("1.0-1", "1.0-01", EQ, EQ),
        ("001", "1", EQ, EQ),
        ("1.0~rc1", "1.0", LT, LT),
        ("1.0~~", "1.0~", LT, LT),
        ("1.0~", "1.0", LT, LT),
        ("1.0~rc1-1", "1.0-1", LT, LT),
        ("1.0~~-1", "1.0~-1", LT, LT),
        ("1.0", "1.0a", LT, LT),
        ("1.0a", "1.0+", LT, GT),
        ("1.0+", "1.0.", LT, EQ),
        ("1.0.-1", "1.0-1", GT, EQ),
        ("1..0-1", "1.0-1", GT, EQ),
        ("1.0-1", "1_0-1", NA, EQ),
        ("1.0^git1-1", "1.0.1-1", NA, LT),
        ("1.0^git1-1", "1.0^git2-1", NA, LT),
        ("1.0^-1", "1.0~-1", NA, GT),
        ("1.0a-1", "1.01-1", LT, LT),
        ("1.a-1", "1.1-1", GT, LT),
        ("1.0-a", "1.0-1", GT, LT),
        ("1.7.0-1", "1.7.1-1", LT, LT),
        ("1.7.10-1", "1.7.9-1", GT, GT),
        ("1:1.0", "2.0", GT, GT),
        ("1:1.2.7-1", "9.9.9-1", GT, GT),
        ("0:2.0", "2.0", EQ, EQ),
        ("0:2.0-1", "2.0-1", EQ, EQ),
        ("1.0-1", "1.0-1+b1", LT, LT),
        ("1.0-1~bpo1", "1.0-1", LT, LT),
        ("1.0-1.el8", "1.0-1.el7", GT, GT),
        ("1.0-1", "1.0-1.el8", LT, LT),
        ("abc-1", "abd-1", NA, LT),
        ("a-1", "B-1", NA, GT),
    ];

    /// Each row with a verdict in the column `pick` chooses: `a` against
    /// `b` is that verdict, and `b` against `a` its reverse.
    fn assert_column(compare: Compare, pick: fn(&Row) -> Option<Ordering>) {
        for row @ &(a, b, ..) in KNOWN {
            if let Some(want) = pick(row) {
                assert_eq!(cmp(compare, a, b), want, "{a} vs {b}");
                assert_eq!(cmp(compare, b, a), want.reverse(), "{b} vs {a}");
            }
        }
    }

    #[test]
    fn dpkg_known_orderings() {
        assert_column(super::deb::compare, |row| row.2);
    }

    #[test]
    fn rpm_known_orderings() {
        assert_column(super::rpm::compare, |row| row.3);
    }

    proptest::proptest! {
        /// Both orderings, on every character either family's versions use.
        #[test]
        fn arbitrary_versions_never_panic_and_order_is_antisymmetric(a in "[0-9a-zA-Z.+~^_:-]{1,20}", b in "[0-9a-zA-Z.+~^_:-]{1,20}") {
            check_antisymmetric(super::deb::compare, &a, &b)?;
            check_antisymmetric(super::rpm::compare, &a, &b)?;
        }
    }
}
