//! The cases on the running kernel, with real syscalls: each function
//! mirrors the cow.c or gup_longterm.c function its doc comment names, step
//! for step, and reports in the model table's terms. Errors are taken from
//! each call's own return value (an io_uring CQE's `res` is `-errno`).

mod guptest;

use super::plan::{longterm_verdict, AnonBacking, AnonCase, Real, Runner, IOURING_REFUSALS};
use super::probe;
use super::report::Measured;
use io_uring::{opcode, types, IoUring};
use nix::sys::mman::{
    madvise, mmap, mmap_anonymous, mprotect, munmap, MapFlags, MmapAdvise, ProtFlags,
};
use nix::sys::uio::{pread, process_vm_readv, pwrite, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::IoSliceMut;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// What the machine offers the cases.
pub struct Env {
    pub page: usize,
    /// The PMD THP size; `None` without THP.
    pub thp: Option<usize>,
    /// Where files are made (the page-cache and gup_longterm cases).
    pub dir: PathBuf,
    pub fs_magic: u64,
    pub gup_test: bool,
}

impl Env {
    pub fn probe(dir: &Path) -> Result<Env, String> {
        let st = nix::sys::statfs::statfs(dir)
            .map_err(|e| format!("cannot statfs {}: {e}", dir.display()))?;
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ok(Env {
            page: nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .map_or(4096, |p| p as usize),
            thp,
            dir: dir.to_path_buf(),
            fs_magic: st.filesystem_type().0 as u64,
            gup_test: Path::new(super::gup_test::PATH).exists(),
        })
    }
}

/// Runs one row.
pub fn run(r: &Runner, env: &Env) -> Measured {
    let got = match r {
        Runner::Anon(case, backing) => anon(env, *case, *backing),
        Runner::CollapseBeforeFork => collapse_before_fork(env),
        Runner::PageCacheCow => page_cache_cow(env),
        Runner::LongtermIouring { shared, backing } => longterm_iouring(env, *shared, backing),
        Runner::RoPin { .. } | Runner::LongtermGupTest { .. } if !env.gup_test => Err(Real::Skip(
            "needs /sys/kernel/debug/gup_test (CONFIG_GUP_TEST, debugfs mounted): absent".into(),
        )),
        Runner::RoPin { how, fast, mem } => guptest::ro_pin(env, *how, *fast, *mem),
        Runner::LongtermGupTest {
            shared,
            rw,
            fast,
            backing,
        } => guptest::longterm(env, *shared, *rw, *fast, backing),
        Runner::None(why) => Err(Real::Skip(why.clone())),
    };
    got.unwrap_or_else(|r| (r, String::new()))
}

type Run = Result<Measured, Real>;

fn err(what: &str, e: impl std::fmt::Display) -> Real {
    Real::Error(format!("{what}: {e}"))
}

/// An mmap'ed range, unmapped on drop except for the parts a case unmapped
/// itself (something else may have been mapped there since).
struct Mem {
    base: usize,
    len: usize,
    holes: Vec<(usize, usize)>,
}

impl Mem {
    fn anon(len: usize) -> Result<Mem, Real> {
        Mem::anon_with(len, MapFlags::MAP_PRIVATE).map_err(|e| err("mmap", e))
    }

    fn anon_with(len: usize, flags: MapFlags) -> Result<Mem, nix::errno::Errno> {
        let n = NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?;
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let p = unsafe {
            mmap_anonymous(None, n, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags)
        }?;
        Ok(Mem {
            base: p.as_ptr() as usize,
            len,
            holes: Vec::new(),
        })
    }

    fn file(f: &File, len: usize, prot: ProtFlags, shared: bool) -> Result<Mem, Real> {
        let n = NonZeroUsize::new(len).ok_or_else(|| err("mmap", "empty"))?;
        let flags = if shared {
            MapFlags::MAP_SHARED
        } else {
            MapFlags::MAP_PRIVATE
        };
        // SAFETY: a fresh mapping of a file only this process knows.
        let p = unsafe { mmap(None, n, prot, flags, f.as_fd(), 0) }.map_err(|e| err("mmap", e))?;
        Ok(Mem {
            base: p.as_ptr() as usize,
            len,
            holes: Vec::new(),
        })
    }

    /// munmap of part of the range, as a case does.
    fn unmap(&mut self, at: usize, len: usize) -> Result<(), Real> {
        // SAFETY: inside this mapping; no reference into it outlives the call.
        unsafe { munmap(ptr(at), len) }.map_err(|e| err("munmap", e))?;
        self.holes.push((at, at + len));
        Ok(())
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        self.holes.sort();
        let mut from = self.base;
        let end = self.base + self.len;
        for &(a, b) in self.holes.iter().chain([(end, end)].iter()) {
            if a > from {
                // SAFETY: a part of this mapping no case unmapped.
                let _ = unsafe { munmap(ptr(from), a - from) };
            }
            from = from.max(b);
        }
    }
}

fn ptr(addr: usize) -> NonNull<c_void> {
    NonNull::new(addr as *mut c_void).expect("mapped addresses are not null")
}

/// The memory a case works on: `size` bytes at `start` inside `mem`.
struct Area {
    mem: Mem,
    start: usize,
    size: usize,
}

impl Area {
    fn fill(&self, v: u8) {
        // SAFETY: mapped read-write and owned by this area.
        unsafe { std::ptr::write_bytes(self.start as *mut u8, v, self.size) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: mapped and readable; every write to it is by this thread or
        // by a syscall that has returned.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.size) }
    }

    fn advise(&self, at: usize, len: usize, a: MmapAdvise, what: &str) -> Result<(), Real> {
        // SAFETY: inside this area's mapping.
        unsafe { madvise(ptr(at), len, a) }.map_err(|e| err(what, e))
    }

    fn protect(&self, at: usize, len: usize, p: ProtFlags) -> Result<(), Real> {
        // SAFETY: inside this area's mapping; nothing holds a reference.
        unsafe { mprotect(ptr(at), len, p) }.map_err(|e| err("mprotect", e))
    }

    /// cow.c's R/O mapping without fork: mprotect R/O, clear_refs
    /// soft-dirty (so that mprotect does not map the page R/W again at
    /// once), mprotect R/W.
    pub(super) fn ro_by_clear_refs(&self) -> Result<(), Real> {
        self.protect(self.start, self.size, ProtFlags::PROT_READ)?;
        std::fs::write("/proc/self/clear_refs", "4").map_err(|e| err("clear_refs", e))?;
        self.protect(
            self.start,
            self.size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        )
    }
}

fn pagemap(env: &Env, addr: usize) -> Result<probe::PagemapEntry, Real> {
    let f = File::open("/proc/self/pagemap").map_err(|e| err("/proc/self/pagemap", e))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (addr / env.page * 8) as u64)
        .map_err(|e| err("/proc/self/pagemap", e))?;
    Ok(probe::pagemap_entry(u64::from_ne_bytes(b)))
}

/// Whether the page at `addr` belongs to a THP; `None` when the PFN or
/// /proc/kpageflags is not readable (not root).
fn is_thp(env: &Env, addr: usize) -> Option<bool> {
    let pfn = pagemap(env, addr).ok()?.pfn;
    if pfn == 0 {
        return None;
    }
    let f = File::open("/proc/kpageflags").ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, pfn * 8).ok()?;
    Some(probe::kpageflag(u64::from_ne_bytes(b), probe::KPF_THP))
}

