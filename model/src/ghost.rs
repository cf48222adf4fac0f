//! Ghost state: what no kernel has, kept beside the protocol state to judge it.
//!
//! Rules (DESIGN decision 4): a ghost update comes immediately after the backend
//! operation it describes (loom and shuttle switch threads only *before* a backend
//! operation, so nothing can slip in between); no std lock is held across a backend
//! operation; no std HashMap/HashSet (loom aborts on nondeterminism); whole-world
//! comparisons run only at quiescence; under stress each thread keeps its own
//! ledger and trace, merged at quiescent epochs.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use crate::config::MAX_MMS;
use crate::heartbeat::Heartbeat;
use crate::invariant::Invariant;
use crate::invariant::Res;
use crate::invariant::Violation;
use crate::types::Pfn;

thread_local! {
    /// The traced steps of the model threads this OS thread runs, in the order
    /// taken. loom and shuttle run every thread of an execution on the engine's
    /// own thread, so when the execution ends in a deadlock (whose threads never
    /// return their ends) its steps are still here for the report.
    static STEPS: std::cell::RefCell<Vec<Step>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The steps traced on this OS thread since the last call, oldest first. Each
/// step is handed out once: a model thread takes its own steps at its end (and,
/// under loom and shuttle, those of the threads that shared the OS thread so
/// far), and the merged trace is sorted by `seq`.
pub fn take_steps() -> Vec<Step> {
    STEPS.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// One kernel-named step of one thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Global order of the step (one counter per world).
    pub seq: u64,
    pub thread: usize,
    pub name: std::borrow::Cow<'static, str>,
    /// Address, pfn or value the step acted on.
    pub arg: u64,
}

/// What kind of reference a holder has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub enum HoldKind {
    /// Taken speculatively by a lockless walker, not yet confirmed by its recheck.
    Speculative,
    /// FOLL_GET reference (get_page / try_grab_folio(FOLL_GET)).
    Get,
    /// FOLL_PIN reference.
    Pin,
}

/// References one holder has on one folio, aggregated (never per subpage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub head: Pfn,
    pub gen: u32,
    pub kind: HoldKind,
    pub count: i64,
}

/// A user store that reached memory: the last value each thread wrote per
/// (address space, address), in global order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRec {
    pub seq: u64,
    pub mm: u32,
    pub addr: u64,
    pub value: u64,
    /// A device write through a pin: the page written and its generation. It is
    /// judged only while that page (that life of the frame) is still the one
    /// mapped at the address (whether it must stay mapped there is the
    /// coherent-pin question, not this one).
    #[serde(default)]
    pub via_pin: Option<(Pfn, u32)>,
}

/// A write that reached a page-cache page (a user store through a shared mapping,
/// or a device writing through a pin): the last value per (inode, index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWriteRec {
    pub seq: u64,
    pub inode: u32,
    pub index: u32,
    pub value: u64,
    /// Written by a device through a pin or reference (not by a store):
    /// durable only if its holder releases it dirtying the page.
    #[serde(default)]
    pub by_device: bool,
}

/// An munmap of [start, end): earlier writes there are legitimately gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmapRec {
    pub seq: u64,
    pub mm: u32,
    pub start: u64,
    pub end: u64,
}

/// What one thread knows that the quiescent checks need: its holds, its last
/// writes, its unmaps. Threads keep their own and the ledgers are merged at
/// quiescence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub holds: Vec<Hold>,
    pub writes: Vec<WriteRec>,
    pub unmaps: Vec<UnmapRec>,
    #[serde(default)]
    pub file_writes: Vec<FileWriteRec>,
    /// Hole punches (inode, index): earlier writes there are legitimately gone.
    #[serde(default)]
    pub punches: Vec<FileWriteRec>,
    /// Write references released without dirtying (`unpin_user_pages`,
    /// `put_page`), per (inode, index): what a device wrote before through
    /// such a reference was never promised to reach the disk.
    #[serde(default)]
    pub released_clean: Vec<FileWriteRec>,
    /// /proc/vmstat nr_foll_pin_acquired / nr_foll_pin_released (per subpage).
    pub pin_acquired: u64,
    pub pin_released: u64,
    /// Tolerated outcomes seen on the way without stopping the thread (a
    /// device write into a page writeback cleaned: the world stays coherent,
    /// so the run goes on to rest, where `durable after sync` is judged).
    #[serde(default)]
    pub tolerated: u64,
    /// Emptied hold entries not yet swept.
    #[serde(skip)]
    empty_holds: usize,
}

