//! The procedures, per family. Each reads top to bottom like the vendor's
//! numbered steps.

pub mod apt;
pub mod rpm;

use std::path::{Path, PathBuf};

use patchman_shared::{
    CheckReport, Evr, Failure, Family, Package, StatusReport, Step, UpdateReport,
};

use crate::probation::{self, RecordState, Versions};
use crate::Helper;

/// Progress callback: called as each step starts.
pub type Progress<'a> = dyn FnMut(Step) + 'a;

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    let mut s = match h.family {
        Family::Apt => apt::status(h),
        Family::Dnf | Family::Yum => rpm::status(h),
    }?;
    let installed: Versions = [
        (Package::Client, &s.client),
        (Package::Realtime, &s.realtime),
    ]
    .into_iter()
    .filter_map(|(p, i)| Some((p, i.as_ref()?.evr.clone())))
    .collect();
    s.rollback = probation::Store::system().status(&installed);
    Ok(s)
}

/// The installed versions of ours, and whether every one is complete.
pub fn installed_versions(h: &Helper) -> Result<(Versions, bool), Failure> {
    match h.family {
        Family::Apt => apt::installed_versions(h),
        Family::Dnf | Family::Yum => rpm::installed_versions(h),
    }
}

/// A kept package file embeds exactly `package` `version`.
pub fn verify_embedded(
    h: &Helper,
    package: Package,
    version: &Evr,
    path: &Path,
) -> Result<(), Failure> {
    match h.family {
        Family::Apt => apt::verify_embedded(h, package, version, path),
        Family::Dnf | Family::Yum => rpm::verify_embedded(h, package, version, path),
    }
}

/// The rollback's one transaction to exactly `target`.
pub fn install_exact(h: &Helper, target: &Versions, files: &[PathBuf]) -> Result<(), Failure> {
    match h.family {
        Family::Apt => apt::install_exact(h, target, files),
        Family::Dnf | Family::Yum => rpm::install_exact(h, target, files),
    }
}

pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    match h.family {
        Family::Apt => apt::check(h, progress),
        Family::Dnf | Family::Yum => rpm::check(h, progress),
    }
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    // The helper's cross-process lock, shared with `--rollback-due`: the
    // keep, install and record of an update never meet a rollback.
    let store = probation::Store::system();
    let _lock = store.lock(h.config().lock_wait)?;
    if let Ok(Some(r)) = store.record() {
        if r.state == RecordState::RollingBack {
            return Err(internal(
                "a rollback is being finished (patchman-rollback.service); the next run updates",
            ));
        }
    }
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
