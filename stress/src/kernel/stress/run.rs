//! The workers of `kernel stress` on the running kernel. Each worker owns
//! two regions of anonymous memory (16 base pages, and one PMD-sized area
//! advised MADV_HUGEPAGE), a MAP_SHARED mapping of a file of its own (16
//! pages), one 2 MiB MAP_HUGETLB page when the pool has them free, a shadow
//! of what each byte must hold, an io_uring with the regions the kernel
//! takes registered as fixed buffers, and an O_DIRECT data file.
//! Workers run their own seeded op sequences at once, so one worker's fork,
//! clear_refs or KSM pass (which act on the whole address space) races the
//! others' pins; every op is checked against the shadow exactly.
//!
//! A forked child runs only syscalls, comparisons and stores on memory the
//! parent prepared before fork: another thread may hold the allocator's lock
//! at that moment.

use super::tag::{self, first_mismatch, Mismatch, Who};
use super::vmstat::{self, Balance, Pins};
use super::{
    is_known_open, leak_invariant, Config, Found, Inject, Kind, KnownOpen, PinReport, Report,
    FORMAT, KIND, KINDS,
};
use crate::ui;
use gupcheck_model::harness::artifact::write_file_atomic;
use io_uring::{opcode, types, IoUring};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Ops of one range move at most this much (the default pipe's capacity,
/// so a vmsplice never blocks).
const MAX_OP_PAGES: usize = 16;
const BASE_PAGES: usize = 16;
/// Lines of op log kept per worker.
const LOG_LINES: usize = 4096;
/// How long a forked child waits for its parent before giving up.
const CHILD_WAIT_MS: i32 = 30_000;

/// A finding inside an op: the invariant and what was seen.
struct Broke {
    invariant: String,
    detail: String,
}

fn broke(invariant: &str, detail: impl Into<String>) -> Broke {
    Broke {
        invariant: invariant.into(),
        detail: detail.into(),
    }
}

/// A syscall that should not fail did: reported, never ignored (exit 1).
fn sys(what: &str) -> Broke {
    broke(
        "error",
        format!("{what}: {}", std::io::Error::last_os_error()),
    )
}

fn mismatch(m: &Mismatch, through_pin: bool, context: &str) -> Broke {
    broke(
        m.invariant(through_pin),
        format!("{context}: {}", m.describe()),
    )
}

type Step = Result<(), Broke>;

/// What a worker tells the watchdog and the report.
#[derive(Default)]
struct Beat {
    /// 0: between ops; else the op's kind index + 1.
    kind: AtomicU8,
    seq: AtomicU64,
    epoch: AtomicU64,
    done: AtomicU64,
}

struct Shared {
    beats: Vec<Beat>,
    /// Ops finished, per kind.
    counts: Vec<AtomicU64>,
    logs: Vec<Mutex<VecDeque<String>>>,
    /// Children alive: killed if the run ends by the watchdog.
    children: Mutex<Vec<i32>>,
    found: Mutex<Option<Found>>,
    stop: AtomicBool,
    epochs: AtomicU64,
    collapsed: AtomicU64,
    collapse_refused: AtomicU64,
    /// move_pages: pages moved to another node, and pages it left where
    /// they were (pinned, busy).
    migrated: AtomicU64,
    migrate_refused: AtomicU64,
    /// The most pages of this process KSM had merged when a KSM op looked.
    ksm_merged: AtomicU64,
    pins: Mutex<PinReport>,
    notes: Mutex<Vec<String>>,
    known_open: Mutex<Vec<KnownOpen>>,
}

impl Shared {
    fn log(&self, w: usize, line: String) {
        let mut l = self.logs[w].lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == LOG_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// Adds an op's arguments to its line.
    fn args(&self, w: usize, text: &str) {
        let mut l = self.logs[w].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = l.back_mut() {
            last.push_str(text);
        }
    }

    fn end_log(&self, w: usize, result: &str) {
        let mut l = self.logs[w].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = l.back_mut() {
            last.push_str(": ");
            last.push_str(result);
        }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        for (w, l) in self.logs.iter().enumerate() {
            // The watchdog may read while a worker is stuck holding nothing;
            // a poisoned lock still has the lines.
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            s += &format!("== worker {w}: the last {} ops ==\n", l.len());
            for line in l.iter() {
                s += line;
                s.push('\n');
            }
        }
        s
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

fn thp_size() -> Option<usize> {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An anonymous private mapping of `len` bytes aligned to `align`, at
/// `hint` if that address is free.
fn map_region(len: usize, align: usize, hint: Option<usize>) -> Result<usize, Broke> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    if let Some(h) = hint {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces another mapping.
        let p = unsafe {
            libc::mmap(
                h as *mut c_void,
                len,
                prot,
                anon | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            if p as usize == h {
                return Ok(h);
            }
            // SAFETY: the mapping just made, somewhere else.
            unsafe { libc::munmap(p, len) };
        }
    }
    // SAFETY: a fresh mapping anywhere.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len + align, prot, anon, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(sys("mmap"));
    }
    let p = p as usize;
    let start = p.div_ceil(align) * align;
    // SAFETY: the parts of the fresh mapping outside the aligned range.
    unsafe {
        if start > p {
            libc::munmap(p as *mut c_void, start - p);
        }
        let end = p + len + align;
        if end > start + len {
            libc::munmap((start + len) as *mut c_void, end - start - len);
        }
    }
    Ok(start)
}

/// MAP_SHARED of the first `len` bytes of `file`, at `hint` if free: the
/// page cache's pages themselves, so a new mapping shows what the old one
/// held.
fn map_shared(file: &File, len: usize, hint: Option<usize>) -> Result<usize, Broke> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let fd = file.as_raw_fd();
    if let Some(h) = hint {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces another mapping.
        let p = unsafe {
            libc::mmap(
                h as *mut c_void,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            if p as usize == h {
                return Ok(h);
            }
            // SAFETY: the mapping just made, somewhere else.
            unsafe { libc::munmap(p, len) };
        }
    }
    // SAFETY: a fresh mapping of this worker's file anywhere.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(sys("mmap MAP_SHARED"));
    }
    Ok(p as usize)
}

/// Huge pages of 2 MiB free for an allocation outside a reservation
/// (free_hugepages - resv_hugepages), if the pool exists.
fn hugetlb_avail() -> Option<i64> {
    let read = |f: &str| -> Option<i64> {
        std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(read("free_hugepages")? - read("resv_hugepages")?)
}

const HUGE_2M: usize = 2 << 20;

/// MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB of one 2 MiB page. mmap
/// reserves the page (ENOMEM when the pool has none), so the first fault
/// never fails; the kernel aligns the address to 2 MiB.
fn map_hugetlb() -> Result<usize, std::io::Error> {
    // SAFETY: a fresh mapping anywhere.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            HUGE_2M,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p as usize)
}

fn madvise(at: usize, len: usize, advice: i32) -> Result<(), std::io::Error> {
    // SAFETY: a range of this worker's own regions.
    match unsafe { libc::madvise(at as *mut c_void, len, advice) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// What backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mem {
    /// MAP_PRIVATE | MAP_ANONYMOUS (base pages, or THP when `thp`).
    Anon,
    /// MAP_SHARED of the worker's shared file: the page cache's pages.
    SharedFile,
    /// MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, one 2 MiB page.
    Hugetlb,
}

struct Region {
    base: usize,
    /// Where the region was when registered: fixed I/O names the buffer by
    /// that address, whatever mremap did since.
    fixed: usize,
    len: usize,
    thp: bool,
    mem: Mem,
    /// The kernel takes it as a fixed buffer (a MAP_SHARED mapping of a
    /// regular file on ext4, xfs, btrfs is refused with EFAULT since 6.4:
    /// no FOLL_LONGTERM write pin of a file that writeback may clean).
    fixable: bool,
    /// Its index among the fixed buffers of the current registration.
    buf: Option<u16>,
    /// What each byte must hold.
    shadow: Vec<u8>,
}

impl Region {
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: mapped read-write by this worker, which alone writes it;
        // syscalls writing it have returned.
        unsafe { std::slice::from_raw_parts((self.base + off) as *const u8, len) }
    }

    /// The shadow takes what the mapping now holds (after this worker wrote
    /// it).
    fn sync_shadow(&mut self, off: usize, len: usize) {
        // SAFETY: as `bytes`; the shadow is another allocation.
        let now = unsafe { std::slice::from_raw_parts((self.base + off) as *const u8, len) };
        self.shadow[off..off + len].copy_from_slice(now);
    }

    fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        // SAFETY: as `bytes`.
        unsafe { std::slice::from_raw_parts_mut((self.base + off) as *mut u8, len) }
    }
}

/// A page-aligned scratch buffer (O_DIRECT wants aligned memory).
struct Scratch {
    at: usize,
    len: usize,
}

impl Scratch {
    fn new(len: usize, page: usize) -> Result<Scratch, Broke> {
        Ok(Scratch {
            at: map_region(len, page, None)?,
            len,
        })
    }

    fn buf(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: this worker's own mapping, `len` <= its length.
        unsafe { std::slice::from_raw_parts_mut(self.at as *mut u8, len.min(self.len)) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made.
        unsafe { libc::munmap(self.at as *mut c_void, self.len) };
    }
}

/// A vmsplice'd range waiting to be read.
struct Pending {
    read: OwnedFd,
    _write: OwnedFd,
    region: usize,
    first_page: usize,
    at_splice: Vec<u8>,
    /// Pages of the splice the worker truncated or punched since.
    zeroed: Vec<bool>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Broke> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills both descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("pipe2"));
    }
    // SAFETY: fresh descriptors this value owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn read_full(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the rest of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    true
}

struct Worker {
    id: usize,
    page: usize,
    regions: Vec<Region>,
    /// None when `--paths` leaves io_uring out (it may be disabled).
    ring: Option<IoUring>,
    /// The ring's fixed buffers are the regions as mapped now; false after
    /// a region's pages were replaced (the old pages stay pinned by the
    /// registration, so it no longer says anything about the mapping).
    registered: bool,
    /// The ring holds a registration (fresh or not): its pages stay pinned
    /// until it is unregistered.
    buffers: bool,
    file: File,
    /// The file behind the shared-file region (buffered: pread reads the
    /// page cache), and the same file opened O_DIRECT when the filesystem
    /// takes it (a read from the disk after the page cache is written back).
    sfile: File,
    sdirect: Option<File>,
    scratch: Scratch,
    /// Before fork: the window's content, and a buffer for the child.
    snap: Vec<u8>,
    cbuf: Vec<u8>,
    pending: Option<Pending>,
    rng: SmallRng,
    seq: u64,
    epoch: u64,
    kinds: Vec<Kind>,
    /// NUMA nodes with memory, for move_pages.
    nodes: Vec<i32>,
    ksm: bool,
    inject: Option<Inject>,
    /// Forks at which the window was pinned and its pagemap checked.
    exclusive_checked: u64,
    /// Registrations refused for RLIMIT_MEMLOCK.
    uring_refused: u64,
    /// Why the shared-file region is no fixed buffer.
    unfixable: Option<String>,
    /// `hugetlb get leak` seen, and where first.
    hugetlb_leaks: u64,
    hugetlb_first: Option<String>,
    /// Forks and refaults of the hugetlb region the pool had no page for.
    hugetlb_refused: u64,
    /// `no lost write` and `durable after sync` checks made.
    lost_write_checks: u64,
    durable_checks: u64,
}

impl Worker {
    fn new(
        id: usize,
        cfg: &Config,
        thp: Option<usize>,
        ksm: bool,
        direct: bool,
        hugetlb: bool,
    ) -> Result<Worker, String> {
        let page = page_size();
        let e = |b: Broke| format!("worker {id}: {}", b.detail);
        let mut regions = Vec::new();
        let huge = thp.unwrap_or(512 * page);
        for (len, align, is_thp) in [
            (BASE_PAGES * page, page, false),
            (huge, huge, thp.is_some()),
        ] {
            let base = map_region(len, align, None).map_err(e)?;
            if is_thp {
                let _ = madvise(base, len, libc::MADV_HUGEPAGE);
            }
            regions.push(Region {
                base,
                fixed: base,
                len,
                thp: is_thp,
                mem: Mem::Anon,
                fixable: true,
                buf: None,
                shadow: vec![0; len],
            });
        }
        // The shared file: its own, not the data file, so that O_DIRECT
        // between the two moves data from one file's pages to the other's.
        let spath = cfg.dir.join(format!(
            ".gupcheck-kernel-stress-{}-{id}-shared",
            std::process::id()
        ));
        let sfile = new_file(&spath, 0)?;
        let sdirect = match direct {
            true => Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&spath)
                    .map_err(|e| format!("cannot open {} O_DIRECT: {e}", spath.display()))?,
            ),
            false => None,
        };
        let _ = std::fs::remove_file(&spath);
        let slen = BASE_PAGES * page;
        sfile
            .set_len(slen as u64)
            .map_err(|e| format!("ftruncate: {e}"))?;
        let base = map_shared(&sfile, slen, None).map_err(e)?;
        regions.push(Region {
            base,
            fixed: base,
            len: slen,
            thp: false,
            mem: Mem::SharedFile,
            fixable: true,
            buf: None,
            shadow: vec![0; slen],
        });
        if hugetlb {
            let base = map_hugetlb().map_err(|e| {
                format!("worker {id}: mmap MAP_HUGETLB: {e} (the pool emptied meanwhile?)")
            })?;
            regions.push(Region {
                base,
                fixed: base,
                len: HUGE_2M,
                thp: false,
                mem: Mem::Hugetlb,
                fixable: true,
                buf: None,
                shadow: vec![0; HUGE_2M],
            });
        }
        for (idx, r) in regions.iter_mut().enumerate() {
            let len = r.len;
            tag::fill(
                r.bytes_mut(0, len),
                page,
                Who::Parent,
                id as u8,
                idx as u8,
                0,
                0,
            );
            r.sync_shadow(0, len);
        }
        let ring = match cfg.paths.iter().any(|p| p == "io_uring") {
            true => Some(IoUring::new(8).map_err(|e| {
                format!("io_uring_setup: {e} (io_uring disabled? --paths o_direct,vmsplice,process_vm leaves it out)")
            })?),
            false => None,
        };
        let path = cfg.dir.join(format!(
            ".gupcheck-kernel-stress-{}-{id}",
            std::process::id()
        ));
        let file = new_file(&path, if direct { libc::O_DIRECT } else { 0 })?;
        let _ = std::fs::remove_file(&path);
        file.set_len((huge + BASE_PAGES * page) as u64)
            .map_err(|e| format!("ftruncate: {e}"))?;
        let seed = cfg.seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut w = Worker {
            id,
            page,
            regions,
            ring,
            registered: false,
            buffers: false,
            file,
            sfile,
            sdirect,
            scratch: Scratch::new(MAX_OP_PAGES.max(BASE_PAGES) * page, page).map_err(e)?,
            snap: vec![0; MAX_OP_PAGES * page],
            cbuf: vec![0; MAX_OP_PAGES * page],
            pending: None,
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
            epoch: 0,
            kinds: cfg.kinds(),
            nodes: numa_nodes(),
            ksm,
            inject: cfg.inject,
            exclusive_checked: 0,
            uring_refused: 0,
            unfixable: None,
            hugetlb_leaks: 0,
            hugetlb_first: None,
            hugetlb_refused: 0,
            lost_write_checks: 0,
            durable_checks: 0,
        };
        // A registration refused (RLIMIT_MEMLOCK without root, io_uring
        // disabled) is bad input before the run, not a finding inside it.
        if cfg.paths.iter().any(|p| p == "io_uring") {
            w.register()
                .and_then(|()| w.quiesce())
                .map_err(|b| b.detail)?;
        }
        Ok(w)
    }

    /// A range of a random region that `fits`: (region, offset, length),
    /// page-aligned, at least `min` pages; None if no region fits.
    fn range(
        &mut self,
        min: usize,
        fits: impl Fn(&Region) -> bool,
    ) -> Option<(usize, usize, usize)> {
        let fit: Vec<usize> = (0..self.regions.len())
            .filter(|&r| fits(&self.regions[r]))
            .collect();
        if fit.is_empty() {
            return None;
        }
        let r = fit[self.rng.gen_range(0..fit.len())];
        let pages = self.regions[r].len / self.page;
        let n = self.rng.gen_range(min..=MAX_OP_PAGES.min(pages));
        let first = self.rng.gen_range(0..=pages - n);
        Some((r, first * self.page, n * self.page))
    }

    /// Writes `who`'s tag over a range through the mapping, and the shadow.
    fn write_tag(&mut self, r: usize, off: usize, len: usize, who: Who) {
        let (page, id, seq) = (self.page, self.id as u8, self.seq);
        let reg = &mut self.regions[r];
        tag::fill(
            reg.bytes_mut(off, len),
            page,
            who,
            id,
            r as u8,
            off / page,
            seq,
        );
        reg.sync_shadow(off, len);
    }

    /// The mapping must show the shadow.
    fn verify(&self, r: usize, off: usize, len: usize, through_pin: bool, what: &str) -> Step {
        let reg = &self.regions[r];
        match first_mismatch(reg.bytes(off, len), &reg.shadow[off..off + len]) {
            None => Ok(()),
            Some(m) => Err(mismatch(
                &m,
                through_pin,
                &format!(
                    "{what}: the mapping of region {r} at offset {:#x}",
                    off + m.offset
                ),
            )),
        }
    }

    fn verify_all(&self, what: &str) -> Step {
        (0..self.regions.len())
            .try_for_each(|r| self.verify(r, 0, self.regions[r].len, false, what))
    }

    fn ring(&mut self) -> Result<&mut IoUring, Broke> {
        self.ring
            .as_mut()
            .ok_or_else(|| broke("error", "io_uring is not among --paths"))
    }

    /// A region's pages were replaced: the registration pins the old ones.
    fn replaced(&mut self) {
        // `--inject stale-registration` keeps using it, to see the checks
        // catch an incoherent pin.
        if self.inject != Some(Inject::StaleRegistration) {
            self.registered = false;
        }
    }

    fn register(&mut self) -> Step {
        if self.registered {
            return Ok(());
        }
        if self.buffers {
            self.ring()?
                .submitter()
                .unregister_buffers()
                .map_err(|e| broke("error", format!("io_uring_unregister_buffers: {e}")))?;
            self.buffers = false;
        }
        // Buffer i is the i-th region the kernel takes, whatever its index.
        let mut iovs = Vec::new();
        for r in self.regions.iter_mut() {
            r.fixed = r.base;
            r.buf = None;
            if r.fixable {
                r.buf = Some(iovs.len() as u16);
                iovs.push(libc::iovec {
                    iov_base: r.base as *mut c_void,
                    iov_len: r.len,
                });
            }
        }
        // SAFETY: the regions stay mapped while registered; a region
        // replaced is re-registered before the next fixed I/O.
        match unsafe { self.ring()?.submitter().register_buffers(&iovs) } {
            Ok(()) => {}
            // Without CAP_IPC_LOCK the pages count against RLIMIT_MEMLOCK,
            // a whole THP for any of its pages: a refusal the kernel may
            // make, counted, not a finding.
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && self.seq > 0 => {
                self.uring_refused += 1;
                return Err(broke("refused", e.to_string()));
            }
            // A MAP_SHARED file mapping is refused as a long-term write pin
            // on filesystems that write back (EFAULT from check_vma_flags
            // since 6.4; EOPNOTSUPP from io_uring itself before): the other
            // regions are registered without it, for the whole run.
            Err(e)
                if e.raw_os_error() != Some(libc::ENOMEM)
                    && self
                        .regions
                        .iter()
                        .any(|r| r.fixable && r.mem == Mem::SharedFile) =>
            {
                for r in self.regions.iter_mut() {
                    if r.mem == Mem::SharedFile {
                        r.fixable = false;
                        r.buf = None;
                    }
                }
                let why = match e.raw_os_error() {
                    Some(libc::EOPNOTSUPP) => "io_uring before 6.4 takes no file-backed buffer",
                    Some(libc::EFAULT) => "no FOLL_LONGTERM write pin of a file that writeback cleans",
                    _ => "refused",
                };
                self.unfixable = Some(format!("{e}: {why}"));
                return self.register();
            }
            Err(e) => {
                return Err(broke(
                    "error",
                    format!("io_uring_register_buffers: {e} (RLIMIT_MEMLOCK below the regions? run as root)"),
                ))
            }
        }
        self.registered = true;
        self.buffers = true;
        Ok(())
    }

    /// Registers if needed; false if the kernel refused for memory.
    fn try_register(&mut self) -> Result<bool, Broke> {
        match self.register() {
            Ok(()) => Ok(true),
            Err(b) if b.invariant == "refused" => Ok(false),
            Err(b) => Err(b),
        }
    }

    fn uring(&mut self, e: io_uring::squeue::Entry, len: usize, what: &str) -> Step {
        // SAFETY: the buffer named lives until the completion is reaped here.
        unsafe { self.ring()?.submission().push(&e) }
            .map_err(|e| broke("error", format!("{what}: {e}")))?;
        self.ring()?
            .submit_and_wait(1)
            .map_err(|e| broke("error", format!("io_uring_enter: {e}")))?;
        let res = self
            .ring()?
            .completion()
            .next()
            .map(|c| c.result())
            .ok_or_else(|| broke("error", format!("{what}: no completion")))?;
        if res != len as i32 {
            return Err(broke("error", format!("{what}: res {res}, expected {len}")));
        }
        Ok(())
    }

    fn file_io(&mut self, write: bool, at: usize, len: usize, off: usize, what: &str) -> Step {
        let fd = self.file.as_raw_fd();
        // SAFETY: `at..at+len` is a region or the scratch, mapped.
        let n = unsafe {
            if write {
                libc::pwrite(fd, at as *const c_void, len, off as i64)
            } else {
                libc::pread(fd, at as *mut c_void, len, off as i64)
            }
        };
        if n != len as isize {
            return Err(match n {
                n if n < 0 => sys(what),
                n => broke("error", format!("{what}: {n} of {len} bytes")),
            });
        }
        Ok(())
    }

    /// The file's bytes at `off` (read with O_DIRECT into the scratch) must
    /// be the shadow's of the range.
    fn verify_file(&mut self, r: usize, off: usize, len: usize, what: &str) -> Step {
        let at = self.scratch.at;
        self.file_io(false, at, len, off, "pread")?;
        let got = self.scratch.buf(len);
        match first_mismatch(got, &self.regions[r].shadow[off..off + len]) {
            None => Ok(()),
            Some(m) => Err(mismatch(&m, true, &format!("{what}: the file"))),
        }
    }

    /// File data tagged for a range, written to the file at `off`; the
    /// shadow takes it.
    fn stage_file(&mut self, r: usize, off: usize, len: usize) -> Step {
        let (page, id, seq) = (self.page, self.id as u8, self.seq);
        tag::fill(
            self.scratch.buf(len),
            page,
            Who::File,
            id,
            r as u8,
            off / page,
            seq,
        );
        let at = self.scratch.at;
        self.file_io(true, at, len, off, "pwrite")?;
        let staged = self.scratch.buf(len).to_vec();
        self.regions[r].shadow[off..off + len].copy_from_slice(&staged);
        Ok(())
    }

    /// move_pages(2) of each present page of a range to another node
    /// (do_pages_move -> migrate_pages): a page GUP pinned must stay where
    /// it is, which the next fixed I/O through a registration checks; the
    /// content must survive either way.
    fn move_pages(&mut self, sh: &Shared, at: usize, len: usize) -> Step {
        if self.nodes.len() < 2 {
            return Ok(());
        }
        let pages: Vec<*mut c_void> = (0..len / self.page)
            .map(|i| (at + i * self.page) as *mut c_void)
            .collect();
        let n = pages.len();
        let mut status = vec![0i32; n];
        let call = |nodes: *const i32, status: &mut [i32]| {
            // SAFETY: `pages` names this worker's mapped range, `nodes` and
            // `status` have one entry per page.
            unsafe {
                libc::syscall(
                    libc::SYS_move_pages,
                    0,
                    n,
                    pages.as_ptr(),
                    nodes,
                    status.as_mut_ptr(),
                    MPOL_MF_MOVE,
                )
            }
        };
        // Where each page is now (nodes NULL): -ENOENT if not present.
        if call(std::ptr::null(), &mut status) < 0 {
            return Err(sys("move_pages (query)"));
        }
        let target: Vec<i32> = status
            .iter()
            .map(|&at| {
                let i = self.nodes.iter().position(|&x| x == at).unwrap_or(0);
                self.nodes[(i + 1) % self.nodes.len()]
            })
            .collect();
        let present = status.iter().filter(|&&s| s >= 0).count() as u64;
        let r = call(target.as_ptr(), &mut status);
        // A positive return counts pages not migrated; EBUSY/ENOMEM are the
        // kernel's refusals, not findings.
        if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EBUSY | libc::ENOMEM | libc::EAGAIN) => {
                    sh.migrate_refused.fetch_add(present, SeqCst);
                    return Ok(());
                }
                _ => return Err(broke("error", format!("move_pages: {e}"))),
            }
        }
        let moved = status.iter().zip(&target).filter(|(s, t)| s == t).count() as u64;
        sh.migrated.fetch_add(moved, SeqCst);
        sh.migrate_refused
            .fetch_add(present.saturating_sub(moved), SeqCst);
        Ok(())
    }

    fn op(&mut self, k: Kind, sh: &Shared) -> Step {
        if k == Kind::Fork {
            return self.fork(sh);
        }
        let fits = |g: &Region| match k {
            Kind::UringWrite | Kind::UringRead => g.fixable,
            // KSM merges anonymous pages only; MADV_COLLAPSE works on the
            // THP region.
            Kind::Collapse | Kind::Ksm => g.mem == Mem::Anon,
            // hugetlb pages are never paged out.
            Kind::Pageout => g.mem != Mem::Hugetlb,
            Kind::Truncate | Kind::PunchHole | Kind::Writeback => g.mem == Mem::SharedFile,
            _ => true,
        };
        let Some((r, mut off, mut len)) = self.range(1, fits) else {
            sh.args(self.id, " no region for it");
            return Ok(());
        };
        let (mem, rlen) = (self.regions[r].mem, self.regions[r].len);
        // madvise and mprotect act on whole huge pages of a hugetlb VMA
        // (EINVAL for a part of one).
        if mem == Mem::Hugetlb && matches!(k, Kind::Dontneed | Kind::Mprotect) {
            (off, len) = (0, rlen);
        }
        sh.args(
            self.id,
            &format!(" region {r} offset {off:#x} length {len:#x}"),
        );
        let base = self.regions[r].base;
        let shared = mem == Mem::SharedFile;
        match k {
            Kind::UringWrite => {
                if !self.try_register()? {
                    return Ok(());
                }
                self.write_tag(r, off, len, Who::Parent);
                let e = opcode::WriteFixed::new(
                    types::Fd(self.file.as_raw_fd()),
                    (self.regions[r].fixed + off) as *const u8,
                    len as u32,
                    self.buf(r)?,
                )
                .offset(off as u64)
                .build();
                self.uring(e, len, "write_fixed")?;
                self.verify_file(r, off, len, "write_fixed from the registered buffer")
            }
            Kind::UringRead => {
                if !self.try_register()? {
                    return Ok(());
                }
                self.stage_file(r, off, len)?;
                let e = opcode::ReadFixed::new(
                    types::Fd(self.file.as_raw_fd()),
                    (self.regions[r].fixed + off) as *mut u8,
                    len as u32,
                    self.buf(r)?,
                )
                .offset(off as u64)
                .build();
                self.uring(e, len, "read_fixed")?;
                if shared {
                    self.no_lost_write(r, off, len, "read_fixed into the shared mapping")?;
                }
                self.verify(r, off, len, true, "read_fixed into the registered buffer")
            }
            Kind::DirectWrite => {
                self.write_tag(r, off, len, Who::Parent);
                self.file_io(true, base + off, len, off, "O_DIRECT pwrite")?;
                self.verify_file(r, off, len, "O_DIRECT write from the mapping")
            }
            Kind::DirectRead => {
                self.stage_file(r, off, len)?;
                // `--inject lost-write`: the data never reaches the shared
                // mapping, though the shadow has it.
                let to = match shared && self.inject == Some(Inject::LostWrite) {
                    true => self.scratch.at,
                    false => base + off,
                };
                self.file_io(false, to, len, off, "O_DIRECT pread")?;
                if shared {
                    self.no_lost_write(r, off, len, "O_DIRECT read into the shared mapping")?;
                }
                self.verify(r, off, len, true, "O_DIRECT read into the mapping")
            }
            Kind::Vmsplice | Kind::PipeRead => self.vmsplice(r, off, len),
            Kind::PvmWrite | Kind::PvmRead => self.pvm(k == Kind::PvmWrite, r, off, len),
            Kind::Fork => self.fork(sh),
            Kind::Remap => self.remap(r, sh),
            Kind::Mremap => {
                // The pages move with the mapping: a registration still pins
                // the pages the mapping shows, now at another address, so
                // the pin stays coherent (fixed I/O keeps naming the old
                // address, the registered one).
                let reg = &self.regions[r];
                let (old, len) = (reg.base, reg.len);
                // A hugetlb VMA moves only to a 2 MiB-aligned address.
                let align = if reg.thp || mem == Mem::Hugetlb {
                    len
                } else {
                    self.page
                };
                let to = map_region(len, align, None)?;
                // SAFETY: moves this worker's region over the fresh mapping
                // just made for it.
                let p = unsafe {
                    libc::mremap(
                        old as *mut c_void,
                        len,
                        len,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        to as *mut c_void,
                    )
                };
                if p == libc::MAP_FAILED {
                    let e = sys("mremap");
                    // SAFETY: the fresh mapping, unused.
                    unsafe { libc::munmap(to as *mut c_void, len) };
                    return Err(e);
                }
                self.regions[r].base = p as usize;
                self.verify_all("after mremap")
            }
            Kind::Dontneed => {
                madvise(base + off, len, libc::MADV_DONTNEED).map_err(|_| sys("MADV_DONTNEED"))?;
                match mem {
                    // The PTEs are zapped, the page cache keeps the pages:
                    // the next fault maps the same pages, data and pins.
                    Mem::SharedFile => {}
                    Mem::Anon => {
                        self.regions[r].shadow[off..off + len].fill(0);
                        self.replaced();
                    }
                    Mem::Hugetlb => {
                        self.regions[r].shadow.fill(0);
                        self.replaced();
                        self.refault_hugetlb(r)?;
                    }
                }
                self.verify_all("after MADV_DONTNEED")
            }
            Kind::Collapse => {
                let r = self.regions.iter().position(|g| g.thp).unwrap_or(r);
                let g = &self.regions[r];
                match madvise(g.base, g.len, crate::kernel::MADV_COLLAPSE) {
                    Ok(()) => sh.collapsed.fetch_add(1, SeqCst),
                    Err(_) => sh.collapse_refused.fetch_add(1, SeqCst),
                };
                self.verify_all("after MADV_COLLAPSE")
            }
            Kind::Pageout => {
                // Refused or partial is the kernel's choice (no swap, pinned
                // pages); file pages are written back first: only the
                // content is checked.
                let _ = madvise(base + off, len, libc::MADV_PAGEOUT);
                self.verify_all("after MADV_PAGEOUT")
            }
            Kind::Mprotect => {
                let mp = |p| {
                    // SAFETY: this worker's region.
                    match unsafe { libc::mprotect((base + off) as *mut c_void, len, p) } {
                        0 => Ok(()),
                        _ => Err(sys("mprotect")),
                    }
                };
                mp(libc::PROT_READ)?;
                let seen = self.verify(r, off, len, false, "R/O by mprotect");
                mp(libc::PROT_READ | libc::PROT_WRITE)?;
                seen?;
                self.verify_all("after mprotect R/O and back")
            }
            Kind::Ksm => {
                if let Some(n) = std::fs::read_to_string("/proc/self/ksm_merging_pages")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    sh.ksm_merged.fetch_max(n, SeqCst);
                }
                let g = &self.regions[r];
                let _ = madvise(g.base, g.len, libc::MADV_MERGEABLE);
                let epoch = self.epoch;
                let reg = &mut self.regions[r];
                tag::fill_ksm(reg.bytes_mut(off, len), epoch);
                reg.sync_shadow(off, len);
                self.verify_all("after KSM marking")
            }
            Kind::Migrate => {
                self.move_pages(sh, base + off, len)?;
                self.verify_all("after move_pages")
            }
            Kind::ClearRefs => {
                std::fs::write("/proc/self/clear_refs", "4")
                    .map_err(|e| broke("error", format!("clear_refs: {e}")))?;
                self.verify_all("after clear_refs soft-dirty")
            }
            Kind::Truncate | Kind::PunchHole => {
                let fd = self.sfile.as_raw_fd();
                let end = if k == Kind::Truncate {
                    // Down to `off` and back: the pages past it are removed
                    // from the page cache (unmapped first), the blocks
                    // freed; the size restored, they read as zeros.
                    // SAFETY: this worker's own file.
                    if unsafe { libc::ftruncate(fd, off as i64) } != 0 {
                        return Err(sys("ftruncate down"));
                    }
                    // SAFETY: as above.
                    if unsafe { libc::ftruncate(fd, rlen as i64) } != 0 {
                        return Err(sys("ftruncate up"));
                    }
                    rlen
                } else {
                    // SAFETY: this worker's own file; page-aligned, so no
                    // partial page is zeroed in place.
                    let flags = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                    if unsafe { libc::fallocate(fd, flags, off as i64, len as i64) } != 0 {
                        return Err(sys("fallocate PUNCH_HOLE"));
                    }
                    off + len
                };
                self.regions[r].shadow[off..end].fill(0);
                self.zeroed(r, off, end);
                // A registration (shmem takes one) or other pin of those
                // pages now holds pages the file no longer has.
                self.replaced();
                self.verify_all(&format!("after {}", k.name()))?;
                self.check_sfile(r, 0, rlen, "content kept", "pread of the shared file")
            }
            Kind::Writeback => self.writeback(r, off, len, sh),
        }
    }

    /// The waiting pipe's pages in `off..end` of region `r` may read as
    /// zeros: a truncate or punch zeroes in place the part of a large
    /// folio it cannot split off (the pipe's reference prevents the split).
    fn zeroed(&mut self, r: usize, off: usize, end: usize) {
        let page = self.page;
        if let Some(p) = self.pending.as_mut().filter(|p| p.region == r) {
            for (i, z) in p.zeroed.iter_mut().enumerate() {
                let at = (p.first_page + i) * page;
                *z |= at >= off && at < end;
            }
        }
    }

    /// The fixed buffer of region `r` in the current registration.
    fn buf(&self, r: usize) -> Result<u16, Broke> {
        self.regions[r]
            .buf
            .ok_or_else(|| broke("error", format!("region {r} is no fixed buffer")))
    }

    /// The shared file's bytes (pread: the page cache) must be the shadow's.
    fn check_sfile(&mut self, r: usize, off: usize, len: usize, inv: &str, what: &str) -> Step {
        let at = self.scratch.at;
        // SAFETY: the scratch holds `len` bytes.
        let n = unsafe { libc::pread(self.sfile.as_raw_fd(), at as *mut c_void, len, off as i64) };
        if n != len as isize {
            return Err(sys("pread of the shared file"));
        }
        match first_mismatch(
            self.scratch.buf(len),
            &self.regions[r].shadow[off..off + len],
        ) {
            None => Ok(()),
            Some(m) => Err(broke(
                inv,
                format!("{what} at offset {off:#x}: {}", m.describe()),
            )),
        }
    }

    /// `no lost write`: what a pin wrote into the shared mapping is in the
    /// file once the pin is released (the pinned pages are the page cache's
    /// own; the release marks them dirty).
    fn no_lost_write(&mut self, r: usize, off: usize, len: usize, what: &str) -> Step {
        self.lost_write_checks += 1;
        self.check_sfile(
            r,
            off,
            len,
            "no lost write",
            &format!("{what}, then pread of the file"),
        )
    }

    /// A store into the shared mapping, then one of the three ways to
    /// write the file back; `durable after sync`: the file then holds the
    /// shadow, read through the O_DIRECT fd (the disk's blocks: the direct
    /// read writes back and waits for any dirty page first) or, where the
    /// filesystem refuses O_DIRECT, with pread.
    fn writeback(&mut self, r: usize, off: usize, len: usize, sh: &Shared) -> Step {
        self.write_tag(r, off, len, Who::Parent);
        let (fd, base, rlen) = (
            self.sfile.as_raw_fd(),
            self.regions[r].base,
            self.regions[r].len,
        );
        let how = self.rng.gen_range(0..3);
        sh.args(
            self.id,
            [", fsync", ", sync_file_range", ", msync MS_SYNC"][how],
        );
        // SAFETY: this worker's file and mapping.
        let rc = unsafe {
            match how {
                0 => libc::fsync(fd),
                1 => libc::sync_file_range(
                    fd,
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                ),
                _ => libc::msync(base as *mut c_void, rlen, libc::MS_SYNC),
            }
        };
        if rc != 0 {
            return Err(sys(["fsync", "sync_file_range", "msync"][how]));
        }
        if self.inject == Some(Inject::CorruptFile) {
            // SAFETY: this worker's own file, behind the shadow's back.
            let flags = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            unsafe { libc::fallocate(fd, flags, off as i64, len as i64) };
        }
        self.durable_checks += 1;
        let what = ["fsync", "sync_file_range", "msync(MS_SYNC)"][how];
        match &self.sdirect {
            Some(d) => {
                let at = self.scratch.at;
                // SAFETY: the scratch is page-aligned and holds `rlen` bytes.
                let n = unsafe { libc::pread(d.as_raw_fd(), at as *mut c_void, rlen, 0) };
                if n != rlen as isize {
                    return Err(sys("O_DIRECT pread of the shared file"));
                }
                if let Some(m) = first_mismatch(self.scratch.buf(rlen), &self.regions[r].shadow) {
                    return Err(broke(
                        "durable after sync",
                        format!(
                            "after {what}, an O_DIRECT read of the shared file: {}",
                            m.describe()
                        ),
                    ));
                }
            }
            None => self.check_sfile(
                r,
                0,
                rlen,
                "durable after sync",
                &format!("after {what}, pread of the shared file"),
            )?,
        }
        self.verify_all(&format!("after {what}"))
    }

    /// munmap and a fresh mapping. Anonymous memory comes back as zeros
    /// (the registration is stale); the shared file's mapping shows the
    /// page cache's same pages; a hugetlb region's new mapping is made
    /// first, so that a pool with no page for its reservation refuses
    /// (ENOMEM) before the old one is gone.
    fn remap(&mut self, r: usize, sh: &Shared) -> Step {
        let reg = &self.regions[r];
        let (base, len, thp, mem) = (reg.base, reg.len, reg.thp, reg.mem);
        let fresh = match mem {
            Mem::Hugetlb => match map_hugetlb() {
                Ok(at) => Some(at),
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                    self.hugetlb_refused += 1;
                    sh.args(self.id, ", refused: no free huge page to reserve");
                    return Ok(());
                }
                Err(_) => return Err(sys("mmap MAP_HUGETLB")),
            },
            _ => None,
        };
        // SAFETY: this worker's region; nothing it lends (a fixed buffer, a
        // pipe) needs the mapping, only the pages.
        if unsafe { libc::munmap(base as *mut c_void, len) } != 0 {
            return Err(sys("munmap"));
        }
        let at = match mem {
            Mem::Anon => {
                let align = if thp { len } else { self.page };
                let at = map_region(len, align, Some(base))?;
                if thp {
                    let _ = madvise(at, len, libc::MADV_HUGEPAGE);
                }
                if self.ksm {
                    let _ = madvise(at, len, libc::MADV_MERGEABLE);
                }
                at
            }
            Mem::SharedFile => map_shared(&self.sfile, len, Some(base))?,
            Mem::Hugetlb => fresh.unwrap_or(base),
        };
        let reg = &mut self.regions[r];
        reg.base = at;
        if mem != Mem::SharedFile {
            reg.shadow.fill(0);
            self.replaced();
        }
        self.verify(r, 0, len, false, "a fresh mapping after munmap")
    }

    /// After MADV_DONTNEED the hugetlb region has no page and, its
    /// reservation consumed at the first fault, no reservation: a store
    /// would SIGBUS if the pool is empty. MADV_POPULATE_WRITE faults the
    /// page in and returns an error instead; pages freed by children that
    /// exit are waited for a while.
    fn refault_hugetlb(&mut self, r: usize) -> Step {
        let (base, len) = (self.regions[r].base, self.regions[r].len);
        let t = Instant::now();
        loop {
            match madvise(base, len, libc::MADV_POPULATE_WRITE) {
                Ok(()) => return Ok(()),
                Err(_) if t.elapsed() < Duration::from_secs(5) => {
                    self.hugetlb_refused += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(broke(
                        "error",
                        format!(
                            "MADV_POPULATE_WRITE of the hugetlb region after MADV_DONTNEED: {e} for 5 s (no free huge page: {:?} available)",
                            hugetlb_avail()
                        ),
                    ))
                }
            }
        }
    }

    /// A vmsplice'd range in a pipe: spliced now, or, if one waits, read and
    /// checked.
    fn vmsplice(&mut self, r: usize, off: usize, len: usize) -> Step {
        if self.pending.is_some() {
            return self.read_pending();
        }
        self.write_tag(r, off, len, Who::Parent);
        let (read, write) = pipe()?;
        let iov = libc::iovec {
            iov_base: (self.regions[r].base + off) as *mut c_void,
            iov_len: len,
        };
        // SAFETY: the range is mapped; vmsplice only reads it.
        let n = unsafe { libc::vmsplice(write.as_raw_fd(), &iov, 1, 0) };
        if n <= 0 {
            return Err(sys("vmsplice"));
        }
        let n = n as usize;
        self.pending = Some(Pending {
            read,
            _write: write,
            region: r,
            first_page: off / self.page,
            at_splice: self.regions[r].shadow[off..off + n].to_vec(),
            zeroed: vec![false; n.div_ceil(self.page)],
        });
        Ok(())
    }

    fn read_pending(&mut self) -> Step {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let n = p.at_splice.len();
        let buf = self.scratch.buf(n);
        if !read_full(p.read.as_raw_fd(), buf) {
            return Err(sys("read from the vmsplice pipe"));
        }
        let (page, id) = (self.page, self.id as u8);
        let hugetlb = self.regions[p.region].mem == Mem::Hugetlb;
        match tag::check_pipe(
            buf,
            &p.at_splice,
            page,
            (id, p.region as u8, p.first_page),
            &p.zeroed,
        ) {
            None => Ok(()),
            // The pipe's reference is a FOLL_GET one: on hugetlb a child
            // that was left the only mapper of the page reused it.
            Some(m)
                if m.found.is_some_and(|t| t.who == Who::Child)
                    && is_known_open(leak_invariant(true, hugetlb)) =>
            {
                self.known_open(format!(
                    "the parent's vmsplice pipe of region {} page {} shows a forked child's write: {}",
                    p.region,
                    p.first_page,
                    m.describe()
                ));
                Ok(())
            }
            Some(m) => Err(mismatch(
                &m,
                false,
                &format!(
                    "the pipe of a vmsplice of region {} page {}",
                    p.region, p.first_page
                ),
            )),
        }
    }

    /// A `hugetlb get leak` seen: counted, not a violation.
    fn known_open(&mut self, what: String) {
        self.hugetlb_leaks += 1;
        self.hugetlb_first
            .get_or_insert(format!("worker {} op #{}: {what}", self.id, self.seq));
    }

    /// process_vm_writev into or process_vm_readv from this process's own
    /// range (pin_user_pages_remote on its own mm).
    fn pvm(&mut self, write: bool, r: usize, off: usize, len: usize) -> Step {
        let remote = libc::iovec {
            iov_base: (self.regions[r].base + off) as *mut c_void,
            iov_len: len,
        };
        let (page, id, seq) = (self.page, self.id as u8, self.seq);
        if write {
            tag::fill(
                self.scratch.buf(len),
                page,
                Who::Parent,
                id,
                r as u8,
                off / page,
                seq,
            );
        } else {
            self.write_tag(r, off, len, Who::Parent);
        }
        let local = libc::iovec {
            iov_base: self.scratch.at as *mut c_void,
            iov_len: len,
        };
        let shared = self.regions[r].mem == Mem::SharedFile;
        // SAFETY: both iovecs name mapped memory of this process.
        let n = unsafe {
            if write && shared && self.inject == Some(Inject::LostWrite) {
                // `--inject lost-write`: the write is never made.
                len as isize
            } else if write {
                libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0)
            } else {
                libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0)
            }
        };
        if n != len as isize {
            return Err(sys(if write {
                "process_vm_writev"
            } else {
                "process_vm_readv"
            }));
        }
        if write {
            let staged = self.scratch.buf(len).to_vec();
            self.regions[r].shadow[off..off + len].copy_from_slice(&staged);
            if shared {
                self.no_lost_write(r, off, len, "process_vm_writev into the shared mapping")?;
            }
            return self.verify(r, off, len, true, "process_vm_writev into the mapping");
        }
        let got = self.scratch.buf(len);
        match first_mismatch(got, &self.regions[r].shadow[off..off + len]) {
            None => Ok(()),
            Some(m) => Err(mismatch(&m, true, "process_vm_readv of the mapping")),
        }
    }

    /// fork with a child that checks and exits. Before fork the window's
    /// content is kept; the child vmsplices the window's first half into a
    /// pipe and unmaps it (cow.c A3), the parent writes the window (through
    /// its mapping, io_uring READ_FIXED or O_DIRECT: the pins' direction,
    /// cow.c A8) and sometimes zaps the rest of its region first (so the
    /// child's pages are mapped once: cow.c A5's shape), and reads the
    /// child's second half with process_vm_readv; the child then checks the
    /// pipe and its second half against the window as it was, writes its own
    /// tags everywhere it still maps, and exits. Neither side may see the
    /// other's post-fork writes. The shared-file region is never the window:
    /// a MAP_SHARED mapping is shared with the child, not copied. On the
    /// hugetlb region (munmap takes whole huge pages) the child either
    /// splices the whole window and unmaps the whole region (cow.c's
    /// hugetlb A3), or splices half and unmaps nothing.
    fn fork(&mut self, sh: &Shared) -> Step {
        let Some((r, off, len)) = self.range(2, |g| g.mem != Mem::SharedFile) else {
            return Ok(());
        };
        let hugetlb = self.regions[r].mem == Mem::Hugetlb;
        let whole = hugetlb && self.rng.gen_bool(0.5);
        sh.args(
            self.id,
            &format!(
                " region {r} window {off:#x} length {len:#x}{}",
                if whole {
                    ", the child unmaps the whole hugetlb region"
                } else {
                    ""
                }
            ),
        );
        // The parent's write after fork copies the hugetlb page (COW), and
        // the child's own writes copy it again: without a free page the
        // child's fault is SIGBUS. Refused before fork when the pool is low.
        if hugetlb && hugetlb_avail().unwrap_or(0) < 2 {
            self.hugetlb_refused += 1;
            sh.args(self.id, ", refused: fewer than 2 free huge pages");
            return Ok(());
        }
        let page = self.page;
        let half = if whole {
            len
        } else {
            len / self.page / 2 * self.page
        };
        let reg = &self.regions[r];
        let (base, rlen) = (reg.base, reg.len);
        self.snap[..len].copy_from_slice(&reg.shadow[off..off + len]);
        let (ready_r, ready_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let (vp_r, vp_w) = pipe()?;
        let plan = ChildPlan {
            a: (base + off, half),
            b: (base + off + half, len - half),
            unmap: match (hugetlb, whole) {
                (false, _) => (base + off, half),
                (true, true) => (base, rlen),
                (true, false) => (base, 0),
            },
            region: (base, rlen),
            snap: self.snap.as_ptr(),
            cbuf: self.cbuf.as_mut_ptr(),
            page,
            worker: self.id as u8,
            region_idx: r as u8,
            seq: self.seq,
            ready: ready_w.as_raw_fd(),
            go: go_r.as_raw_fd(),
            vp: (vp_r.as_raw_fd(), vp_w.as_raw_fd()),
            stuck: self.inject == Some(Inject::StuckChild),
        };
        let how = self.rng.gen_range(0..3);
        let zap = self.kinds.contains(&Kind::Dontneed) && !hugetlb && self.rng.gen_bool(0.3);
        let writes = ["a store", "io_uring read_fixed", "O_DIRECT read"][how as usize];
        sh.args(
            self.id,
            &format!(", the parent's write: {writes} if enabled, zap: {zap}"),
        );
        // SAFETY: the child runs `child`, which only makes syscalls and
        // touches memory prepared above, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // fork copies a maybe-pinned hugetlb page (of any worker) for
            // the child at once: with no free page fork fails.
            let any_hugetlb = self.regions.iter().any(|g| g.mem == Mem::Hugetlb);
            if any_hugetlb && matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOSPC)) {
                self.hugetlb_refused += 1;
                sh.args(self.id, &format!(", fork refused: {e}"));
                return Ok(());
            }
            return Err(sys("fork"));
        }
        if pid == 0 {
            // SAFETY: in the child, as above.
            unsafe { child(&plan) }
        }
        sh.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
        // The child's ends: closed here so that a child that died is seen
        // at once (EOF), not after the wait's timeout.
        drop((ready_w, go_r, vp_r, vp_w));
        let out = self.fork_parent(pid, &plan, (r, off, len), how, zap, ready_r, go_w);
        // SAFETY: reaps the child (killed first if the parent gave up on it).
        let status = unsafe {
            if out.is_err() {
                libc::kill(pid, libc::SIGKILL);
            }
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            st
        };
        sh.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid);
        // A hugetlb COW the pool had no page for: the child's own fault is
        // SIGBUS, or the parent's (the mapping's owner) took the page back
        // from the child (unmap_ref_private), whose reads then fault.
        let sigbus = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS;
        let refused = matches!(&out, Err(b) if b.invariant == "refused");
        if hugetlb && (sigbus || refused) {
            self.hugetlb_refused += 1;
            sh.args(self.id, ", the child had no huge page: refused");
            return self.verify_all("after fork, the child refused a huge page");
        }
        out?;
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            return Err(broke(
                "error",
                format!("the forked child died by signal {}", libc::WTERMSIG(status)),
            ));
        };
        match code {
            0 => {}
            1 => {
                let detail =
                    "the child's vmsplice pipe shows the parent's post-fork write (cow.c A3's leak)";
                let inv = leak_invariant(true, hugetlb);
                if is_known_open(inv) {
                    self.known_open(format!("fork of region {r}: {detail}"));
                } else {
                    return Err(broke(inv, detail));
                }
            }
            5 => {
                return Err(broke(
                    leak_invariant(false, hugetlb),
                    "the child's mapping shows the parent's post-fork write",
                ))
            }
            c => {
                return Err(broke(
                    "error",
                    format!("the forked child failed a step (status {c})"),
                ))
            }
        }
        self.verify_all("after fork, the child having written its copy")
    }

    fn fork_parent(
        &mut self,
        pid: i32,
        plan: &ChildPlan,
        (r, off, len): (usize, usize, usize),
        how: u32,
        zap: bool,
        ready: OwnedFd,
        go: OwnedFd,
    ) -> Step {
        if !wait_byte(ready.as_raw_fd(), CHILD_WAIT_MS) {
            return Err(broke("error", "the forked child did not get ready"));
        }
        if self.registered {
            self.pinned_exclusive(r, off, len)?;
            self.exclusive_checked += 1;
        }
        let base = self.regions[r].base;
        if zap {
            let rlen = self.regions[r].len;
            for (at, n) in [(0, off), (off + len, rlen - off - len)] {
                if n > 0 {
                    madvise(base + at, n, libc::MADV_DONTNEED).map_err(|_| sys("MADV_DONTNEED"))?;
                    self.regions[r].shadow[at..at + n].fill(0);
                }
            }
            self.replaced();
        }
        let what = match how {
            0 if self.kinds.contains(&Kind::UringRead) && self.try_register()? => {
                self.stage_file(r, off, len)?;
                let e = opcode::ReadFixed::new(
                    types::Fd(self.file.as_raw_fd()),
                    (self.regions[r].fixed + off) as *mut u8,
                    len as u32,
                    self.buf(r)?,
                )
                .offset(off as u64)
                .build();
                self.uring(e, len, "read_fixed after fork")?;
                "io_uring read_fixed"
            }
            1 if self.kinds.contains(&Kind::DirectRead) => {
                self.stage_file(r, off, len)?;
                self.file_io(false, base + off, len, off, "O_DIRECT pread after fork")?;
                "O_DIRECT read"
            }
            _ => {
                self.write_tag(r, off, len, Who::Parent);
                "a store"
            }
        };
        self.verify(
            r,
            off,
            len,
            true,
            &format!("the parent's {what} after fork"),
        )?;
        // The child's second half, seen through GUP of the child's mm.
        let (b_at, b_len) = plan.b;
        let half = b_at - (base + off);
        let local = libc::iovec {
            iov_base: self.scratch.at as *mut c_void,
            iov_len: b_len,
        };
        let remote = libc::iovec {
            iov_base: b_at as *mut c_void,
            iov_len: b_len,
        };
        // SAFETY: the scratch is mapped; the remote range is the child's.
        let n = match b_len {
            0 => 0,
            _ => unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) },
        };
        if n != b_len as isize {
            // The parent's COW of a hugetlb page the pool had no copy for
            // unmapped it from the child (the owner's reservation wins).
            if self.regions[r].mem == Mem::Hugetlb {
                return Err(broke("refused", "process_vm_readv of the child: EFAULT"));
            }
            return Err(sys("process_vm_readv of the child"));
        }
        let seen = self.scratch.buf(b_len);
        if let Some(m) = first_mismatch(seen, &self.snap[half..half + b_len]) {
            return Err(broke(
                "no leak after fork",
                format!(
                    "process_vm_readv of the child after the parent's {what}: {}",
                    m.describe()
                ),
            ));
        }
        // SAFETY: one byte to the child.
        if unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr().cast(), 1) } != 1 {
            return Err(sys("write to the child"));
        }
        Ok(())
    }

    /// Every page of a range pinned by the fresh registration must still
    /// be mapped by this process alone after fork (pagemap bit 56): fork
    /// copies a maybe-pinned anonymous page for the child instead of
    /// sharing it, which is what keeps the pin coherent.
    fn pinned_exclusive(&self, r: usize, off: usize, len: usize) -> Step {
        let f = File::open("/proc/self/pagemap")
            .map_err(|e| broke("error", format!("/proc/self/pagemap: {e}")))?;
        let base = self.regions[r].base + off;
        let mut raw = vec![0u8; len / self.page * 8];
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut raw, (base / self.page * 8) as u64)
            .map_err(|e| broke("error", format!("/proc/self/pagemap: {e}")))?;
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let e = crate::kernel::probe::pagemap_entry(u64::from_ne_bytes(
                e.try_into().unwrap_or([0; 8]),
            ));
            if !e.present || !e.exclusive {
                return Err(broke(
                    "pinned exclusive",
                    format!(
                        "after fork, page {} of region {r} (pinned by the io_uring registration) is {} in the parent's pagemap",
                        off / self.page + i,
                        if e.present { "not exclusive (bit 56 clear)" } else { "not present" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The epoch's end: the waiting pipe read and checked, the fixed
    /// buffers unregistered, so that no pin of this worker is held.
    fn quiesce(&mut self) -> Step {
        self.read_pending()?;
        if self.buffers {
            self.ring()?
                .submitter()
                .unregister_buffers()
                .map_err(|e| broke("error", format!("io_uring_unregister_buffers: {e}")))?;
            self.buffers = false;
        }
        self.registered = false;
        Ok(())
    }
}

fn wait_byte(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut b = 0u8;
    // SAFETY: one pollfd; one byte.
    unsafe {
        loop {
            match libc::poll(&mut p, 1, ms) {
                1 => break,
                -1 if *libc::__errno_location() == libc::EINTR => continue,
                _ => return false,
            }
        }
        libc::read(fd, (&mut b as *mut u8).cast(), 1) == 1
    }
}

/// Everything the child needs, prepared before fork.
struct ChildPlan {
    /// vmsplice'd by the child.
    a: (usize, usize),
    /// Compared in the child's mapping.
    b: (usize, usize),
    /// Unmapped by the child after the vmsplice: `a`, or on hugetlb the
    /// whole region or nothing (munmap takes whole huge pages). The child
    /// writes its tags only where it still maps the region.
    unmap: (usize, usize),
    region: (usize, usize),
    /// The window (a then b) as it was at fork.
    snap: *const u8,
    cbuf: *mut u8,
    page: usize,
    worker: u8,
    region_idx: u8,
    seq: u64,
    ready: RawFd,
    go: RawFd,
    vp: (RawFd, RawFd),
    /// `--inject stuck-child`: never gets ready, to see the watchdog fire.
    stuck: bool,
}

/// The forked child: syscalls and memory prepared before fork only.
/// Exit 0: no leak; 1: the pipe shows the parent's write; 5: the mapping
/// does; 3, 4, 6: a step failed.
unsafe fn child(p: &ChildPlan) -> ! {
    // Dies with the parent's thread (a watchdog exit) instead of waiting.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    let iov = libc::iovec {
        iov_base: p.a.0 as *mut c_void,
        iov_len: p.a.1,
    };
    let n = libc::vmsplice(p.vp.1, &iov, 1, 0);
    if n <= 0 || (p.unmap.1 > 0 && libc::munmap(p.unmap.0 as *mut c_void, p.unmap.1) != 0) {
        libc::_exit(3);
    }
    if p.stuck {
        loop {
            libc::pause();
        }
    }
    if libc::write(p.ready, b"r".as_ptr().cast(), 1) != 1 || !wait_byte(p.go, CHILD_WAIT_MS) {
        libc::_exit(4);
    }
    let n = n as usize;
    let got = std::slice::from_raw_parts_mut(p.cbuf, n);
    if !read_full(p.vp.0, got) {
        libc::_exit(6);
    }
    if got != std::slice::from_raw_parts(p.snap, n) {
        libc::_exit(1);
    }
    let b = std::slice::from_raw_parts_mut(p.b.0 as *mut u8, p.b.1);
    if b != std::slice::from_raw_parts(p.snap.add(p.a.1), p.b.1) {
        libc::_exit(5);
    }
    // The child's own writes, which the parent must never see.
    let (base, len) = p.region;
    if p.unmap == p.region {
        libc::_exit(0);
    }
    let first = std::slice::from_raw_parts_mut(base as *mut u8, p.a.0 - base);
    tag::fill(first, p.page, Who::Child, p.worker, p.region_idx, 0, p.seq);
    let from = p.b.0;
    let rest = std::slice::from_raw_parts_mut(from as *mut u8, base + len - from);
    tag::fill(
        rest,
        p.page,
        Who::Child,
        p.worker,
        p.region_idx,
        (from - base) / p.page,
        p.seq,
    );
    libc::_exit(0)
}

fn read_pins() -> Result<Pins, String> {
    let text = std::fs::read_to_string("/proc/vmstat").map_err(|e| format!("/proc/vmstat: {e}"))?;
    vmstat::parse(&text)
}

/// The pins of a quiescent point: waits up to a second for the run's own
/// releases (an io_uring unregistration completes asynchronously), then
/// judges over an idle interval.
fn quiescent(baseline: &mut i64, rep: &mut PinReport) -> Result<Balance, String> {
    let t = Instant::now();
    let mut first = None;
    loop {
        let p = read_pins()?;
        first.get_or_insert(p.held() - *baseline);
        if p.held() == *baseline {
            rep.last = p;
            rep.checks += 1;
            rep.balanced += 1;
            rep.max_unsettled_delta = rep.max_unsettled_delta.max(first.unwrap_or(0).abs());
            return Ok(Balance::Balanced);
        }
        if t.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Still off: watch an idle interval of up to 5 s. Back at the baseline
    // is a late release; counters that move are others at work; a leak of
    // this run's pins would stay put for good.
    let idle0 = read_pins()?;
    let t = Instant::now();
    let mut idle1 = idle0;
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        idle1 = read_pins()?;
        if idle1 != idle0 || idle1.held() == *baseline {
            break;
        }
    }
    let b = vmstat::judge(*baseline, idle1, (idle0, idle1));
    rep.last = idle1;
    rep.checks += 1;
    rep.max_unsettled_delta = rep.max_unsettled_delta.max(first.unwrap_or(0).abs());
    match b {
        Balance::Balanced => rep.balanced += 1,
        Balance::Others { .. } => {
            rep.tolerated += 1;
            *baseline = idle1.held();
        }
        Balance::Unbalanced { .. } => {}
    }
    Ok(b)
}

fn report(cfg: &Config, sh: &Shared, seconds: f64, ended: &str) -> Report {
    let counts: Vec<u64> = sh.counts.iter().map(|c| c.load(SeqCst)).collect();
    let ops = counts.iter().sum();
    let mut notes = sh.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (moved, kept) = (sh.migrated.load(SeqCst), sh.migrate_refused.load(SeqCst));
    if cfg.breakers.iter().any(|b| b == "migrate") {
        notes.push(match numa_nodes().len() {
            0 | 1 => "move_pages: one NUMA node, nowhere to move a page (a --vm guest has two)".to_string(),
            n => format!("move_pages: {moved} pages moved between {n} nodes, {kept} left where they were (pinned or busy pages do not migrate)"),
        });
    }
    let (ok, refused) = (sh.collapsed.load(SeqCst), sh.collapse_refused.load(SeqCst));
    if ok + refused > 0 {
        notes.push(format!(
            "MADV_COLLAPSE: {ok} took, {refused} refused (pinned or busy pages are not collapsed)"
        ));
    }
    Report {
        format: FORMAT,
        kind: KIND.into(),
        gupcheck: env!("CARGO_PKG_VERSION").into(),
        kernel: crate::kernel::release().unwrap_or_else(|e| e),
        command: cfg.command.clone(),
        seed: cfg.seed,
        threads: cfg.threads,
        duration_secs: cfg.duration.as_secs_f64(),
        seconds,
        epochs: sh.epochs.load(SeqCst),
        ops,
        ops_per_s: ops as f64 / seconds.max(1e-9),
        ended: ended.into(),
        by_op: Report::stats(&counts, seconds),
        pins: sh.pins.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        notes,
        known_open: sh
            .known_open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        violation: sh.found.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

/// Writes every worker's op log; its path, or why not.
fn write_log(cfg: &Config, sh: &Shared) -> String {
    let text = sh.log_text();
    let _ = std::fs::create_dir_all(&cfg.out);
    match write_file_atomic(&cfg.out, "kernel-stress-oplog.txt", text.as_bytes()) {
        Ok(p) => p.display().to_string(),
        Err(e) => format!("(not written: {e})"),
    }
}

fn ksm_state() -> (bool, String) {
    match std::fs::read_to_string("/sys/kernel/mm/ksm/run") {
        Ok(s) if s.trim() == "1" => (true, "KSM: ksmd running (run = 1)".into()),
        Ok(s) => (
            true,
            format!(
                "KSM: MADV_MERGEABLE marks the regions, but ksmd is stopped (/sys/kernel/mm/ksm/run = {}): nothing merges",
                s.trim()
            ),
        ),
        Err(_) => (false, "KSM: no /sys/kernel/mm/ksm: the ksm op only writes its pattern".into()),
    }
}

fn ksm_shared() -> Option<u64> {
    std::fs::read_to_string("/sys/kernel/mm/ksm/pages_shared")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A worker's file, made anew (read-write) with open(2) `flags`.
fn new_file(path: &std::path::Path, flags: i32) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// move_pages' flag: move pages mapped by this process only.
const MPOL_MF_MOVE: i32 = 1 << 1;

/// The NUMA nodes with memory ("0-1,3" in sysfs).
fn numa_nodes() -> Vec<i32> {
    let text = std::fs::read_to_string("/sys/devices/system/node/has_memory").unwrap_or_default();
    parse_node_list(text.trim())
}

/// A sysfs cpu/node list: "0", "0-1", "0,2-3".
fn parse_node_list(s: &str) -> Vec<i32> {
    s.split(',')
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some(a.trim().parse::<i32>().ok()?..=b.trim().parse::<i32>().ok()?)
        })
        .flatten()
        .collect()
}

/// Whether files in `dir` open with O_DIRECT (tmpfs takes it from 6.6 on).
fn takes_o_direct(dir: &std::path::Path) -> Result<bool, String> {
    let path = dir.join(format!(
        ".gupcheck-kernel-stress-{}-probe",
        std::process::id()
    ));
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    // O_CREAT made the file even when O_DIRECT is refused.
    let _ = std::fs::remove_file(&path);
    match opened {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(format!(
            "cannot make files in {}: {e} (pick another --dir)",
            dir.display()
        )),
    }
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let direct = takes_o_direct(&cfg.dir)?;
    let without_direct;
    let cfg = if direct || !cfg.paths.iter().any(|p| p == "o_direct") {
        cfg
    } else if cfg.paths.len() == 1 {
        return Err(format!(
            "{} refuses O_DIRECT: --paths o_direct needs a --dir on a filesystem that takes it",
            cfg.dir.display()
        ));
    } else {
        without_direct = Config {
            paths: cfg
                .paths
                .iter()
                .filter(|p| *p != "o_direct")
                .cloned()
                .collect(),
            ..cfg.clone()
        };
        &without_direct
    };
    let thp = thp_size();
    let (ksm, ksm_note) = ksm_state();
    // Each worker's hugetlb page, and room for the copies fork and COW make
    // of it while children live: three pages a worker.
    let need = 3 * cfg.threads as i64;
    let (hugetlb, hugetlb_note) = match hugetlb_avail() {
        Some(n) if n >= need => (
            true,
            format!("hugetlb: {n} free 2 MiB pages, one region of one page a worker"),
        ),
        Some(n) => (
            false,
            format!("hugetlb: {n} free 2 MiB pages, fewer than {need} (3 a worker): no hugetlb region (echo {} > /proc/sys/vm/nr_hugepages)", need + 2),
        ),
        None => (false, "hugetlb: no 2 MiB pool: no hugetlb region".into()),
    };
    let mut notes = vec![
        match thp {
            Some(s) => format!(
                "THP: PMD {} kB, the second region advised MADV_HUGEPAGE",
                s / 1024
            ),
            None => "THP: none; the second region is 512 base pages".into(),
        },
        ksm_note,
        hugetlb_note,
        if direct {
            format!("O_DIRECT files in {}", cfg.dir.display())
        } else {
            format!(
                "{} refuses O_DIRECT (tmpfs before 6.6): the o_direct path is left out, io_uring's fixed buffers do buffered I/O",
                cfg.dir.display()
            )
        },
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| e.to_string())?;
    let sh = Arc::new(Shared {
        beats: (0..cfg.threads).map(|_| Beat::default()).collect(),
        counts: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
        logs: (0..cfg.threads)
            .map(|_| Mutex::new(VecDeque::new()))
            .collect(),
        children: Mutex::new(Vec::new()),
        found: Mutex::new(None),
        stop: AtomicBool::new(false),
        epochs: AtomicU64::new(0),
        collapsed: AtomicU64::new(0),
        collapse_refused: AtomicU64::new(0),
        migrated: AtomicU64::new(0),
        migrate_refused: AtomicU64::new(0),
        ksm_merged: AtomicU64::new(0),
        pins: Mutex::new(PinReport::default()),
        notes: Mutex::new(Vec::new()),
        known_open: Mutex::new(Vec::new()),
    });
    // The baseline after an idle interval: what others hold.
    let b0 = read_pins()?;
    std::thread::sleep(Duration::from_millis(300));
    let b1 = read_pins()?;
    if b0 != b1 {
        notes.push(format!(
            "others pinned during the baseline's idle interval ({} acquired)",
            b1.acquired - b0.acquired
        ));
    }
    let mut baseline = b1.held();
    sh.pins.lock().unwrap_or_else(|e| e.into_inner()).baseline = b1;
    // The workers after the baseline: their first registration (a check
    // of RLIMIT_MEMLOCK) is released asynchronously, like any other.
    let mut workers = (0..cfg.threads)
        .map(|w| {
            let ksm = ksm && cfg.breakers.iter().any(|b| b == "ksm");
            Worker::new(w, cfg, thp, ksm, direct, hugetlb)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ksm0 = ksm_shared();
    *sh.notes.lock().unwrap_or_else(|e| e.into_inner()) = notes;

    let t0 = Instant::now();
    let watchdog = spawn_watchdog(cfg.clone(), sh.clone(), t0);
    let stop = ui::ctrl_c();
    let bar = ui::bar(
        cfg.duration.as_secs().max(1),
        "{elapsed_precise} [{bar:30}] {msg}",
    );
    let mut last_line = 0;
    let mut ended = "deadline";
    let mut epoch = 0u64;
    while t0.elapsed() < cfg.duration {
        if stop.load(SeqCst) {
            ended = "interrupted";
            break;
        }
        epoch += 1;
        let until = (Instant::now() + cfg.epoch).min(t0 + cfg.duration);
        pool.scope(|s| {
            for w in workers.iter_mut() {
                let sh = &sh;
                s.spawn(move |_| run_epoch(w, sh, epoch, until));
            }
        });
        let found = sh.found.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        if found {
            ended = "violation";
            break;
        }
        let mut pins = sh.pins.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let balance = quiescent(&mut baseline, &mut pins)?;
        *sh.pins.lock().unwrap_or_else(|e| e.into_inner()) = pins;
        sh.epochs.fetch_add(1, SeqCst);
        if let Balance::Unbalanced { delta } = balance {
            *sh.found.lock().unwrap_or_else(|e| e.into_inner()) = Some(Found {
                invariant: "pin balance".into(),
                detail: format!(
                    "at the epoch's quiescent end nr_foll_pin_acquired - nr_foll_pin_released is {delta:+} from the baseline, and no other process pinned during the idle interval"
                ),
                epoch,
                worker: 0,
                op: "quiescent check".into(),
                seq: 0,
                op_log: String::new(),
            });
            ended = "violation";
            break;
        }
        let secs = t0.elapsed().as_secs_f64();
        let ops: u64 = sh.counts.iter().map(|c| c.load(SeqCst)).sum();
        let (balanced, checks) = {
            let p = sh.pins.lock().unwrap_or_else(|e| e.into_inner());
            (p.balanced, p.checks)
        };
        let status = format!(
            "{:.0} ops/s, {epoch} epochs, 0 violations, pins balanced at {balanced} of {checks} checks",
            ops as f64 / secs,
        );
        if bar.is_hidden() && secs as u64 / 60 > last_line {
            last_line = secs as u64 / 60;
            eprintln!("kernel stress: {secs:.0} s: {status}");
        }
        bar.set_position(secs as u64);
        bar.set_message(status);
    }
    bar.finish_and_clear();
    watchdog.store(true, SeqCst);
    let seconds = t0.elapsed().as_secs_f64();
    {
        let mut pins = sh.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.acquired_during_run = pins.last.acquired.saturating_sub(pins.baseline.acquired);
    }
    if let (Some(a), Some(b)) = (ksm0, ksm_shared()) {
        sh.notes.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
            "KSM: pages_shared {a} before the run, {b} after; at most {} pages of this process merged when a KSM op looked",
            sh.ksm_merged.load(SeqCst)
        ));
    }
    if ended == "violation" {
        let path = write_log(cfg, &sh);
        if let Some(f) = sh.found.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f.op_log = path;
        }
    }
    let checked: u64 = workers.iter().map(|w| w.exclusive_checked).sum();
    sh.notes.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
        "pagemap: {checked} forks with the window pinned, its pages checked exclusive to the parent (bit 56)"
    ));
    let mut notes = Vec::new();
    if let Some(e) = workers.iter().find_map(|w| w.unfixable.clone()) {
        notes.push(format!(
            "io_uring: the shared-file region is no fixed buffer ({e}); the other regions are registered without it"
        ));
    }
    let sum = |f: fn(&Worker) -> u64| workers.iter().map(f).sum::<u64>();
    notes.push(format!(
        "shared file: {} `no lost write` checks (pread after a pin wrote the mapping), {} `durable after sync` checks ({})",
        sum(|w| w.lost_write_checks),
        sum(|w| w.durable_checks),
        if direct { "an O_DIRECT read of the file" } else { "pread: the filesystem refuses O_DIRECT" }
    ));
    if hugetlb {
        notes.push(format!(
            "hugetlb: {} forks or refaults refused or retried for want of a free huge page",
            sum(|w| w.hugetlb_refused)
        ));
    }
    let leaks = sum(|w| w.hugetlb_leaks);
    if leaks > 0 {
        sh.known_open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(KnownOpen {
                invariant: super::HUGETLB_GET_LEAK.into(),
                count: leaks,
                first: workers
                    .iter()
                    .find_map(|w| w.hugetlb_first.clone())
                    .unwrap_or_default(),
            });
    }
    sh.notes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(notes);
    let refused: u64 = workers.iter().map(|w| w.uring_refused).sum();
    if refused > 0 {
        sh.notes.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
            "io_uring: {refused} registrations refused with ENOMEM (RLIMIT_MEMLOCK: run as root), their ops skipped"
        ));
    }
    drop(workers);
    Ok(report(cfg, &sh, seconds, ended))
}