fn anon_huge_kb(addr: usize) -> Result<u64, Real> {
    let s = std::fs::read_to_string("/proc/self/smaps").map_err(|e| err("/proc/self/smaps", e))?;
    probe::anon_huge_kb(&s, addr).ok_or_else(|| err("/proc/self/smaps", "no VMA holds the area"))
}

/// cow.c's `run_with_base_page`, `run_with_swappedout_base_page`,
/// `run_with_thp` and its PTE-mapped and single-PTE variants: the area
/// written with 1s, and how the backing was checked.
fn anon_area(env: &Env, b: AnonBacking) -> Result<(Area, String), Real> {
    if let AnonBacking::Hugetlb(kb) = b {
        return hugetlb_area(kb);
    }
    if let AnonBacking::Base | AnonBacking::SwappedBase = b {
        let a = Area {
            mem: Mem::anon(env.page)?,
            start: 0,
            size: env.page,
        };
        let a = Area {
            start: a.mem.base,
            ..a
        };
        a.fill(1);
        if b == AnonBacking::SwappedBase {
            a.advise(a.start, a.size, MmapAdvise::MADV_PAGEOUT, "MADV_PAGEOUT")?;
            if !pagemap(env, a.start)?.swapped {
                return Err(Real::Skip(
                    "MADV_PAGEOUT did not swap the page out (no swap space?)".into(),
                ));
            }
        }
        return Ok((a, String::new()));
    }
    let thp = env
        .thp
        .ok_or_else(|| Real::Skip("no THP (no transparent_hugepage in sysfs)".into()))?;
    // A THP-aligned area inside a mapping twice its size.
    let mem = Mem::anon(2 * thp)?;
    let start = mem.base.div_ceil(thp) * thp;
    let mut a = Area {
        mem,
        start,
        size: thp,
    };
    a.advise(start, thp, MmapAdvise::MADV_HUGEPAGE, "MADV_HUGEPAGE")
        .map_err(|e| Real::Skip(format!("{} (THP disabled?)", e.show())))?;
    // One store faults in a whole THP, or just a page.
    // SAFETY: mapped read-write.
    unsafe { (start as *mut u8).write(1) };
    if !pagemap(env, start + thp - env.page)?.present {
        return Err(Real::Skip("did not get a THP populated".into()));
    }
    a.fill(1);
    let kb = anon_huge_kb(start)?;
    if kb < (thp / 1024) as u64 {
        return Err(Real::Skip(format!(
            "the THP is not PMD-mapped (AnonHugePages {kb} kB)"
        )));
    }
    if b == AnonBacking::PmdThp {
        return Ok((a, format!("smaps: AnonHugePages {kb} kB")));
    }
    // A subpage mapped R/O for a moment makes the kernel PTE-map the THP.
    a.protect(start + env.page, env.page, ProtFlags::PROT_READ)?;
    a.protect(
        start + env.page,
        env.page,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
    )?;
    let kb = anon_huge_kb(start)?;
    if kb != 0 {
        return Err(Real::Skip(format!(
            "mprotect did not PTE-map the THP (AnonHugePages {kb} kB)"
        )));
    }
    let mut notes = match is_thp(env, start) {
        Some(true) => "PTE-mapped (AnonHugePages 0 kB), kpageflags: THP".to_string(),
        Some(false) => return Err(Real::Skip("kpageflags: the page is no THP".into())),
        None => "PTE-mapped (AnonHugePages 0 kB); THP not checked: kpageflags unreadable".into(),
    };
    if b == AnonBacking::SinglePteThp {
        a.advise(
            start + env.page,
            thp - env.page,
            MmapAdvise::MADV_DONTNEED,
            "MADV_DONTNEED",
        )?;
        a.size = env.page;
        notes += "; the rest zapped (MADV_DONTNEED)";
    }
    Ok((a, notes))
}

