//! The rows that need a R/O or slow-path longterm pin, which no syscall
//! takes: the debugfs gup_test (CONFIG_GUP_TEST) pins a range with
//! PIN_LONGTERM_TEST_START, copies what the pinned pages hold with
//! PIN_LONGTERM_TEST_READ and unpins with PIN_LONGTERM_TEST_STOP. Each
//! ioctl's error is read from its own return (-1, then errno at once).

use super::{
    anon_area, child_failed, child_status, err, file_area, flavour, fork_child, join, reap, signal,
    temp_file, wait_for, Area, Comm, Env, Mem, Run, SAME,
};
use crate::kernel::gup_test::{self as gt, PinLongtermTest};
use crate::kernel::plan::{
    libc_errno, longterm_verdict, Real, RoPinMem, RoPinTest, GUP_TEST_REFUSALS,
};
use crate::kernel::report::Measured;
use nix::sys::mman::ProtFlags;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

/// /sys/kernel/debug/gup_test, open for one case. Closing it unpins what
/// a case left pinned (gup_test_release), so an early return leaks no pin.
struct GupTest(File);

impl GupTest {
    fn open() -> Result<GupTest, Real> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(gt::PATH)
            .map(GupTest)
            .map_err(|e| Real::Skip(format!("cannot open {}: {e}", gt::PATH)))
    }

    /// `Err(-errno)` when the ioctl returned -1.
    fn result(r: libc::c_int) -> Result<(), i32> {
        match r {
            0 => Ok(()),
            _ => Err(-std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        }
    }

    /// PIN_LONGTERM_TEST_START of `size` bytes at `addr` with `flags`.
    fn start(&self, addr: usize, size: usize, flags: u32) -> Result<(), i32> {
        let args = PinLongtermTest {
            addr: addr as u64,
            size: size as u64,
            flags,
        };
        // SAFETY: the argument is the kernel's struct, only read in the call.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), gt::PIN_LONGTERM_TEST_START as _, &args) };
        Self::result(r)
    }

    /// PIN_LONGTERM_TEST_READ: the pinned pages' contents into `into`,
    /// which must hold the whole pinned range.
    fn read(&self, into: &mut [u8]) -> Result<(), i32> {
        let to = into.as_mut_ptr() as u64;
        // SAFETY: the kernel writes the pinned range, as large as `into`,
        // to `to`; the argument is only read.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), gt::PIN_LONGTERM_TEST_READ as _, &to) };
        Self::result(r)
    }

    /// PIN_LONGTERM_TEST_STOP: unpins.
    fn stop(&self) -> Result<(), i32> {
        // SAFETY: no argument.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), gt::PIN_LONGTERM_TEST_STOP as _) };
        Self::result(r)
    }
}

fn errno_name(e: i32) -> String {
    format!("{e} ({})", std::io::Error::from_raw_os_error(-e))
}

/// Which pin gup_test takes, in the notes.
fn pin_api(rw: bool, fast: bool) -> String {
    format!(
        "gup_test {}(FOLL_LONGTERM{})",
        if fast {
            "pin_user_pages_fast"
        } else {
            "pin_user_pages"
        },
        if rw { " | FOLL_WRITE" } else { "" }
    )
}

/// cow.c's R/O pin tests on their memory: `test_ro_pin_on_shared`,
/// `test_ro_pin_on_ro_previously_shared`, `test_ro_pin_on_ro_exclusive`
/// and their `_fast_` twins on the anonymous backings (A9-A14), and
/// `test_ro_pin`/`test_ro_fast_pin` under `run_with_zeropage` and
/// `run_with_tmpfile` (N2, N3).
pub fn ro_pin(env: &Env, how: RoPinTest, fast: bool, mem: RoPinMem) -> Run {
    match mem {
        RoPinMem::Anon(b) => {
            let (a, notes) = anon_area(env, b)?;
            let (real, more) = do_test_ro_pin(&a, how, fast)?;
            Ok((real, join(&notes, &more)))
        }
        RoPinMem::ZeroPage => run_with_zeropage(env, how, fast),
        RoPinMem::PageCache => run_with_tmpfile(env, how, fast),
    }
}

