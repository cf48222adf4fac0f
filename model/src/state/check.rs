//! The whole-world invariants, judged at quiescence only (DESIGN decision 4):
//! conservation of references (page cache and swap cache included), the page
//! cache against the disk, and the last value written to every mapped (or
//! swapped-out) address.

use crate::backend::{Backend, KAtomic};
use crate::ghost::Ctx;
use crate::ghost::HoldKind;
use crate::ghost::Ledger;
use crate::invariant::Invariant;
use crate::invariant::Violation;
use crate::state::fs::FsFlavour;
use crate::state::mem::pg;
use crate::state::pgtable::Pte;
use crate::state::world::World;
use crate::types::Pfn;

impl<B: Backend> World<B> {
    /// Conservation at quiescence: every allocated folio's refcount equals the
    /// holders the ledger knows (mappings found by scanning the page tables, page
    /// tables, the zero page's own reference, GUP holders); mapcounts equal the
    /// mappings; every free frame has refcount zero; no speculative reference is
    /// left; every address still mapped holds the last value written to it. `ledger`
    /// is every thread's ledger, merged.
    pub fn check_quiescent(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        self.rcu_barrier(&mut Ctx::new(usize::MAX, 0, false))?;
        self.check_conservation(&ledger.holds)?;
        let pins_held: i64 = ledger
            .holds
            .iter()
            .filter(|h| h.kind == HoldKind::Pin)
            .map(|h| h.count)
            .sum();
        if pins_held == 0 && ledger.pin_acquired != ledger.pin_released {
            return Err(Box::new(Violation {
                invariant: Invariant::Conservation,
                thread: None,
                step: "quiescence".into(),
                detail: format!(
                    "no pin is held but nr_foll_pin_acquired {} != nr_foll_pin_released {}",
                    ledger.pin_acquired, ledger.pin_released
                ),
            }));
        }
        self.check_writes(ledger)?;
        self.check_files(ledger)
    }