/// cow.c's `run_with_hugetlb`: one private anonymous huge page of `kb` kB,
/// written with 1s. cow.c first checks that a second page can be had: a
/// write after fork copies the page, and a private hugetlb mapping whose
/// copy cannot be allocated is taken from the child (SIGBUS there), which
/// no case is about.
fn hugetlb_area(kb: u64) -> Result<(Area, String), Real> {
    let pool = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB/free_hugepages");
    let free: u64 = match std::fs::read_to_string(&pool) {
        Ok(s) => s.trim().parse().map_err(|e| err(&pool, e))?,
        Err(_) => return Err(Real::Skip(format!("no {pool}: no {kb} kB huge pages"))),
    };
    if free < 2 {
        return Err(Real::Skip(format!(
            "{pool} is {free}; a case needs 2 (the page and its copy on write), \
             set nr_hugepages"
        )));
    }
    let size = kb as usize * 1024;
    let flags = MapFlags::MAP_PRIVATE
        | MapFlags::map_hugetlb_with_size_log2(size.trailing_zeros())
            .ok_or_else(|| err("MAP_HUGETLB", format!("{kb} kB is no huge page size")))?;
    let mem = Mem::anon_with(size, flags).map_err(|e| {
        Real::Skip(format!(
            "mmap MAP_HUGETLB of {kb} kB: {e} (no free huge page)"
        ))
    })?;
    let a = Area {
        start: mem.base,
        size,
        mem,
    };
    a.fill(1);
    Ok((a, format!("MAP_HUGETLB, {free} free {kb} kB pages")))
}