/// cow.c `run_with_zeropage`: a private anonymous page and a R/O one, both
/// read so that the shared zeropage is mapped, then the test on the first.
fn run_with_zeropage(env: &Env, how: RoPinTest, fast: bool) -> Run {
    let mem = Mem::anon(env.page)?;
    let a = Area {
        start: mem.base,
        size: env.page,
        mem,
    };
    let smem = Mem::anon(env.page)?;
    let s = Area {
        start: smem.base,
        size: env.page,
        mem: smem,
    };
    s.protect(s.start, s.size, ProtFlags::PROT_READ)?;
    let _ = std::hint::black_box(a.bytes()[0].wrapping_add(s.bytes()[0]));
    let (real, notes) = do_test_ro_pin(&a, how, fast)?;
    Ok((real, join("shared zeropage (read fault)", &notes)))
}

/// cow.c `run_with_tmpfile`: a one-page file in `--dir` (fallocate: all
/// zeroes), mapped private R/W and shared R/O, both faulted in by a read;
/// the test on the private mapping.
fn run_with_tmpfile(env: &Env, how: RoPinTest, fast: bool) -> Run {
    let (file, _) = temp_file(&env.dir, false)?;
    fallocate(&file, env.page)?;
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let a = file_area(env, &file, rw, false)?;
    let s = file_area(env, &file, ProtFlags::PROT_READ, true)?;
    let _ = std::hint::black_box(a.bytes()[0].wrapping_add(s.bytes()[0]));
    let fs = crate::kernel::probe::fs_name(env.fs_magic);
    let (real, notes) = do_test_ro_pin(&a, how, fast)?;
    Ok((real, join(&format!("file on {fs}"), &notes)))
}