    /// no lost write and no dirty page without buffers, for files: every cached
    /// page is dirty or matches the disk (a clean page that differs will be
    /// dropped by reclaim without a write); a buffer-head filesystem has no dirty
    /// page without buffers; the last value written to each file page is in the
    /// cached page, or on disk if none is cached.
    pub(crate) fn check_files(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        let fail = |invariant, detail: String| {
            Box::new(Violation {
                invariant,
                thread: None,
                step: "quiescence".into(),
                detail,
            })
        };
        for ino in self.inodes.iter() {
            let cache = ino.i_pages.lock().clone();
            let disk = ino.disk.lock().clone();
            for (index, p) in cache.iter().enumerate() {
                let Some(p) = *p else { continue };
                let flags = self.mem.frame(p).flags.read_once();
                let data = [self.mem.read_data(p, 0), self.mem.read_data(p, 1)];
                if flags & pg::DIRTY != 0 {
                    if ino.flavour == FsFlavour::BufferHead && flags & pg::HAS_BUFFERS == 0 {
                        return Err(fail(
                            Invariant::DirtyWithoutBuffers,
                            format!(
                                "inode {} index {index}: page {p} is dirty without buffers",
                                ino.id
                            ),
                        ));
                    }
                } else if data != disk[index] {
                    return Err(fail(
                        Invariant::NoLostWrite,
                        format!(
                            "inode {} index {index}: page {p} is clean but holds {:#x}, the disk {:#x}: reclaim will drop it unwritten",
                            ino.id, data[0], disk[index][0]
                        ),
                    ));
                }
            }
            for w in ledger.file_writes.iter().filter(|w| w.inode == ino.id) {
                let punched_after = ledger
                    .punches
                    .iter()
                    .any(|p| p.inode == w.inode && p.index == w.index && p.seq > w.seq);
                if punched_after {
                    continue;
                }
                let i = w.index as usize;
                let (now, where_) = match cache.get(i).copied().flatten() {
                    Some(p) => (self.mem.read_data(p, 0), format!("cached page {p}")),
                    None => (disk[i][0], "the disk".to_string()),
                };
                if now != w.value {
                    return Err(fail(
                        Invariant::NoLostWrite,
                        format!(
                            "inode {} index {}: {where_} holds {now:#x}, the last write was {:#x}",
                            ino.id, w.index, w.value
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// durable after sync: run at rest, once no pin or reference is held and
    /// every file was written back (the harness syncs, this floor cannot call
    /// writeback): the disk holds the last value written to each file page,
    /// by a store or by a device, unless a hole punch came after it (or, for
    /// a device's write, a release of a write reference that did not dirty
    /// the page: the caller's choice).
    pub fn check_durable(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        for ino in self.inodes.iter() {
            let disk = ino.disk.lock().clone();
            for w in ledger.file_writes.iter().filter(|w| w.inode == ino.id) {
                let punched_after = ledger
                    .punches
                    .iter()
                    .any(|p| p.inode == w.inode && p.index == w.index && p.seq > w.seq);
                let released_clean_after = w.by_device
                    && ledger
                        .released_clean
                        .iter()
                        .any(|r| r.inode == w.inode && r.index == w.index && r.seq > w.seq);
                if punched_after || released_clean_after {
                    continue;
                }
                let now = disk[w.index as usize][0];
                if now != w.value {
                    let cached = ino.i_pages.lock()[w.index as usize];
                    let page = match cached {
                        Some(p) => {
                            let dirty = self.mem.frame(p).flags.read_once() & pg::DIRTY != 0;
                            format!("page {p} cached, {}", if dirty { "dirty" } else { "clean" })
                        }
                        None => "no page cached".to_string(),
                    };
                    return Err(Box::new(Violation {
                        invariant: Invariant::DurableAfterSync,
                        thread: None,
                        step: "quiescence: after sync".into(),
                        detail: format!(
                            "inode {} index {}: the disk holds {now:#x} after a final sync, the last write was {:#x} ({page})",
                            ino.id, w.index, w.value
                        ),
                    }));
                }
            }
        }
        Ok(())
    }

    /// no lost write, for user stores: unless the address was unmapped after the
    /// last store to it, the page mapped there now holds the value stored.
    pub(crate) fn check_writes(&self, ledger: &Ledger) -> Result<(), Box<Violation>> {
        for w in &ledger.writes {
            let unmapped_after = ledger
                .unmaps
                .iter()
                .any(|u| u.mm == w.mm && u.seq > w.seq && u.start <= w.addr && w.addr < u.end);
            if unmapped_after {
                continue;
            }
            let lost = |detail: String| {
                Box::new(Violation {
                    invariant: Invariant::NoLostWrite,
                    thread: None,
                    step: "quiescence".into(),
                    detail,
                })
            };
            let now = self.resolve(w.mm as usize, w.addr);
            if let Some((pfn, gen)) = w.via_pin {
                let same = self.ghost.frame(pfn);
                if now != Some(pfn) || !same.allocated() || same.gen() != gen {
                    continue;
                }
            }
            match now {
                // Swapped out: the value is in the swap-cache folio or the slot.
                None => match self.swapped_word(w.mm as usize, w.addr) {
                    Some(v) if v == w.value => {}
                    Some(v) => {
                        return Err(lost(format!(
                        "mm {} address {:#x}: swapped out holding {v:#x}, the last store was {:#x}",
                        w.mm, w.addr, w.value
                    )))
                    }
                    None => {
                        return Err(lost(format!(
                            "mm {} address {:#x}: value {:#x} was stored, nothing is mapped now",
                            w.mm, w.addr, w.value
                        )))
                    }
                },
                Some(pfn) => {
                    let now = self.mem.read_data(pfn, 0);
                    if now != w.value {
                        return Err(lost(format!(
                            "mm {} address {:#x}: page {pfn} holds {now:#x}, the last store was {:#x}",
                            w.mm, w.addr, w.value
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The first data word of the swapped-out page at `addr` in `mm`, read at
    /// quiescence: the swap-cache folio's if one is cached, else the slot's.
    /// `None` if `addr` is not mapped by a swap entry.
    pub fn swapped_word(&self, mm: usize, addr: u64) -> Option<u64> {
        let mut slot = self.mms[mm].pgd;
        for level in (2..=4).rev() {
            let e =
                Pte(self.tables[slot as usize].entries[self.cfg.index(addr, level)].read_once());
            if !e.present() || e.leaf() {
                return None;
            }
            slot = e.table_slot();
        }
        let e = Pte(self.tables[slot as usize].entries[self.cfg.index(addr, 1)].read_once());
        if !e.is_swap() {
            return None;
        }
        let swap = self.swap.lock();
        let s = swap.get(e.pfn() as usize)?.as_ref()?;
        Some(match s.cache {
            Some(f) => self.mem.read_data(f, 0),
            None => s.data[0],
        })
    }

    /// conservation: see `check_quiescent`.
    pub fn check_conservation(&self, holds: &[crate::ghost::Hold]) -> Result<(), Box<Violation>> {
        let n = self.cfg.nr_frames;
        let mut pte_maps = vec![0i64; n];
        let mut pmd_maps = vec![0i64; n];
        let mut table_refs = vec![0i64; n];
        let fail = |detail: String| {
            Box::new(Violation {
                invariant: Invariant::Conservation,
                thread: None,
                step: "quiescence".into(),
                detail,
            })
        };
        let slots = self.swap.lock().clone();
        let mut swap_ptes = vec![0u32; slots.len()];
        for mm in self.mms.iter() {
            let vmas = mm.mmap_lock.read().clone();
            let mut stack = vec![(mm.pgd, 4u32, 0u64)];
            while let Some((slot, level, base)) = stack.pop() {
                if !self.ghost.table(slot).allocated() {
                    return Err(Box::new(Violation {
                        invariant: Invariant::NoUseAfterFree,
                        thread: None,
                        step: "quiescence".into(),
                        detail: format!("mm {} maps freed page-table slot {slot}", mm.id),
                    }));
                }
                table_refs[self.ghost.table_frame(slot) as usize] += 1;
                let t = &self.tables[slot as usize];
                let span = 1u64 << self.cfg.shift(level);
                for i in 0..self.cfg.fanout() {
                    let e = Pte(t.entries[i].read_once());
                    let lo = base + i as u64 * span;
                    if !e.present() && !e.is_swap() {
                        continue;
                    }
                    if (level == 1 || e.leaf() || e.is_swap())
                        && World::<B>::find_vma(&vmas, lo).is_none()
                    {
                        // Nothing will ever zap it: the page (or swap slot) leaks.
                        return Err(fail(format!(
                            "mm {} maps {lo:#x} outside any VMA ({e:?}): nothing will free it",
                            mm.id
                        )));
                    }
                    if e.is_swap() {
                        match swap_ptes.get_mut(e.pfn() as usize) {
                            Some(n) if slots[e.pfn() as usize].is_some() => *n += 1,
                            _ => {
                                return Err(fail(format!(
                                    "mm {} maps {lo:#x} to swap slot {}, which is free",
                                    mm.id,
                                    e.pfn()
                                )))
                            }
                        }
                        continue;
                    }
                    if e.special() {
                        continue;
                    }
                    if level == 1 {
                        pte_maps[e.pfn() as usize] += 1;
                    } else if e.leaf() {
                        pmd_maps[e.pfn() as usize] += 1;
                    } else {
                        stack.push((e.table_slot(), level - 1, lo));
                    }
                }
            }
        }
        // The page cache's reference on each cached page.
        let mut cache_refs = vec![0i64; n];
        for ino in self.inodes.iter() {
            for (index, p) in ino.i_pages.lock().iter().enumerate() {
                let Some(p) = *p else { continue };
                let f = self.mem.frame(p);
                let (m, i) = (f.mapping.read_once(), f.index.read_once());
                if m != ino.id + 1 || i as usize != index {
                    return Err(fail(format!(
                        "page {p} is cached at inode {} index {index} but its mapping says inode {} index {i}",
                        ino.id,
                        i64::from(m) - 1
                    )));
                }
                cache_refs[p as usize] += 1;
            }
        }
        // The swap device: each slot's count is the swap PTEs naming it, a
        // slot is in use while named or caching a folio, and the swap cache
        // holds one reference on each folio it caches.
        let mut swap_refs = vec![0i64; n];
        for (offset, s) in slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if s.count != swap_ptes[offset] {
                return Err(fail(format!(
                    "swap slot {offset} has count {} but {} swap PTE(s) name it",
                    s.count, swap_ptes[offset]
                )));
            }
            match s.cache {
                None if s.count == 0 => {
                    return Err(fail(format!(
                        "swap slot {offset} is in use, but nothing names it or is cached for it"
                    )))
                }
                None => {}
                Some(p) => {
                    if self.folio_swap_slot(p) != Some(offset as u32)
                        || !self.ghost.frame(p).allocated()
                    {
                        return Err(fail(format!(
                            "swap slot {offset} caches folio {p}, which is not in the swap cache for it"
                        )));
                    }
                    swap_refs[p as usize] += 1;
                }
            }
        }
        let mut held = vec![0i64; n];
        let mut pins = vec![0i64; n];
        for h in holds {
            if h.count == 0 {
                continue;
            }
            if h.kind == HoldKind::Speculative {
                return Err(fail(format!(
                    "{} speculative reference(s) on folio {} never confirmed or dropped",
                    h.count, h.head
                )));
            }
            held[h.head as usize] += h.count;
            if h.kind == HoldKind::Pin {
                pins[h.head as usize] += h.count;
            }
        }
        let mut pfn = 0usize;
        while pfn < n {
            let p = pfn as Pfn;
            let f = self.mem.frame(p);
            let stamp = self.ghost.frame(p);
            let rc = i64::from(self.mem.counter.norm(f.refcount.read_once()));
            if !stamp.allocated() {
                if rc != 0 {
                    return Err(fail(format!("free frame {p} has refcount {rc}")));
                }
                pfn += 1;
                continue;
            }
            let order = self.mem.folio_order(p);
            let nr = 1usize << order;
            let flags = f.flags.read_once();
            let mut maps = pmd_maps[pfn];
            for (sub, &ptes) in pte_maps.iter().enumerate().skip(pfn).take(nr) {
                let mc = i64::from(self.mem.frame(sub as Pfn).mapcount.read_once());
                if mc != ptes {
                    return Err(fail(format!(
                        "page {sub} has mapcount {mc} but {ptes} PTE mapping(s)"
                    )));
                }
                maps += ptes;
            }
            let emc = i64::from(f.entire_mapcount.read_once());
            if emc != pmd_maps[pfn] {
                return Err(fail(format!(
                    "folio {p} has entire mapcount {emc} but {} PMD mapping(s)",
                    pmd_maps[pfn]
                )));
            }
            let exact = self.cfg.folio_has_pincount(order);
            let pin_refs = if self.cfg.p().zero_page_pin_noop && self.mem.is_zero_pfn(p) {
                0
            } else {
                self.cfg.pin_refcount_delta(order, pins[pfn])
            };
            let other = held[pfn] - pins[pfn];
            if f.mapping.read_once() != 0 && cache_refs[pfn] == 0 {
                return Err(fail(format!(
                    "page {p} has a file mapping but is in no page cache"
                )));
            }
            if flags & pg::SWAPCACHE != 0 && swap_refs[pfn] == 0 {
                return Err(fail(format!(
                    "folio {p} is marked in the swap cache, but no swap slot caches it"
                )));
            }
            let permanent = i64::from(flags & pg::RESERVED != 0)
                + table_refs[pfn]
                + cache_refs[pfn]
                + swap_refs[pfn]
                + i64::from(flags & pg::HAS_BUFFERS != 0);
            let expected = maps + other + pin_refs + permanent;
            let limit = 1i64 << (self.mem.counter.bits - 1);
            if expected >= limit {
                return Err(Box::new(Violation {
                    invariant: Invariant::RefcountBounds,
                    thread: None,
                    step: "quiescence".into(),
                    detail: format!(
                        "folio {p} has {expected} references ({maps} mapping(s), {other} get(s), {} pin(s)): more than a {}-bit refcount holds (it reads {rc})",
                        pins[pfn], self.mem.counter.bits
                    ),
                }));
            }
            if rc != expected {
                return Err(fail(format!(
                    "folio {p} refcount {rc}, expected {expected} ({maps} mapping(s), {other} get(s), {} pin(s), {permanent} permanent)",
                    pins[pfn]
                )));
            }
            if exact {
                let pc = i64::from(f.pincount.read_once());
                if pc != pins[pfn] {
                    return Err(fail(format!(
                        "folio {p} pincount {pc}, {} pin(s) held",
                        pins[pfn]
                    )));
                }
            }
            pfn += nr;
        }
        Ok(())
    }
}
