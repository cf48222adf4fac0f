//! The machine's basic numbers: frame numbers, error numbers, page sizes.

use serde::{Deserialize, Serialize};

/// Base page size, as on x86-64 and arm64 with 4 KiB pages.
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Page frame number.
pub type Pfn = u32;

/// Kernel error numbers the model returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum Errno {
    EINTR = 4,
    EAGAIN = 11,
    ENOMEM = 12,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EINVAL = 22,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    /// The entry point does not exist in this preset's release.
    ENOSYS = 38,
    EREMOTEIO = 121,
    EHWPOISON = 133,
}

impl Errno {
    /// The kernel's return convention: -errno.
    pub(crate) fn as_ret(self) -> i64 {
        -(self as i64)
    }
}
