//! The procedures, per family. Each reads top to bottom like the vendor's
//! numbered steps.

pub mod apt;
pub mod rpm;

use patchman_shared::{CheckReport, Failure, Family, StatusReport, Step, UpdateReport};

use crate::Helper;

/// Progress callback: called as each step starts.
pub type Progress<'a> = dyn FnMut(Step) + 'a;

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    match h.family {
        Family::Apt => apt::status(h),
        Family::Dnf | Family::Yum => rpm::status(h),
    }
}

pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    match h.family {
        Family::Apt => apt::check(h, progress),
        Family::Dnf | Family::Yum => rpm::check(h, progress),
    }
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    match h.family {
        Family::Apt => apt::update(h, progress),
        Family::Dnf | Family::Yum => rpm::update(h, progress),
    }
}

/// A failure on the helper's side (I/O, spawning), for a person to read.
pub(crate) fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::Internal {
        detail: e.to_string(),
    }
}

/// A tool's output that could not be understood at `step`.
pub(crate) fn unexpected(step: Step, e: impl std::fmt::Display) -> Failure {
    Failure::UnexpectedOutput {
        step,
        detail: e.to_string(),
    }
}
