//! Support for the scenario tiers' tests: a table of cases with one runner
//! ([`test_cases!`](crate::test_cases)), and a run's clock and host check
//! ([`Run`]).

/// One `#[test]` per row, each calling `runner` with the row's arguments: a
/// table of cases and one runner, where each case is still a test of its
/// own (run in parallel with the others, named when it fails). A new case
/// is one more row.
///
/// ```ignore
/// patchman_tests::test_cases! { scenario:
///     /// What this case proves.
///     a_broken_agent_is_rolled_back => (Family::Apt, Broken::Agent),
///     a_broken_helper_is_rolled_back => (Family::Apt, Broken::Helper),
/// }
/// ```
#[macro_export]
macro_rules! test_cases {
    ($runner:ident: $( $(#[$attr:meta])* $name:ident => ($($arg:expr),* $(,)?) ),+ $(,)?) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                $runner($($arg),*);
            }
        )+
    };
}

/// One scenario's run, from its start: its clock and the host's package
/// state before it, for [`Run::finish`].
pub struct Run {
    started: std::time::Instant,
    host_before: String,
}

impl Run {
    /// Starts the clock and takes the host's package state.
    pub fn start() -> Run {
        Run {
            started: std::time::Instant::now(),
            host_before: crate::host_package_state(),
        }
    }

    /// Prints `summary` with the time the run took in all, then asserts
    /// that the host's package state is what it was at the start.
    pub fn finish(self, summary: std::fmt::Arguments) {
        eprintln!(
            "{summary}; {:.1} s in all",
            self.started.elapsed().as_secs_f64()
        );
        crate::assert_host_unchanged(&self.host_before);
    }
}