impl Ledger {
    pub fn merge(&mut self, other: Ledger) {
        // All holds at once, then one sort: merging stays n log n.
        self.holds.extend(other.holds);
        self.coalesce_holds();
        for w in other.writes {
            self.wrote(w);
        }
        self.unmaps.extend(other.unmaps);
        for w in other.file_writes {
            self.file_wrote(w);
        }
        self.punches.extend(other.punches);
        self.released_clean.extend(other.released_clean);
        self.pin_acquired += other.pin_acquired;
        self.pin_released += other.pin_released;
        self.tolerated += other.tolerated;
    }

    /// Sorts the holds by (folio, kind, generation), sums duplicates and drops
    /// the empty ones.
    fn coalesce_holds(&mut self) {
        self.holds.sort_by_key(|h| (h.head, h.kind, h.gen));
        let mut out: Vec<Hold> = Vec::with_capacity(self.holds.len());
        for h in self.holds.drain(..) {
            match out.last_mut() {
                Some(l) if (l.head, l.kind, l.gen) == (h.head, h.kind, h.gen) => l.count += h.count,
                _ => out.push(h),
            }
        }
        out.retain(|h| h.count != 0);
        self.holds = out;
        self.empty_holds = 0;
    }

    /// The holds of `kind` on `head`: a range of the sorted list. Holds are kept
    /// sorted by (folio, kind, generation) so that a run with tens of thousands
    /// of references stays linear; emptied entries are left in place and
    /// swept when they are half the list.
    fn hold_range(&self, head: Pfn, kind: HoldKind) -> std::ops::Range<usize> {
        let lo = self
            .holds
            .partition_point(|h| (h.head, h.kind) < (head, kind));
        let hi = self
            .holds
            .partition_point(|h| (h.head, h.kind) <= (head, kind));
        lo..hi
    }

    fn sweep_if_sparse(&mut self) {
        if self.empty_holds > 16 && self.empty_holds * 2 > self.holds.len() {
            self.holds.retain(|h| h.count != 0);
            self.empty_holds = 0;
        }
    }

    /// The holds with references in them (emptied entries may linger in
    /// `holds` until swept).
    pub fn live_holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.iter().filter(|h| h.count != 0)
    }

    /// References of `kind` held on folio `head`, any generation.
    pub fn held(&self, head: Pfn, kind: HoldKind) -> i64 {
        self.holds[self.hold_range(head, kind)]
            .iter()
            .map(|h| h.count)
            .sum()
    }

    /// Drops `count` references of `kind` on `head`, from whichever generation
    /// holds them (newest first).
    pub fn release(&mut self, head: Pfn, kind: HoldKind, count: i64) {
        let mut left = count;
        let r = self.hold_range(head, kind);
        for h in self.holds[r].iter_mut().rev() {
            let take = left.min(h.count).max(0);
            h.count -= take;
            left -= take;
            if take > 0 && h.count == 0 {
                self.empty_holds += 1;
            }
            if left == 0 {
                break;
            }
        }
        if left > 0 {
            self.hold(head, 0, kind, -left);
        }
        self.sweep_if_sparse();
    }

    /// Adds `count` references of `kind` on folio `head` (generation `gen`).
    pub fn hold(&mut self, head: Pfn, gen: u32, kind: HoldKind, count: i64) {
        let key = (head, kind, gen);
        match self
            .holds
            .binary_search_by_key(&key, |h| (h.head, h.kind, h.gen))
        {
            Ok(i) => {
                let was = self.holds[i].count;
                self.holds[i].count += count;
                match (was == 0, self.holds[i].count == 0) {
                    (false, true) => {
                        self.empty_holds += 1;
                        self.sweep_if_sparse();
                    }
                    (true, false) => self.empty_holds = self.empty_holds.saturating_sub(1),
                    _ => {}
                }
            }
            Err(i) => self.holds.insert(
                i,
                Hold {
                    head,
                    gen,
                    kind,
                    count,
                },
            ),
        }
    }

    /// Keeps the latest write per (inode, index).
    pub(crate) fn file_wrote(&mut self, w: FileWriteRec) {
        match self
            .file_writes
            .iter_mut()
            .find(|x| x.inode == w.inode && x.index == w.index)
        {
            Some(x) if x.seq < w.seq => *x = w,
            Some(_) => {}
            None => self.file_writes.push(w),
        }
    }

    /// Keeps the latest write per (mm, addr).
    pub fn wrote(&mut self, w: WriteRec) {
        match self
            .writes
            .iter_mut()
            .find(|x| x.mm == w.mm && x.addr == w.addr)
        {
            Some(x) if x.seq < w.seq => *x = w,
            Some(_) => {}
            None => self.writes.push(w),
        }
    }
}

