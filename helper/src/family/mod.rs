//! The procedures, per family. Each reads top to bottom like the vendor's
//! numbered steps.

pub mod apt;
pub mod rpm;

use patchman_shared::{CheckReport, Failure, Family, Request, StatusReport, Step, UpdateReport};

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
        Family::Dnf | Family::Yum => Err(not_supported(h, Request::Check)),
    }
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    match h.family {
        Family::Apt => apt::update(h, progress),
        Family::Dnf | Family::Yum => Err(not_supported(h, Request::Update)),
    }
}

fn not_supported(h: &Helper, request: Request) -> Failure {
    Failure::NotSupported {
        family: h.family,
        request: request.name().to_string(),
    }
}
