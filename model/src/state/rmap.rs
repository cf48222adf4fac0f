//! Reverse map: per folio, the page-table entries that map it.
//!
//! The kernel finds mappings through `anon_vma` chains and the file's `i_mmap`
//! tree, under their locks, then takes each PTL. Simplification: one list per
//! folio under a backend lock on the folio's head; each entry names the address
//! space and virtual address, and walkers (page_mkclean, try_to_unmap, split,
//! migration) take the PTL of the entry they visit.
//!
//! Lock order: the kernel takes the anon_vma / i_mmap lock, then the PTL. Here
//! the per-folio rmap lock is innermost: it is taken under a PTL (fault, zap) and
//! never held while taking another lock, so a walker copies the entries under it
//! (`Rmap::entries`), drops it, then takes each PTL.

use serde::{Deserialize, Serialize};

/// One mapping of a folio: which address space maps which virtual address, and
/// whether it maps the whole folio (a PMD or PUD leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmapEntry {
    pub mm: u32,
    pub addr: u64,
    pub huge: bool,
}

impl RmapEntry {
    /// A PTE mapping of one page.
    pub fn pte(mm: usize, addr: u64) -> Self {
        RmapEntry {
            mm: mm as u32,
            addr,
            huge: false,
        }
    }
    /// A PMD or PUD mapping of a whole folio.
    pub fn huge(mm: usize, addr: u64) -> Self {
        RmapEntry {
            mm: mm as u32,
            addr,
            huge: true,
        }
    }
}

/// The mappings of one folio. One mapping is stored inline (the common case: a
/// fully populated 1 GiB space would otherwise spend a heap block per page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rmap {
    #[default]
    Empty,
    One(RmapEntry),
    Many(Vec<RmapEntry>),
}

impl Rmap {
    pub fn add(&mut self, e: RmapEntry) {
        *self = match std::mem::take(self) {
            Rmap::Empty => Rmap::One(e),
            Rmap::One(a) => Rmap::Many(vec![a, e]),
            Rmap::Many(mut v) => {
                v.push(e);
                Rmap::Many(v)
            }
        };
    }

    /// Removes one mapping; false if it was not there (a bookkeeping bug).
    pub fn remove(&mut self, e: &RmapEntry) -> bool {
        match self {
            Rmap::Empty => false,
            Rmap::One(a) if a == e => {
                *self = Rmap::Empty;
                true
            }
            Rmap::One(_) => false,
            Rmap::Many(v) => match v.iter().position(|x| x == e) {
                Some(i) => {
                    v.swap_remove(i);
                    if v.len() == 1 {
                        *self = Rmap::One(v[0]);
                    }
                    true
                }
                None => false,
            },
        }
    }

    pub fn entries(&self) -> Vec<RmapEntry> {
        match self {
            Rmap::Empty => Vec::new(),
            Rmap::One(a) => vec![*a],
            Rmap::Many(v) => v.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rmap::Empty => 0,
            Rmap::One(_) => 1,
            Rmap::Many(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_keeps_inline_form() {
        let e = |a| RmapEntry {
            mm: 0,
            addr: a,
            huge: false,
        };
        let mut r = Rmap::default();
        r.add(e(1));
        assert_eq!(r, Rmap::One(e(1)));
        r.add(e(2));
        assert_eq!(r.len(), 2);
        assert!(r.remove(&e(1)));
        assert_eq!(r, Rmap::One(e(2)));
        assert!(!r.remove(&e(1)));
        assert!(r.remove(&e(2)));
        assert!(r.is_empty());
    }
}