/// A written value: (address space + 1) << 48 | tick.
pub(crate) fn value_of(mm: usize, tick: u64) -> u64 {
    ((mm as u64 + 1) << 48) | (tick & ((1 << 48) - 1))
}

/// Who wrote a value made by `value_of`, and when: (address space, tick).
pub(crate) fn value_origin(v: u64) -> Option<(usize, u64)> {
    let mm = v >> 48;
    (mm != 0).then(|| ((mm - 1) as usize, v & ((1 << 48) - 1)))
}

/// Per-thread context: the thread's identity, its CPU (walker-registry slot), its
/// trace and its ledger of holds. Owned by the thread: no shared ghost lock.
#[derive(Debug)]
pub struct Ctx {
    pub thread: usize,
    pub cpu: usize,
    pub trace_on: bool,
    pub ledger: Ledger,
    /// The step being executed (for violation reports).
    pub cur: &'static str,
    /// The thread's own address space (`current->mm`).
    pub mm: usize,
    /// PF_MEMALLOC_PIN: allocations avoid ZONE_MOVABLE and CMA (FOLL_LONGTERM).
    pub memalloc_pin: bool,
    /// This CPU's walker-registry sequence (odd while interrupts are off).
    pub irq_seq: u32,
    /// Sequence of this thread's data writes (unique (writer, sequence) values).
    pub write_seq: u32,
    /// GUP results this thread still holds, oldest first.
    pub handles: Vec<crate::ghost::Handle>,
    /// Step tick of this thread's last successful speculative reference
    /// (`folio_ref_try_add`): when a GUP-fast grab happened.
    pub grab_tick: u64,
    /// Folios the GUP call in progress committed, with their writeback generation
    /// at that moment (a device writing through the pin later compares).
    pub grabbed: Vec<(Pfn, u32)>,
    /// A stress worker's heartbeat: each step is noted there for its watchdog.
    pub beat: Option<Arc<Heartbeat>>,
}

impl Ctx {
    pub fn new(thread: usize, cpu: usize, trace_on: bool) -> Self {
        Ctx {
            thread,
            cpu,
            trace_on,
            ledger: Ledger::default(),
            cur: "start",
            mm: 0,
            memalloc_pin: false,
            irq_seq: 0,
            write_seq: 0,
            handles: Vec::new(),
            grabbed: Vec::new(),
            grab_tick: 0,
            beat: None,
        }
    }

    /// Records a kernel-named step. Not a scheduling point: the schedule is made of
    /// backend operations only.
    #[inline]
    pub fn step(&mut self, ghost: &Ghost, name: &'static str, arg: u64) {
        self.cur = name;
        if let Some(b) = &self.beat {
            b.step(name);
        }
        if self.trace_on {
            let seq = ghost.tick();
            STEPS.with(|s| {
                s.borrow_mut().push(Step {
                    seq,
                    thread: self.thread,
                    name: std::borrow::Cow::Borrowed(name),
                    arg,
                })
            });
        }
    }

    /// A violation seen by this thread, at its current step.
    pub fn violation(&self, invariant: Invariant, detail: String) -> Box<Violation> {
        Box::new(Violation {
            invariant,
            thread: Some(self.thread),
            step: self.cur.to_string(),
            detail,
        })
    }

