//! Operations as data: every action a modelled thread can take is an `Op`.
//!
//! Ops name pages and regions by selectors within the layout (taken modulo what
//! exists), so arbitrary bytes decode into meaningful sequences, and an all-zero
//! input decodes into `Nop`. The same op lists are a loom test, a shuttle test, a
//! fuzz input and a JSON reproducer. The encoding is versioned (`OPS_VERSION`).

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::config::PAGE_SIZE;
use crate::ghost::{Ctx, Res};
use crate::world::{Layout, World};

/// Version of the op encoding; bump when a variant changes meaning.
pub const OPS_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Does nothing (what zero bytes decode to).
    Nop,
    /// A user load or store; faults if the PTE does not allow it.
    Touch { mm: u8, page: u16, write: bool },
    /// `munmap()` of a layout region.
    Munmap { mm: u8, region: u8 },
    /// `mmap()` of a layout region again (anonymous, unpopulated).
    Mmap { mm: u8, region: u8 },
    /// A GUP-fast-style lockless lookup that reads the page under a speculative
    /// reference (walk.rs).
    LocklessPeek { mm: u8, page: u16 },
}

impl Op {
    /// Kernel-flavoured name, for traces and listings.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Nop => "nop",
            Op::Touch { write: true, .. } => "user store",
            Op::Touch { write: false, .. } => "user load",
            Op::Munmap { .. } => "munmap",
            Op::Mmap { .. } => "mmap",
            Op::LocklessPeek { .. } => "lockless peek",
        }
    }
}

/// Resolves selectors against a layout.
pub struct Resolver<'a> {
    layout: &'a Layout,
}

impl<'a> Resolver<'a> {
    pub fn new(layout: &'a Layout) -> Self {
        Resolver { layout }
    }
    pub fn mm(&self, sel: u8) -> usize {
        usize::from(sel) % self.layout.mms.len().max(1)
    }
    /// The `sel`-th page of `mm`'s regions, in layout order.
    pub fn page(&self, mm: usize, sel: u16) -> Option<u64> {
        let regions = self.layout.mms.get(mm)?;
        let total: u64 = regions.iter().map(|r| r.pages).sum();
        if total == 0 {
            return None;
        }
        let mut k = u64::from(sel) % total;
        for r in regions {
            if k < r.pages {
                return Some((r.start_page + k) * PAGE_SIZE);
            }
            k -= r.pages;
        }
        None
    }
    pub fn region(&self, mm: usize, sel: u8) -> Option<&'a crate::world::Region> {
        let regions = self.layout.mms.get(mm)?;
        if regions.is_empty() {
            return None;
        }
        regions.get(usize::from(sel) % regions.len())
    }
}

impl<B: Backend> World<B> {
    /// Executes one op. Results the kernel returns (an errno) are not violations.
    pub fn run_op(&self, ctx: &mut Ctx, layout: &Layout, op: &Op) -> Res<()> {
        let r = Resolver::new(layout);
        match *op {
            Op::Nop => {}
            Op::Touch { mm, page, write } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.user_access(ctx, mm, addr, write)?;
                }
            }
            Op::Munmap { mm, region } => {
                let mm = r.mm(mm);
                if let Some(reg) = r.region(mm, region) {
                    let _ = self.munmap(ctx, mm, reg.start(), reg.pages * PAGE_SIZE)?;
                }
            }
            Op::Mmap { mm, region } => {
                let mm = r.mm(mm);
                if let Some(reg) = r.region(mm, region) {
                    let _ = self.mmap(ctx, mm, reg.vma())?;
                }
            }
            Op::LocklessPeek { mm, page } => {
                let mm = r.mm(mm);
                if let Some(addr) = r.page(mm, page) {
                    let _ = self.lockless_peek(ctx, mm, addr)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;

    #[test]
    fn zero_bytes_decode_to_nop() {
        let bytes = [0u8; 16];
        let mut u = Unstructured::new(&bytes);
        assert_eq!(Op::arbitrary(&mut u).unwrap(), Op::Nop);
    }

    #[test]
    fn ops_roundtrip_through_json() {
        let ops = vec![
            Op::Touch {
                mm: 0,
                page: 3,
                write: true,
            },
            Op::Munmap { mm: 0, region: 1 },
            Op::LocklessPeek { mm: 0, page: 0 },
        ];
        let s = serde_json::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_json::from_str(&s).unwrap();
        assert_eq!(ops, back);
    }
}