fn run_epoch(w: &mut Worker, sh: &Shared, epoch: u64, until: Instant) {
    w.epoch = epoch;
    let beat = &sh.beats[w.id];
    beat.epoch.store(epoch, SeqCst);
    let fail = |w: &Worker, k: &str, b: Broke| {
        sh.end_log(w.id, &format!("{}: {}", b.invariant, b.detail));
        let mut f = sh.found.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(Found {
                invariant: b.invariant,
                detail: b.detail,
                epoch,
                worker: w.id,
                op: k.into(),
                seq: w.seq,
                op_log: String::new(),
            });
        }
        sh.stop.store(true, SeqCst);
    };
    while Instant::now() < until && !sh.stop.load(SeqCst) {
        let k = w.kinds[w.rng.gen_range(0..w.kinds.len())];
        // Paths run four times as often as each breaker.
        if !k.is_path() && w.rng.gen_range(0..4) != 0 {
            continue;
        }
        w.seq += 1;
        beat.kind.store(k.index() as u8 + 1, SeqCst);
        beat.seq.store(w.seq, SeqCst);
        sh.log(w.id, format!("epoch {epoch} #{} {}", w.seq, k.name()));
        let r = w.op(k, sh);
        beat.kind.store(0, SeqCst);
        beat.done.fetch_add(1, SeqCst);
        sh.counts[k.index()].fetch_add(1, SeqCst);
        match r {
            Ok(()) => sh.end_log(w.id, "ok"),
            Err(b) => return fail(w, k.name(), b),
        }
    }
    w.seq += 1;
    sh.log(w.id, format!("epoch {epoch} #{} quiescent end", w.seq));
    match w.quiesce() {
        Ok(()) => sh.end_log(w.id, "ok"),
        Err(b) => fail(w, "quiescent end", b),
    }
}