    /// A value no other write in this world carries, which says who wrote it and
    /// when: (address space + 1) << 48 | the global step tick; written on behalf
    /// of address space `mm` (a store into `mm`, a device working for the
    /// process that pinned).
    pub(crate) fn next_value_in(&mut self, ghost: &Ghost, mm: usize) -> u64 {
        self.write_seq += 1;
        value_of(mm, ghost.tick())
    }

    /// A fresh value without an address space of origin (`value_origin` is
    /// `None`): unique, but never judged by `no leak after fork`.
    pub(crate) fn next_value_untracked(&mut self, ghost: &Ghost) -> u64 {
        self.write_seq += 1;
        ghost.tick() & ((1 << 48) - 1)
    }

    /// Adds `count` references of `kind` on folio `head` (generation `gen`).
    pub fn hold(&mut self, head: Pfn, gen: u32, kind: HoldKind, count: i64) {
        self.ledger.hold(head, gen, kind, count);
    }
}

/// Global ghost state of one world: generations and allocation state of frames and
/// page-table slots, the step counter. Plain std atomics: invisible to loom and
/// shuttle, so they never add a scheduling point.
pub struct Ghost {
    /// Per frame: generation << 1 | allocated.
    frame_state: Box<[AtomicU32]>,
    /// Per page-table slot: generation << 1 | allocated.
    table_state: Box<[AtomicU32]>,
    /// The frame each page-table slot occupies (virt_to_page of the table).
    table_frame: Box<[AtomicU32]>,
    pub step_seq: AtomicU64,
    /// Per frame: how many times writeback cleaned it (`folio_clear_dirty_for_io`
    /// cleared PG_dirty). A device writing through a pin taken in an earlier
    /// generation writes into a page the filesystem believes clean.
    wb_gen: Box<[AtomicU32]>,
    /// Per address space: bumped whenever a mapping goes away by its owner's
    /// doing (munmap; a hole punch, for all): a pin's address may then map
    /// another page legitimately.
    unmap_gen: Box<[AtomicU64]>,
    /// Per address space: the tick at which fork created it (0: not a fork
    /// child) and its parent.
    fork_tick: Box<[AtomicU64]>,
    fork_parent: Box<[AtomicU32]>,
    /// Per (fork child, frame): the tick at which fork installed the frame in
    /// the child, or the frame its content was copied from (0: never). It
    /// follows the content, not the frame: `content_copied`.
    fork_copied: Box<[AtomicU64]>,
    nr_frames: usize,
    /// Per PTE (table slot × entry): the step tick at which `page_mkclean_one`
    /// last write-protected it. A FOLL_WRITE grab must not follow one that came
    /// after its PTE read (the page_mkclean rule).
    cleaned: Box<[AtomicU64]>,
    ptes_per_table: usize,
    /// Per frame: the (inode, index) it holds in the page cache, as
    /// `(inode + 1) << 32 | index` (0: none), updated with `folio->mapping`.
    /// Read right after a write to know whether the write reached a file.
    file_of: Box<[AtomicU64]>,
    /// Per frame: its frame state (`frame_state`) when a migration took it
    /// out of its file, plus one (0: never). A truncated page keeps no
    /// promise to its pin; a migrated one does (migration must refuse it).
    migrated: Box<[AtomicU32]>,
    /// Under the model checkers: every non-zero value written to a frame, with the
    /// frame's generation at the time (judges what a lockless reader read). Off
    /// under real threads, where it would be a shared ghost lock.
    values: Option<std::sync::Mutex<std::collections::BTreeSet<(Pfn, u32, u64)>>>,
}

/// What a GUP op returned and whether it has been released.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    pub pages: Vec<Pfn>,
    /// Taken by a pin_* entry point.
    pub pin: bool,
    /// Taken with FOLL_WRITE: a device may write into the pages.
    #[serde(default)]
    pub write: bool,
    /// The caller asked for a pin (it relies on the pages staying its own),
    /// whatever it got.
    #[serde(default)]
    pub needs_pin: bool,
    /// The address space and address the pages were taken from.
    #[serde(default)]
    pub mm: u32,
    #[serde(default)]
    pub start: u64,
    /// Each grabbed folio's writeback generation at the grab (ghost).
    #[serde(default)]
    pub wb_gen: Vec<(Pfn, u32)>,
    /// The ghost's unmap generation of `mm` when the call returned.
    #[serde(default)]
    pub unmap_gen: u64,
    /// Taken with FOLL_LONGTERM.
    #[serde(default)]
    pub longterm: bool,
}