/// cow.c's `struct comm_pipes`: each side tells the other it is ready.
struct Comm {
    child_ready: (OwnedFd, OwnedFd),
    parent_ready: (OwnedFd, OwnedFd),
}

impl Comm {
    fn new() -> Result<Comm, Real> {
        let p = || nix::unistd::pipe().map_err(|e| err("pipe", e));
        Ok(Comm {
            child_ready: p()?,
            parent_ready: p()?,
        })
    }
}

fn signal(fd: &OwnedFd) -> bool {
    nix::unistd::write(fd, b"0") == Ok(1)
}

fn wait_for(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut b) {
            Ok(1) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
    }
}

/// Forks; the child runs `child` and exits with its status without
/// returning into the caller (no destructor of the parent's state runs
/// twice).
fn fork_child(child: impl FnOnce() -> i32) -> Result<Pid, Real> {
    // SAFETY: this process has no other thread when the cases run; the child
    // only makes syscalls and exits with _exit.
    match unsafe { fork() }.map_err(|e| err("fork", e))? {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// The child's exit status.
fn reap(pid: Pid) -> Result<i32, Real> {
    match waitpid(pid, None).map_err(|e| err("waitpid", e))? {
        WaitStatus::Exited(_, code) => Ok(code),
        other => Err(err("child", format!("{other:?}"))),
    }
}

/// Child exit statuses of the vmsplice and memcmp children.
const SAME: i32 = 0;
const LEAK: i32 = 1;

fn child_status(code: i32, what: &str) -> Result<bool, Real> {
    match code {
        SAME => Ok(false),
        LEAK => Ok(true),
        c => Err(err(what, format!("the child failed (status {c})"))),
    }
}

fn anon(env: &Env, case: AnonCase, b: AnonBacking) -> Run {
    let (a, notes) = anon_area(env, b)?;
    let (real, more) = match case {
        AnonCase::CowInParent => cow_in_parent(&a)?,
        AnonCase::VmspliceInChild => vmsplice_in_child(a)?,
        AnonCase::VmspliceBeforeFork => vmsplice_in_parent(a, true)?,
        AnonCase::VmspliceAfterFork => vmsplice_in_parent(a, false)?,
        AnonCase::IouringRo => iouring(env, &a, false)?,
        AnonCase::IouringFork => iouring(env, &a, true)?,
    };
    Ok((real, join(&notes, &more)))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.into(),
        (_, true) => a.into(),
        _ => format!("{a}; {b}"),
    }
}

/// cow.c `do_test_cow_in_parent` with `child_memcmp_fn`: the child keeps a
/// copy, the parent writes, the child compares. Besides, the parent reads
/// the child's page with process_vm_readv (pin_user_pages_remote): no view
/// of the child, its own or through GUP, may show the parent's write.
fn cow_in_parent(a: &Area) -> Result<Measured, Real> {
    let old = a.bytes().to_vec();
    let comm = Comm::new()?;
    let pid = fork_child(|| {
        if !signal(&comm.child_ready.1) || !wait_for(&comm.parent_ready.0) {
            return 2;
        }
        if a.bytes() == old.as_slice() {
            SAME
        } else {
            LEAK
        }
    })?;
    if !wait_for(&comm.child_ready.0) {
        return Err(err("fork", "the child did not get ready"));
    }
    a.fill(0xff);
    let mut seen = vec![0u8; a.size];
    let remote = process_vm_readv(
        pid,
        &mut [IoSliceMut::new(&mut seen)],
        &[RemoteIoVec {
            base: a.start,
            len: a.size,
        }],
    );
    signal(&comm.parent_ready.1);
    let leak = child_status(reap(pid)?, "memcmp")?;
    // Without CONFIG_CROSS_MEMORY_ATTACH (a small kernel) there is only
    // cow.c's own check: the child's memcmp.
    let remote = match remote {
        Err(nix::errno::Errno::ENOSYS) => None,
        r => Some(r.map_err(|e| err("process_vm_readv", e))?),
    };
    let remote_leak = remote.is_some_and(|n| n != a.size || seen != old);
    Ok(match (leak, remote_leak) {
        (false, false) => (
            Real::Pass,
            match remote {
                Some(_) => "process_vm_readv of the child: its old data".into(),
                None => {
                    "the child's memcmp only: no process_vm_readv (CONFIG_CROSS_MEMORY_ATTACH off)"
                        .into()
                }
            },
        ),
        (true, _) => (
            Real::Fail("no leak after fork".into()),
            "the child saw the parent's write".into(),
        ),
        (false, true) => (
            Real::Fail("no leak after fork".into()),
            "process_vm_readv of the child saw the parent's write".into(),
        ),
    })
}

/// vmsplice(2) of `len` bytes at `at` into the pipe `w` (FOLL_GET, R/O).
fn vmsplice(w: &OwnedFd, at: usize, len: usize) -> Result<usize, String> {
    let iov = libc::iovec {
        iov_base: at as *mut c_void,
        iov_len: len,
    };
    // SAFETY: the iovec covers mapped memory; vmsplice only reads it.
    let n = unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, 0) };
    match n {
        n if n > 0 => Ok(n as usize),
        0 => Err("vmsplice: nothing transferred".into()),
        _ => Err(format!("vmsplice: {}", std::io::Error::last_os_error())),
    }
}