/// Watches the workers: when no op finishes and no epoch ends for
/// `--watchdog`, names each worker's op, writes the report and the op
/// log, kills the children and exits 1 (a stuck syscall cannot be
/// joined). Returns the flag that disarms it.
fn spawn_watchdog(cfg: Config, sh: Arc<Shared>, t0: Instant) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let off = done.clone();
    std::thread::spawn(move || {
        let progress = |sh: &Shared| {
            sh.beats.iter().map(|b| b.done.load(SeqCst)).sum::<u64>() + sh.epochs.load(SeqCst)
        };
        let mut last = (progress(&sh), Instant::now());
        // A quiescent check may wait 6 s on its own (1 s for the run's
        // releases, 5 s of idle counters).
        let bound = cfg.watchdog.max(Duration::from_secs(7));
        while !off.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            let p = progress(&sh);
            if p != last.0 {
                last = (p, Instant::now());
                continue;
            }
            if last.1.elapsed() < bound || off.load(SeqCst) {
                continue;
            }
            let stuck: Vec<String> = sh
                .beats
                .iter()
                .enumerate()
                .filter_map(|(w, b)| {
                    let k = b.kind.load(SeqCst) as usize;
                    (k > 0).then(|| {
                        format!(
                            "worker {w} in op #{} {} (epoch {})",
                            b.seq.load(SeqCst),
                            KINDS[k - 1].name(),
                            b.epoch.load(SeqCst)
                        )
                    })
                })
                .collect();
            let who = if stuck.is_empty() {
                "no worker is inside an op (the quiescent check is stuck)".to_string()
            } else {
                stuck.join("; ")
            };
            let detail = format!("no op finished for {:.1} s: {who}", bound.as_secs_f64());
            let path = write_log(&cfg, &sh);
            {
                let mut f = sh.found.lock().unwrap_or_else(|e| e.into_inner());
                *f = Some(Found {
                    invariant: "progress".into(),
                    detail,
                    epoch: sh.epochs.load(SeqCst) + 1,
                    worker: 0,
                    op: "watchdog".into(),
                    seq: 0,
                    op_log: path,
                });
            }
            for &pid in sh.children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // SAFETY: a child of this process, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let r = report(&cfg, &sh, t0.elapsed().as_secs_f64(), "watchdog");
            super::finish(&r, cfg.json.as_deref());
            std::process::exit(1);
        }
    });
    done
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysfs_node_lists_read_as_nodes() {
        assert_eq!(super::parse_node_list("0"), [0]);
        assert_eq!(super::parse_node_list("0-1"), [0, 1]);
        assert_eq!(super::parse_node_list("0,2-3"), [0, 2, 3]);
        assert!(super::parse_node_list("").is_empty());
    }
}