/// A generation stamp taken when an object was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(u32);

impl Stamp {
    pub fn gen(self) -> u32 {
        self.0 >> 1
    }
    pub fn allocated(self) -> bool {
        self.0 & 1 == 1
    }
}

impl Ghost {
    pub fn new(
        nr_frames: usize,
        nr_tables: usize,
        ptes_per_table: usize,
        track_values: bool,
    ) -> Self {
        let mk = |n: usize| (0..n).map(|_| AtomicU32::new(0)).collect::<Box<[_]>>();
        Ghost {
            frame_state: mk(nr_frames),
            table_state: mk(nr_tables),
            table_frame: mk(nr_tables),
            step_seq: AtomicU64::new(0),
            wb_gen: mk(nr_frames),
            cleaned: (0..nr_tables * ptes_per_table)
                .map(|_| AtomicU64::new(0))
                .collect(),
            ptes_per_table,
            unmap_gen: (0..MAX_MMS).map(|_| AtomicU64::new(0)).collect(),
            fork_tick: (0..MAX_MMS).map(|_| AtomicU64::new(0)).collect(),
            fork_parent: mk(MAX_MMS),
            fork_copied: (0..MAX_MMS * nr_frames)
                .map(|_| AtomicU64::new(0))
                .collect(),
            nr_frames,
            file_of: (0..nr_frames).map(|_| AtomicU64::new(0)).collect(),
            migrated: mk(nr_frames),
            values: track_values.then(Default::default),
        }
    }

    /// A copy of this ghost state, for a world built from an image; `track_values`
    /// as in `new` (the image's recorded values are carried over).
    pub(crate) fn snapshot(&self, track_values: bool) -> Ghost {
        let copy = |v: &[AtomicU32]| {
            v.iter()
                .map(|a| AtomicU32::new(a.load(SeqCst)))
                .collect::<Box<[_]>>()
        };
        let copy64 = |v: &[AtomicU64]| {
            v.iter()
                .map(|a| AtomicU64::new(a.load(SeqCst)))
                .collect::<Box<[_]>>()
        };
        let values = self
            .values
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        Ghost {
            frame_state: copy(&self.frame_state),
            table_state: copy(&self.table_state),
            table_frame: copy(&self.table_frame),
            step_seq: AtomicU64::new(self.step_seq.load(SeqCst)),
            wb_gen: copy(&self.wb_gen),
            cleaned: copy64(&self.cleaned),
            ptes_per_table: self.ptes_per_table,
            unmap_gen: copy64(&self.unmap_gen),
            fork_tick: copy64(&self.fork_tick),
            fork_parent: copy(&self.fork_parent),
            fork_copied: copy64(&self.fork_copied),
            nr_frames: self.nr_frames,
            file_of: copy64(&self.file_of),
            migrated: copy(&self.migrated),
            values: track_values.then(|| std::sync::Mutex::new(values)),
        }
    }

    pub(crate) fn wb_gen(&self, pfn: Pfn) -> u32 {
        self.wb_gen[pfn as usize].load(SeqCst)
    }
    /// Writeback just cleared PG_dirty of `pfn`.
    pub(crate) fn written_back(&self, pfn: Pfn) {
        self.wb_gen[pfn as usize].fetch_add(1, SeqCst);
    }
    /// `mm`'s owner unmapped something (`None`: every address space).
    pub fn unmapped(&self, mm: Option<usize>) {
        for (i, g) in self.unmap_gen.iter().enumerate() {
            if mm.is_none_or(|m| m == i) {
                g.fetch_add(1, SeqCst);
            }
        }
    }
    pub(crate) fn unmap_gen(&self, mm: usize) -> u64 {
        self.unmap_gen[mm].load(SeqCst)
    }

    /// `child` was just created by a fork of `parent`.
    pub(crate) fn forked(&self, child: usize, parent: usize) {
        let now = self.tick();
        self.fork_parent[child].store(parent as u32, SeqCst);
        self.fork_tick[child].store(now, SeqCst);
    }