/// Reads `n` bytes from the pipe.
fn read_pipe(r: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut total = 0;
    while total < buf.len() {
        match nix::unistd::read(r, &mut buf[total..]) {
            Ok(0) => return false,
            Ok(n) => total += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// cow.c `test_vmsplice_in_child` (`child_vmsplice_memcmp_fn`): the child
/// vmsplices the shared page into a pipe and unmaps it; after the parent
/// wrote, the pipe must still give the old data (CVE-2020-29374).
fn vmsplice_in_child(mut a: Area) -> Result<Measured, Real> {
    let old = a.bytes().to_vec();
    let mut new = vec![0u8; a.size];
    let comm = Comm::new()?;
    let pipe = nix::unistd::pipe().map_err(|e| err("pipe", e))?;
    let (start, size) = (a.start, a.size);
    let pid = fork_child(|| {
        let Ok(n) = vmsplice(&pipe.1, start, size) else {
            return 3;
        };
        if a.mem.unmap(start, size).is_err() {
            return 4;
        }
        if !signal(&comm.child_ready.1) || !wait_for(&comm.parent_ready.0) {
            return 2;
        }
        if !read_pipe(&pipe.0, &mut new[..n]) {
            return 5;
        }
        if new[..n] == old[..n] {
            SAME
        } else {
            LEAK
        }
    })?;
    if !wait_for(&comm.child_ready.0) {
        return Err(child_failed(pid, "vmsplice"));
    }
    a.fill(0xff);
    signal(&comm.parent_ready.1);
    Ok(match child_status(reap(pid)?, "vmsplice")? {
        false => (Real::Pass, "vmsplice (FOLL_GET) in the child".into()),
        true => (
            Real::Fail("no leak after fork".into()),
            "leak from parent into child through the pipe".into(),
        ),
    })
}

fn child_failed(pid: Pid, what: &str) -> Real {
    match reap(pid) {
        Ok(code) => err(what, format!("the child failed (status {code})")),
        Err(e) => e,
    }
}

/// cow.c `do_test_vmsplice_in_parent`: the parent vmsplices (before or
/// after fork) and unmaps; after the child wrote, the pipe must still give
/// the old data.
fn vmsplice_in_parent(mut a: Area, before_fork: bool) -> Result<Measured, Real> {
    let old = a.bytes().to_vec();
    let mut new = vec![0u8; a.size];
    let comm = Comm::new()?;
    let pipe = nix::unistd::pipe().map_err(|e| err("pipe", e))?;
    let mut n = 0;
    if before_fork {
        n = vmsplice(&pipe.1, a.start, a.size).map_err(|e| err("vmsplice", e))?;
    }
    let pid = fork_child(|| {
        if !signal(&comm.child_ready.1) || !wait_for(&comm.parent_ready.0) {
            return 2;
        }
        a.fill(0xff);
        SAME
    })?;
    if !before_fork {
        n = match vmsplice(&pipe.1, a.start, a.size) {
            Ok(n) => n,
            Err(e) => {
                signal(&comm.parent_ready.1);
                let _ = reap(pid);
                return Err(err("vmsplice", e));
            }
        };
    }
    if !wait_for(&comm.child_ready.0) {
        return Err(child_failed(pid, "fork"));
    }
    let (start, size) = (a.start, a.size);
    a.mem.unmap(start, size)?;
    signal(&comm.parent_ready.1);
    child_status(reap(pid)?, "the child's write")?;
    if !read_pipe(&pipe.0, &mut new[..n]) {
        return Err(err("read", "the pipe"));
    }
    let when = if before_fork { "before" } else { "after" };
    Ok(if new[..n] == old[..n] {
        (Real::Pass, format!("vmsplice (FOLL_GET) {when} fork"))
    } else {
        (
            Real::Fail("no leak after fork".into()),
            "leak from child into parent through the pipe".into(),
        )
    })
}

/// A file in `dir`, unlinked at once: O_DIRECT if the filesystem takes it.
fn temp_file(dir: &Path, direct: bool) -> Result<(File, bool), Real> {
    let path = dir.join(format!(".gupcheck-kernel-{}", std::process::id()));
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(flags)
            .open(&path)
    };
    let (f, direct) = match open(if direct { libc::O_DIRECT } else { 0 }) {
        Ok(f) => (f, direct),
        // EINVAL: the filesystem refuses O_DIRECT (tmpfs before 6.6), after
        // O_CREAT made the file: remove it before opening it again.
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            let _ = std::fs::remove_file(&path);
            (open(0).map_err(|e| err("open", e))?, false)
        }
        Err(e) => return Err(err(&format!("open {}", path.display()), e)),
    };
    let _ = std::fs::remove_file(&path);
    Ok((f, direct))
}

/// One io_uring request, waited for: its CQE's `res` (bytes or -errno).
fn uring_one(ring: &mut IoUring, e: io_uring::squeue::Entry) -> Result<i32, Real> {
    // SAFETY: the buffers the entry names live until the request completes
    // (submit_and_wait returns after the CQE).
    unsafe { ring.submission().push(&e) }.map_err(|e| err("io_uring", e))?;
    ring.submit_and_wait(1)
        .map_err(|e| err("io_uring_enter", e))?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| err("io_uring", "no completion"))?;
    Ok(cqe.result())
}

