//! The GUP entry points as data (`GupApi`) and one call's arguments
//! (`GupCall`); entry.rs runs them.

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

use crate::flags::Foll;
use crate::types::Pfn;

/// A GUP entry point, by the kernel's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum GupApi {
    GetUserPages,
    GetUserPagesRemote,
    GetUserPagesLocked,
    GetUserPagesUnlocked,
    GetUserPagesFast,
    GetUserPagesFastOnly,
    PinUserPages,
    PinUserPagesRemote,
    PinUserPagesUnlocked,
    PinUserPagesFast,
    PinUserPagesFastOnly,
}

impl GupApi {
    pub const ALL: [GupApi; 11] = [
        GupApi::GetUserPages,
        GupApi::GetUserPagesRemote,
        GupApi::GetUserPagesLocked,
        GupApi::GetUserPagesUnlocked,
        GupApi::GetUserPagesFast,
        GupApi::GetUserPagesFastOnly,
        GupApi::PinUserPages,
        GupApi::PinUserPagesRemote,
        GupApi::PinUserPagesUnlocked,
        GupApi::PinUserPagesFast,
        GupApi::PinUserPagesFastOnly,
    ];
    pub fn name(self) -> &'static str {
        match self {
            GupApi::GetUserPages => "get_user_pages",
            GupApi::GetUserPagesRemote => "get_user_pages_remote",
            GupApi::GetUserPagesLocked => "get_user_pages_locked",
            GupApi::GetUserPagesUnlocked => "get_user_pages_unlocked",
            GupApi::GetUserPagesFast => "get_user_pages_fast",
            GupApi::GetUserPagesFastOnly => "get_user_pages_fast_only",
            GupApi::PinUserPages => "pin_user_pages",
            GupApi::PinUserPagesRemote => "pin_user_pages_remote",
            GupApi::PinUserPagesUnlocked => "pin_user_pages_unlocked",
            GupApi::PinUserPagesFast => "pin_user_pages_fast",
            GupApi::PinUserPagesFastOnly => "pin_user_pages_fast_only",
        }
    }
    /// A pin_* entry point: released with unpin_user_page*.
    pub fn pins(self) -> bool {
        use GupApi::*;
        matches!(
            self,
            PinUserPages
                | PinUserPagesRemote
                | PinUserPagesUnlocked
                | PinUserPagesFast
                | PinUserPagesFastOnly
        )
    }
}

/// The arguments of one GUP call, whatever the entry point (the kernel's
/// wrappers take subsets of them in their own order).
pub struct GupCall<'a> {
    /// The address space: the remote one, or `current->mm`.
    pub mm: usize,
    pub start: u64,
    pub nr_pages: i64,
    pub gup_flags: Foll,
    pub pages: Option<&'a mut Vec<Pfn>>,
    /// `int *locked` of the remote and locked variants.
    pub locked: Option<&'a mut i32>,
}

impl<'a> GupCall<'a> {
    pub fn new(
        mm: usize,
        start: u64,
        nr_pages: i64,
        gup_flags: Foll,
        pages: Option<&'a mut Vec<Pfn>>,
        locked: Option<&'a mut i32>,
    ) -> Self {
        GupCall {
            mm,
            start,
            nr_pages,
            gup_flags,
            pages,
            locked,
        }
    }
}