    /// Fork just installed `page` in `child` (shared write-protected, or
    /// copied early): what the child sees there is the parent's page as of now.
    pub(crate) fn fork_installed(&self, child: usize, page: Pfn) {
        if child < MAX_MMS {
            let now = self.tick();
            self.fork_copied[child * self.nr_frames + page as usize].store(now, SeqCst);
        }
    }

    /// The data of `from` was just copied into `to` (`copy_highpage`): for
    /// each fork child the copy holds what fork gave it in `from`, as of then
    /// (a child's COW copy, a migrated or collapsed page).
    pub(crate) fn content_copied(&self, from: Pfn, to: Pfn) {
        for mm in 0..MAX_MMS {
            let at = |p: Pfn| mm * self.nr_frames + p as usize;
            let installed = self.fork_copied[at(from)].load(SeqCst);
            self.fork_copied[at(to)].store(installed, SeqCst);
        }
    }

    /// What fork gave each child in the content of `pfn` (the record
    /// `content_copied` moves), to carry it with the content when it leaves
    /// the frame (to a swap slot).
    pub(crate) fn provenance(&self, pfn: Pfn) -> [u64; MAX_MMS] {
        std::array::from_fn(|mm| self.fork_copied[mm * self.nr_frames + pfn as usize].load(SeqCst))
    }

    /// The content of `pfn` was just read back from where `provenance` was
    /// kept (a swap slot): its history comes with it.
    pub(crate) fn set_provenance(&self, pfn: Pfn, p: [u64; MAX_MMS]) {
        for (mm, installed) in p.into_iter().enumerate() {
            self.fork_copied[mm * self.nr_frames + pfn as usize].store(installed, SeqCst);
        }
    }

    /// Whether `reader` reading a value `writer` wrote at `tick` into `page`
    /// crosses a fork between them: a child must never see what its parent
    /// wrote after fork gave it the page (a write while fork was still
    /// copying other pages is part of the child's snapshot), nor a parent
    /// what its child wrote.
    pub(crate) fn leaked_across_fork(
        &self,
        writer: usize,
        reader: usize,
        tick: u64,
        page: Pfn,
    ) -> bool {
        let child_of = |child: usize, parent: usize| {
            child < MAX_MMS
                && self.fork_tick[child].load(SeqCst) != 0
                && self.fork_parent[child].load(SeqCst) as usize == parent
        };
        if writer == reader {
            return false;
        }
        if child_of(reader, writer) {
            let installed = self.fork_copied[reader * self.nr_frames + page as usize].load(SeqCst);
            return tick > self.fork_tick[reader].load(SeqCst).max(installed);
        }
        child_of(writer, reader) && tick > self.fork_tick[writer].load(SeqCst)
    }

    /// The page-cache position of `pfn`, if it has one.
    pub(crate) fn file_of(&self, pfn: Pfn) -> Option<(u32, u32)> {
        let v = self.file_of[pfn as usize].load(SeqCst);
        (v != 0).then(|| (((v >> 32) - 1) as u32, v as u32))
    }
    pub(crate) fn set_file_of(&self, pfn: Pfn, file: Option<(u32, u32)>) {
        let v = file.map_or(0, |(i, x)| (u64::from(i) + 1) << 32 | u64::from(x));
        self.file_of[pfn as usize].store(v, SeqCst);
    }
    /// Migration or file THP collapse just took page-cache page `pfn` out
    /// of its file (its content moved to a new frame); this life of the
    /// frame keeps the mark.
    pub(crate) fn migrated_out_of_file(&self, pfn: Pfn) {
        let state = self.frame_state[pfn as usize].load(SeqCst);
        self.migrated[pfn as usize].store(state.wrapping_add(1), SeqCst);
    }
    /// Whether `pfn` left its file by migration or collapse in its current
    /// life.
    pub(crate) fn left_by_migration(&self, pfn: Pfn) -> bool {
        self.migrated[pfn as usize].load(SeqCst)
            == self.frame_state[pfn as usize].load(SeqCst).wrapping_add(1)
    }
    /// When PTE `idx` of table `slot` was last write-protected by
    /// `page_mkclean_one` (a step tick; 0: never).
    pub(crate) fn cleaned(&self, slot: u32, idx: usize) -> u64 {
        self.cleaned[slot as usize * self.ptes_per_table + idx].load(SeqCst)
    }
    /// `page_mkclean_one` just write-protected PTE `idx` of table `slot`.
    pub(crate) fn pte_cleaned(&self, slot: u32, idx: usize) {
        let now = self.tick();
        self.cleaned[slot as usize * self.ptes_per_table + idx].store(now, SeqCst);
    }