/// cow.c `do_test_iouring`: the area registered as an io_uring fixed buffer
/// (FOLL_WRITE | FOLL_PIN | FOLL_LONGTERM); then either fork with the child
/// alive, or a R/O mapping of it (mprotect and clear_refs soft-dirty); the
/// parent writes, and IORING_OP_WRITE_FIXED must store what the mapping
/// shows. Besides, the other way: IORING_OP_READ_FIXED into the buffer must
/// show in the mapping. The file is O_DIRECT where the filesystem allows,
/// so the I/O reads and writes the pinned pages themselves.
fn iouring(env: &Env, a: &Area, use_fork: bool) -> Result<Measured, Real> {
    let mut ring = IoUring::new(1).map_err(|e| Real::Skip(format!("io_uring_setup: {e}")))?;
    let (file, direct) = temp_file(&env.dir, true)?;
    let fd = types::Fd(file.as_raw_fd());
    let tmp = Mem::anon(a.size)?;
    // SAFETY: `tmp` is mapped read-write, page-aligned (for O_DIRECT).
    let tmp = unsafe { std::slice::from_raw_parts_mut(tmp.base as *mut u8, a.size) };
    let iov = libc::iovec {
        iov_base: a.start as *mut c_void,
        iov_len: a.size,
    };
    // SAFETY: the area stays mapped until the ring is dropped, which
    // unregisters the buffer.
    match unsafe { ring.submitter().register_buffers(&[iov]) } {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
            return Err(Real::Skip(format!(
                "io_uring_register_buffers: {e} (RLIMIT_MEMLOCK below the area?)"
            )))
        }
        Err(e) => return Err(err("io_uring_register_buffers", e)),
    }
    let comm = Comm::new()?;
    let mut pid = None;
    if use_fork {
        let p = fork_child(|| {
            if !signal(&comm.child_ready.1) || !wait_for(&comm.parent_ready.0) {
                return 2;
            }
            SAME
        })?;
        pid = Some(p);
        if !wait_for(&comm.child_ready.0) {
            return Err(child_failed(p, "fork"));
        }
    } else {
        a.ro_by_clear_refs()?;
    }
    let got = iouring_check(&mut ring, fd, &file, a, tmp);
    if let Some(p) = pid {
        signal(&comm.parent_ready.1);
        child_status(reap(p)?, "the child")?;
    }
    let (real, notes) = got?;
    let how = if direct {
        "io_uring fixed buffer, O_DIRECT file"
    } else {
        "io_uring fixed buffer, buffered file (the filesystem refuses O_DIRECT)"
    };
    Ok((real, join(how, &notes)))
}

