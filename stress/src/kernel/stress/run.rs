//! The workers of `kernel stress` on the running kernel. Each worker owns
//! two regions of anonymous memory (16 base pages, and one PMD-sized area
//! advised MADV_HUGEPAGE), a shadow of what each byte must hold, an io_uring
//! with both regions registered as fixed buffers, and an O_DIRECT file.
//! Workers run their own seeded op sequences at once, so one worker's fork,
//! clear_refs or KSM pass (which act on the whole address space) races the
//! others' pins; every op is checked against the shadow exactly.
//!
//! A forked child runs only syscalls, comparisons and stores on memory the
//! parent prepared before fork: another thread may hold the allocator's lock
//! at that moment.

use super::tag::{self, first_mismatch, Mismatch, Who};
use super::vmstat::{self, Balance, Pins};
use super::{Config, Found, Inject, Kind, PinReport, Report, FORMAT, KIND, KINDS};
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
    /// The most pages of this process KSM had merged when a KSM op looked.
    ksm_merged: AtomicU64,
    pins: Mutex<PinReport>,
    notes: Mutex<Vec<String>>,
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

fn madvise(at: usize, len: usize, advice: i32) -> Result<(), std::io::Error> {
    // SAFETY: a range of this worker's own regions.
    match unsafe { libc::madvise(at as *mut c_void, len, advice) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

struct Region {
    base: usize,
    /// Where the region was when registered: fixed I/O names the buffer by
    /// that address, whatever mremap did since.
    fixed: usize,
    len: usize,
    thp: bool,
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
    scratch: Scratch,
    /// Before fork: the window's content, and a buffer for the child.
    snap: Vec<u8>,
    cbuf: Vec<u8>,
    pending: Option<Pending>,
    rng: SmallRng,
    seq: u64,
    epoch: u64,
    kinds: Vec<Kind>,
    ksm: bool,
    inject: Option<Inject>,
    /// Forks at which the window was pinned and its pagemap checked.
    exclusive_checked: u64,
    /// Registrations refused for RLIMIT_MEMLOCK.
    uring_refused: u64,
}

impl Worker {
    fn new(id: usize, cfg: &Config, thp: Option<usize>, ksm: bool) -> Result<Worker, String> {
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
            let mut r = Region {
                base,
                fixed: base,
                len,
                thp: is_thp,
                shadow: vec![0; len],
            };
            let idx = regions.len() as u8;
            tag::fill(r.bytes_mut(0, len), page, Who::Parent, id as u8, idx, 0, 0);
            r.sync_shadow(0, len);
            regions.push(r);
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| {
                format!(
                    "cannot open {} with O_DIRECT: {e} (pick a --dir on a filesystem that takes it)",
                    path.display()
                )
            })?;
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
            scratch: Scratch::new(MAX_OP_PAGES * page, page).map_err(e)?,
            snap: vec![0; MAX_OP_PAGES * page],
            cbuf: vec![0; MAX_OP_PAGES * page],
            pending: None,
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
            epoch: 0,
            kinds: cfg.kinds(),
            ksm,
            inject: cfg.inject,
            exclusive_checked: 0,
            uring_refused: 0,
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

    /// A range of a random region: (region, offset, length), page-aligned,
    /// at least `min` pages.
    fn range(&mut self, min: usize) -> (usize, usize, usize) {
        let r = self.rng.gen_range(0..self.regions.len());
        let pages = self.regions[r].len / self.page;
        let n = self.rng.gen_range(min..=MAX_OP_PAGES.min(pages));
        let first = self.rng.gen_range(0..=pages - n);
        (r, first * self.page, n * self.page)
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
        for r in self.regions.iter_mut() {
            r.fixed = r.base;
        }
        let iovs: Vec<libc::iovec> = self
            .regions
            .iter()
            .map(|r| libc::iovec {
                iov_base: r.base as *mut c_void,
                iov_len: r.len,
            })
            .collect();
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

    fn op(&mut self, k: Kind, sh: &Shared) -> Step {
        let (r, off, len) = self.range(1);
        if k != Kind::Fork {
            sh.args(
                self.id,
                &format!(" region {r} offset {off:#x} length {len:#x}"),
            );
        }
        let base = self.regions[r].base;
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
                    r as u16,
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
                    r as u16,
                )
                .offset(off as u64)
                .build();
                self.uring(e, len, "read_fixed")?;
                self.verify(r, off, len, true, "read_fixed into the registered buffer")
            }
            Kind::DirectWrite => {
                self.write_tag(r, off, len, Who::Parent);
                self.file_io(true, base + off, len, off, "O_DIRECT pwrite")?;
                self.verify_file(r, off, len, "O_DIRECT write from the mapping")
            }
            Kind::DirectRead => {
                self.stage_file(r, off, len)?;
                self.file_io(false, base + off, len, off, "O_DIRECT pread")?;
                self.verify(r, off, len, true, "O_DIRECT read into the mapping")
            }
            Kind::Vmsplice | Kind::PipeRead => self.vmsplice(r, off, len),
            Kind::PvmWrite | Kind::PvmRead => self.pvm(k == Kind::PvmWrite, r, off, len),
            Kind::Fork => self.fork(sh),
            Kind::Remap => {
                let reg = &self.regions[r];
                let (base, len, thp) = (reg.base, reg.len, reg.thp);
                // SAFETY: this worker's region; nothing it lends (a fixed
                // buffer, a pipe) needs the mapping, only the pages.
                if unsafe { libc::munmap(base as *mut c_void, len) } != 0 {
                    return Err(sys("munmap"));
                }
                let align = if thp { len } else { self.page };
                let at = map_region(len, align, Some(base))?;
                if thp {
                    let _ = madvise(at, len, libc::MADV_HUGEPAGE);
                }
                if self.ksm {
                    let _ = madvise(at, len, libc::MADV_MERGEABLE);
                }
                let reg = &mut self.regions[r];
                reg.base = at;
                reg.shadow.fill(0);
                self.replaced();
                self.verify(r, 0, len, false, "a fresh mapping after munmap")
            }
            Kind::Mremap => {
                // The pages move with the mapping: a registration still pins
                // the pages the mapping shows, now at another address, so
                // the pin stays coherent (fixed I/O keeps naming the old
                // address, the registered one).
                let reg = &self.regions[r];
                let (old, len, thp) = (reg.base, reg.len, reg.thp);
                let align = if thp { len } else { self.page };
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
                self.regions[r].shadow[off..off + len].fill(0);
                self.replaced();
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
                // pages): only the content is checked.
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
            Kind::ClearRefs => {
                std::fs::write("/proc/self/clear_refs", "4")
                    .map_err(|e| broke("error", format!("clear_refs: {e}")))?;
                self.verify_all("after clear_refs soft-dirty")
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
        match tag::check_pipe(buf, &p.at_splice, page, id, p.region as u8, p.first_page) {
            None => Ok(()),
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
        // SAFETY: both iovecs name mapped memory of this process.
        let n = unsafe {
            if write {
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
    /// other's post-fork writes.
    fn fork(&mut self, sh: &Shared) -> Step {
        let (r, off, len) = self.range(2);
        sh.args(
            self.id,
            &format!(" region {r} window {off:#x} length {len:#x}"),
        );
        let page = self.page;
        let half = len / self.page / 2 * self.page;
        let reg = &self.regions[r];
        let (base, rlen) = (reg.base, reg.len);
        self.snap[..len].copy_from_slice(&reg.shadow[off..off + len]);
        let (ready_r, ready_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let (vp_r, vp_w) = pipe()?;
        let plan = ChildPlan {
            a: (base + off, half),
            b: (base + off + half, len - half),
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
        let zap = self.kinds.contains(&Kind::Dontneed) && self.rng.gen_bool(0.3);
        let writes = ["a store", "io_uring read_fixed", "O_DIRECT read"][how as usize];
        sh.args(
            self.id,
            &format!(", the parent's write: {writes} if enabled, zap: {zap}"),
        );
        // SAFETY: the child runs `child`, which only makes syscalls and
        // touches memory prepared above, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
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
            1 => return Err(broke(
                "no leak after fork",
                "the child's vmsplice pipe shows the parent's post-fork write (cow.c A3's leak)",
            )),
            5 => {
                return Err(broke(
                    "no leak after fork",
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
                    r as u16,
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
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n != b_len as isize {
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
    /// vmsplice'd and unmapped by the child.
    a: (usize, usize),
    /// Compared in the child's mapping.
    b: (usize, usize),
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
    if n <= 0 || libc::munmap(p.a.0 as *mut c_void, p.a.1) != 0 {
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

pub fn run(cfg: &Config) -> Result<Report, String> {
    let thp = thp_size();
    let (ksm, ksm_note) = ksm_state();
    let mut notes = vec![
        match thp {
            Some(s) => format!(
                "THP: PMD {} kB, the second region advised MADV_HUGEPAGE",
                s / 1024
            ),
            None => "THP: none; the second region is 512 base pages".into(),
        },
        ksm_note,
        format!("O_DIRECT files in {}", cfg.dir.display()),
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
        ksm_merged: AtomicU64::new(0),
        pins: Mutex::new(PinReport::default()),
        notes: Mutex::new(Vec::new()),
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
        .map(|w| Worker::new(w, cfg, thp, ksm && cfg.breakers.iter().any(|b| b == "ksm")))
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