    /// Records that `value` was just written to `pfn` in its current generation.
    pub(crate) fn wrote_value(&self, pfn: Pfn, value: u64) {
        if let (Some(v), true) = (&self.values, value != 0) {
            let gen = self.frame(pfn).gen();
            v.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((pfn, gen, value));
        }
    }

    /// A value read from `pfn` while holding a reference taken in generation
    /// `stamp`: zero, or written in that generation. Anything else is the data of
    /// a previous life of the frame (a fresh page published before its contents).
    pub(crate) fn check_value(&self, ctx: &Ctx, pfn: Pfn, stamp: Stamp, value: u64) -> Res<()> {
        let Some(v) = &self.values else {
            return Ok(());
        };
        if value == 0
            || v.lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(pfn, stamp.gen(), value))
        {
            return Ok(());
        }
        Err(ctx.violation(
            Invariant::NoUseAfterFree,
            format!(
                "read {value:#x} from frame {pfn} in generation {}: data of a previous generation",
                stamp.gen()
            ),
        ))
    }

    /// The next global sequence number (orders writes and unmaps; they are taken
    /// under the lock that orders the events themselves).
    pub(crate) fn tick(&self) -> u64 {
        self.step_seq.fetch_add(1, SeqCst)
    }

    pub fn frame(&self, pfn: Pfn) -> Stamp {
        Stamp(self.frame_state[pfn as usize].load(SeqCst))
    }
    /// A frame leaves the free lists. Handing out an allocated frame is a model
    /// bug (the allocator's own), not a protocol violation: it panics.
    pub(crate) fn frame_allocated(&self, pfn: Pfn) {
        let was = self.frame_state[pfn as usize].fetch_or(1, SeqCst);
        assert!(was & 1 == 0, "model bug: frame {pfn} allocated twice");
    }
    /// A frame was freed: its generation moves on, so any stamp taken before fails.
    pub(crate) fn frame_freed(&self, pfn: Pfn) {
        let s = &self.frame_state[pfn as usize];
        let v = s.load(SeqCst);
        s.store(((v >> 1) + 1) << 1, SeqCst);
    }

    pub fn table(&self, slot: u32) -> Stamp {
        Stamp(self.table_state[slot as usize].load(SeqCst))
    }
    pub fn table_frame(&self, slot: u32) -> Pfn {
        self.table_frame[slot as usize].load(SeqCst)
    }
    pub(crate) fn table_allocated(&self, slot: u32, pfn: Pfn) {
        self.table_frame[slot as usize].store(pfn, SeqCst);
        let was = self.table_state[slot as usize].fetch_or(1, SeqCst);
        assert!(
            was & 1 == 0,
            "model bug: page-table slot {slot} allocated twice"
        );
    }
    pub(crate) fn table_freed(&self, slot: u32) {
        let s = &self.table_state[slot as usize];
        let v = s.load(SeqCst);
        s.store(((v >> 1) + 1) << 1, SeqCst);
    }

    /// no use after free, for a page-table page: the access just made to `slot`
    /// happened while it was allocated and in the generation it was reached in.
    pub(crate) fn check_table(&self, ctx: &Ctx, slot: u32, reached: Stamp) -> Res<()> {
        let now = self.table(slot);
        if !reached.allocated() || now != reached {
            return Err(ctx.violation(
                Invariant::NoUseAfterFree,
                format!(
                    "page-table page (slot {slot}, frame {}) accessed after it was freed: reached in generation {}{}, now generation {}",
                    self.table_frame(slot),
                    reached.gen(),
                    if reached.allocated() { "" } else { " (already free)" },
                    now.gen()
                ),
            ));
        }
        Ok(())
    }
}