fn iouring_check(
    ring: &mut IoUring,
    fd: types::Fd,
    file: &File,
    a: &Area,
    tmp: &mut [u8],
) -> Result<Measured, Real> {
    let size = a.size as u32;
    a.fill(0xff);
    let res = uring_one(
        ring,
        opcode::WriteFixed::new(fd, a.start as *const u8, size, 0).build(),
    )?;
    // A full --dir is a missing prerequisite, like a missing huge page.
    if res == -libc::ENOSPC {
        return Err(Real::Skip(format!(
            "write_fixed of {} MiB: no space left on the file's filesystem (pick another --dir)",
            a.size >> 20
        )));
    }
    if res != size as i32 {
        return Err(err("write_fixed", format!("res {res}")));
    }
    let n = pread(file.as_fd(), tmp, 0).map_err(|e| err("pread", e))?;
    if n != a.size || tmp != a.bytes() {
        return Ok((
            Real::Fail("coherent pin".into()),
            "longterm R/W pin is not reliable: write_fixed stored other data than the mapping shows".into(),
        ));
    }
    // The device's direction: data read into the pinned buffer.
    tmp.fill(0x5a);
    let n = pwrite(file.as_fd(), tmp, 0).map_err(|e| err("pwrite", e))?;
    if n != a.size {
        return Err(err("pwrite", format!("{n} of {} bytes", a.size)));
    }
    let res = uring_one(
        ring,
        opcode::ReadFixed::new(fd, a.start as *mut u8, size, 0).build(),
    )?;
    if res != size as i32 {
        return Err(err("read_fixed", format!("res {res}")));
    }
    if a.bytes().iter().any(|&b| b != 0x5a) {
        return Ok((
            Real::Fail("coherent pin".into()),
            "read_fixed into the pinned buffer did not reach the mapping".into(),
        ));
    }
    Ok((
        Real::Pass,
        "write_fixed and read_fixed both see the mapping".into(),
    ))
}

