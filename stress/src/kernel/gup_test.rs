//! The debugfs gup_test's longterm-pin interface (mm/gup_test.h,
//! CONFIG_GUP_TEST): its ioctl numbers and argument layout, encoded here as
//! plain constants so that they are checked against the header anywhere.
//! The ioctls themselves are in `real::guptest`.

/// Where the kernel exposes gup_test (debugfs mounted at /sys/kernel/debug).
pub const PATH: &str = "/sys/kernel/debug/gup_test";

/// `struct pin_longterm_test`: `PIN_LONGTERM_TEST_START`'s argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinLongtermTest {
    pub addr: u64,
    pub size: u64,
    pub flags: u32,
}

/// `PIN_LONGTERM_TEST_FLAG_USE_WRITE`: FOLL_WRITE.
pub const FLAG_USE_WRITE: u32 = 1;
/// `PIN_LONGTERM_TEST_FLAG_USE_FAST`: pin_user_pages_fast instead of
/// pin_user_pages under the mmap lock.
pub const FLAG_USE_FAST: u32 = 2;

/// The flags of a pin: `rw` adds FOLL_WRITE, `fast` takes GUP-fast.
pub const fn flags(rw: bool, fast: bool) -> u32 {
    (if rw { FLAG_USE_WRITE } else { 0 }) | (if fast { FLAG_USE_FAST } else { 0 })
}

// include/uapi/asm-generic/ioctl.h, which x86, arm64 and riscv use: number
// in bits 0-7, type in 8-15, size in 16-29, direction in 30-31.
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;

const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    dir << 30 | (size as u32) << 16 | (ty as u32) << 8 | nr as u32
}

/// `_IOW('g', 7, struct pin_longterm_test)`: pins the range (FOLL_LONGTERM)
/// and keeps the pages until STOP or the file is closed.
pub const PIN_LONGTERM_TEST_START: u32 =
    ioc(IOC_WRITE, b'g', 7, std::mem::size_of::<PinLongtermTest>());
/// `_IO('g', 8)`: unpins.
pub const PIN_LONGTERM_TEST_STOP: u32 = ioc(IOC_NONE, b'g', 8, 0);
/// `_IOW('g', 9, __u64)`: copies the pinned pages' contents to the user
/// address the argument holds.
pub const PIN_LONGTERM_TEST_READ: u32 = ioc(IOC_WRITE, b'g', 9, std::mem::size_of::<u64>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_has_the_kernel_layout() {
        // Two __u64 and a __u32, padded to the u64 alignment.
        assert_eq!(std::mem::size_of::<PinLongtermTest>(), 24);
        assert_eq!(std::mem::align_of::<PinLongtermTest>(), 8);
        assert_eq!(std::mem::offset_of!(PinLongtermTest, addr), 0);
        assert_eq!(std::mem::offset_of!(PinLongtermTest, size), 8);
        assert_eq!(std::mem::offset_of!(PinLongtermTest, flags), 16);
    }

    #[test]
    fn ioctl_numbers_are_the_headers() {
        // _IOW('g', 7, 24 bytes): write | 24 << 16 | 'g' << 8 | 7.
        assert_eq!(PIN_LONGTERM_TEST_START, 0x4018_6707);
        assert_eq!(PIN_LONGTERM_TEST_STOP, 0x0000_6708);
        assert_eq!(PIN_LONGTERM_TEST_READ, 0x4008_6709);
        // The benchmark ioctls of the same header, as a check of the
        // encoding with another direction: _IOWR('g', 1, struct gup_test)
        // of 80 bytes is read | write.
        assert_eq!(ioc(IOC_WRITE | 2, b'g', 1, 80), 0xC050_6701);
    }

    #[test]
    fn flags_are_gup_longterms() {
        assert_eq!(flags(false, false), 0);
        assert_eq!(flags(true, false), 1);
        assert_eq!(flags(false, true), 2);
        assert_eq!(flags(true, true), 3);
    }
}