/// `fallocate(fd, 0, 0, len)`, as both selftests size their files.
fn fallocate(file: &File, len: usize) -> Result<(), Real> {
    // SAFETY: a plain syscall on an open file.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r != 0 {
        return Err(err("fallocate", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// cow.c `do_test_ro_pin`: the area R/O-mapped one of cow.c's ways (shared
/// with a live child, shared with a child that exited, or mprotect R/O +
/// clear_refs soft-dirty + mprotect R/W), a R/O longterm pin through
/// gup_test (which must unshare), a write through the mapping, and the
/// pinned pages read back: they must show the write, or the pin is not
/// `coherent pin`.
fn do_test_ro_pin(a: &Area, how: RoPinTest, fast: bool) -> Result<Measured, Real> {
    let gup = GupTest::open()?;
    let mut tmp = vec![0u8; a.size];
    let comm = Comm::new()?;
    let mut live_child = None;
    match how {
        RoPinTest::Plain => {}
        RoPinTest::Shared | RoPinTest::PreviouslyShared => {
            // The pages shared with the child; not pinned, so fork just
            // shares them.
            let pid = fork_child(|| {
                if !signal(&comm.child_ready.1) || !wait_for(&comm.parent_ready.0) {
                    return 2;
                }
                SAME
            })?;
            if !wait_for(&comm.child_ready.0) {
                return Err(child_failed(pid, "fork"));
            }
            if how == RoPinTest::PreviouslyShared {
                // R/O in our page tables, but no longer shared.
                signal(&comm.parent_ready.1);
                child_status(reap(pid)?, "the child")?;
            } else {
                live_child = Some(pid);
            }
        }
        RoPinTest::RoExclusive => a.ro_by_clear_refs()?,
    }
    let got = pin_write_read(&gup, a, &mut tmp, fast);
    // cow.c lets the live child go only after the pin, whatever happened.
    if let Some(pid) = live_child {
        signal(&comm.parent_ready.1);
        child_status(reap(pid)?, "the child")?;
    }
    let (real, notes) = got?;
    let shape = match how {
        RoPinTest::Plain => "",
        RoPinTest::Shared => "shared with a live child",
        RoPinTest::PreviouslyShared => "shared with a child that exited",
        RoPinTest::RoExclusive => "R/O-mapped by mprotect and clear_refs",
    };
    Ok((real, join(shape, &notes)))
}

/// The pin, the write, the read back and the unpin of `do_test_ro_pin`.
fn pin_write_read(gup: &GupTest, a: &Area, tmp: &mut [u8], fast: bool) -> Result<Measured, Real> {
    let api = pin_api(false, fast);
    match gup.start(a.start, a.size, gt::flags(false, fast)) {
        Ok(()) => {}
        // cow.c skips on EINVAL (no such ioctl, or an argument gup_test
        // refuses) and fails on any other error.
        Err(e) if e == -libc_errno::EINVAL => {
            return Err(Real::Skip(format!(
                "PIN_LONGTERM_TEST_START: {}",
                errno_name(e)
            )))
        }
        Err(e) => {
            return Ok((
                Real::Fail(format!("pin failed ({e}), should work")),
                format!("{api} refused: {}", errno_name(e)),
            ))
        }
    }
    a.fill(0xff);
    let read = gup.read(tmp);
    let stop = gup.stop();
    read.map_err(|e| err("PIN_LONGTERM_TEST_READ", errno_name(e)))?;
    let mut notes = api;
    if let Err(e) = stop {
        notes += &format!("; PIN_LONGTERM_TEST_STOP failed: {}", errno_name(e));
    }
    Ok(if tmp == a.bytes() {
        (
            Real::Pass,
            join(&notes, "the pinned pages show the write after the pin"),
        )
    } else {
        (
            Real::Fail("coherent pin".into()),
            join(
                &notes,
                "longterm R/O pin is not reliable: the pinned pages miss the write after the pin",
            ),
        )
    })
}

/// gup_longterm.c `do_test(.., TEST_TYPE_RO, TEST_TYPE_RO_FAST,
/// TEST_TYPE_RW or TEST_TYPE_RW_FAST, shared)` under `run_with_tmpfile`: a
/// one-page file in `--dir` (ftruncate, fallocate), mapped shared or
/// private and written (faulted in writable, so GUP-fast can pin it), R/O
/// by mprotect for a R/O pin, then pinned by gup_test; judged by
/// gup_longterm.c's rule for the model's flavour.
pub fn longterm(env: &Env, shared: bool, rw: bool, fast: bool, backing: &str) -> Run {
    let fs = flavour(env, backing)?;
    let (file, _) = temp_file(&env.dir, false)?;
    file.set_len(env.page as u64)
        .map_err(|e| err("ftruncate", e))?;
    fallocate(&file, env.page)?;
    let a = file_area(
        env,
        &file,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        shared,
    )?;
    a.fill(0);
    if !rw {
        // More unsharing decisions are covered with the page mapped R/O.
        a.protect(a.start, a.size, ProtFlags::PROT_READ)?;
    }
    let gup = GupTest::open()?;
    let pinned = gup.start(a.start, a.size, gt::flags(rw, fast));
    let mut notes = format!("{}; file on {fs}; ", pin_api(rw, fast));
    match pinned {
        Ok(()) => {
            notes += "pinned";
            if let Err(e) = gup.stop() {
                notes += &format!("; PIN_LONGTERM_TEST_STOP failed: {}", errno_name(e));
            }
        }
        Err(e) if e == -libc_errno::EINVAL => {
            return Err(Real::Skip(format!(
                "PIN_LONGTERM_TEST_START: {}, as gup_longterm.c skips",
                errno_name(e)
            )))
        }
        Err(e) => notes += &format!("refused with {e}"),
    }
    Ok((
        longterm_verdict(shared, rw, pinned, GUP_TEST_REFUSALS),
        notes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The request type is c_ulong with glibc and c_int with musl.
    #[allow(clippy::unnecessary_cast)]
    #[test]
    fn ioctl_numbers_agree_with_nix() {
        // nix's own _IOW and _IO encoding, an independent check of ours.
        let size = std::mem::size_of::<PinLongtermTest>();
        assert_eq!(
            gt::PIN_LONGTERM_TEST_START as u64,
            nix::request_code_write!(b'g', 7, size) as u64
        );
        assert_eq!(
            gt::PIN_LONGTERM_TEST_READ as u64,
            nix::request_code_write!(b'g', 9, std::mem::size_of::<u64>()) as u64
        );
        assert_eq!(
            gt::PIN_LONGTERM_TEST_STOP as u64,
            nix::request_code_none!(b'g', 8) as u64
        );
    }

    #[test]
    fn notes_name_the_pin() {
        assert_eq!(
            pin_api(true, true),
            "gup_test pin_user_pages_fast(FOLL_LONGTERM | FOLL_WRITE)"
        );
        assert_eq!(
            pin_api(false, false),
            "gup_test pin_user_pages(FOLL_LONGTERM)"
        );
        assert_eq!(errno_name(-14), "-14 (Bad address (os error 14))");
    }
}