/// cow.c `do_test_anon_thp_collapse(.., ANON_THP_COLLAPSE_UNSHARED)`: a
/// PTE-mapped THP collapsed by MADV_COLLAPSE, then fork, parent write,
/// child compare (as `cow_in_parent`).
fn collapse_before_fork(env: &Env) -> Run {
    let (a, _) = anon_area(env, AnonBacking::PteThp)?;
    // SAFETY: inside the area's mapping. nix has no MADV_COLLAPSE.
    let r = unsafe { libc::madvise(a.start as *mut c_void, a.size, crate::kernel::MADV_COLLAPSE) };
    if r != 0 {
        return Err(Real::Skip(format!(
            "MADV_COLLAPSE failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    let kb = anon_huge_kb(a.start)?;
    let (real, notes) = cow_in_parent(&a)?;
    Ok((
        real,
        join(&format!("collapsed: AnonHugePages {kb} kB"), &notes),
    ))
}

/// A one-page file in `--dir`, unlinked, holding `byte`.
fn page_file(env: &Env, byte: u8) -> Result<File, Real> {
    let (file, _) = temp_file(&env.dir, false)?;
    file.write_all_at(&vec![byte; env.page], 0)
        .map_err(|e| err("write", e))?;
    Ok(file)
}

/// The page of `file`, mapped shared or private.
fn file_area(env: &Env, file: &File, prot: ProtFlags, shared: bool) -> Result<Area, Real> {
    let mem = Mem::file(file, env.page, prot, shared)?;
    Ok(Area {
        start: mem.base,
        size: env.page,
        mem,
    })
}

/// cow.c `run_with_tmpfile` + `test_cow`: a private and a shared R/O
/// mapping of one file page; a write to the private one must not show in
/// the shared one.
fn page_cache_cow(env: &Env) -> Run {
    let file = page_file(env, 0x2a)?;
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let a = file_area(env, &file, rw, false)?;
    let s = file_area(env, &file, ProtFlags::PROT_READ, true)?;
    // Fault both in before the write, as cow.c does.
    let old = s.bytes().to_vec();
    let _ = a.bytes()[0];
    a.fill(0xff);
    let fs = probe::fs_name(env.fs_magic);
    Ok(if s.bytes() == old.as_slice() {
        (Real::Pass, format!("file on {fs}"))
    } else {
        (
            Real::Fail("private write shows in the shared mapping".into()),
            format!("file on {fs}"),
        )
    })
}

/// The name of `--dir`'s filesystem if it is of the model's flavour
/// `backing`; a skip otherwise (gup_longterm.c's rows are per filesystem).
fn flavour(env: &Env, backing: &str) -> Result<String, Real> {
    let fs = probe::fs_name(env.fs_magic);
    if probe::fs_backing(env.fs_magic) != Some(backing) {
        return Err(Real::Skip(format!(
            "{} is {fs}, not {backing} (pick another with --dir)",
            env.dir.display()
        )));
    }
    Ok(fs)
}

/// gup_longterm.c `do_test(.., TEST_TYPE_IOURING, shared)`: a file page
/// mapped shared or private and faulted in writable, registered as an
/// io_uring fixed buffer, pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM);
/// judged by gup_longterm.c's rule for the model's flavour. The refusal is
/// the register syscall's own return value.
fn longterm_iouring(env: &Env, shared: bool, backing: &str) -> Run {
    let fs = flavour(env, backing)?;
    // Blocks allocated (gup_longterm.c's fallocate), so the pin needs no
    // allocation.
    let file = page_file(env, 0)?;
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let a = file_area(env, &file, rw, shared)?;
    // Faulted in writable, so GUP-fast can pin it directly.
    a.fill(0);
    let ring = IoUring::new(1).map_err(|e| Real::Skip(format!("io_uring_setup: {e}")))?;
    let iov = libc::iovec {
        iov_base: a.start as *mut c_void,
        iov_len: a.size,
    };
    // SAFETY: the page stays mapped until the buffer is unregistered.
    let pinned = match unsafe { ring.submitter().register_buffers(&[iov]) } {
        Ok(()) => {
            let _ = ring.submitter().unregister_buffers();
            Ok(())
        }
        Err(e) => Err(-e.raw_os_error().unwrap_or(0)),
    };
    // Before 6.4, io_pin_pages pinned the pages and then refused any file
    // that is not shmem or hugetlbfs itself, -EOPNOTSUPP ("don't support
    // file backed memory"; gone with "io_uring: rsrc: delegate VMA
    // file-backed check to GUP"): io_uring's rule, which says nothing of
    // GUP's FOLL_LONGTERM one. gup_longterm.c counts it as a refusal.
    if pinned == Err(-libc::EOPNOTSUPP) {
        return Err(Real::Skip(format!(
            "io_uring refused the {fs} file by its own rule before 6.4 (EOPNOTSUPP after pinning), \
             not by GUP's: gup_test's PIN_LONGTERM_TEST would tell"
        )));
    }
    let refused = [libc::EFAULT, libc::ENOSPC];
    if let Err(e) = pinned {
        if !refused.contains(&-e) {
            return Err(Real::Skip(format!(
                "io_uring_register_buffers: {} (no support or MEMLOCK, as gup_longterm.c skips)",
                std::io::Error::from_raw_os_error(-e)
            )));
        }
    }
    let mut notes = format!(
        "io_uring IORING_REGISTER_BUFFERS; file on {fs}; {}",
        match pinned {
            Ok(()) => "pinned".to_string(),
            Err(e) => format!("refused with {e}"),
        }
    );
    if shared {
        notes += "; upstream gup_longterm.c reads errno after liburing's \
                  io_uring_register_buffers(), which returns -errno and leaves errno alone, \
                  so it reports SKIP where the kernel refused with -EFAULT";
    }
    Ok((
        longterm_verdict(shared, true, pinned, IOURING_REFUSALS),
        notes,
    ))
}
