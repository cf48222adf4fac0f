//! Files: inodes with their page cache and disk, the filesystem flavour, and the
//! layout's file specs (the operations are in mm/filemap.rs).

use crate::backend::Backend;
use crate::backend::Mutex;
use crate::backend::RwLock;
use crate::types::Pfn;
use serde::{Deserialize, Serialize};

/// How a filesystem tracks a page's blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsFlavour {
    /// ext4-like: buffer heads attached to the page (PG_private) by
    /// `->page_mkwrite` / `block_dirty_folio`; `ext4_writepage` BUG()s on a dirty
    /// page without them (a warning and a skipped write since cc5095747edf).
    #[default]
    BufferHead,
    /// iomap-like: per-folio state, allocated when needed.
    Iomap,
}

/// What the page cache holds of a file at the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cached {
    /// Nothing: the first access reads the disk.
    #[default]
    No,
    /// Every page cached and clean (no buffers).
    Clean,
    /// Every page cached and dirty (with buffers in the buffer-head flavour), as
    /// after a write fault through a shared mapping.
    Dirty,
}

/// One file of the layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub pages: u32,
    #[serde(default)]
    pub flavour: FsFlavour,
    #[serde(default)]
    pub cached: Cached,
}

/// `struct inode` + `struct address_space`, the parts the protocol touches.
pub struct Inode<B: Backend> {
    pub id: u32,
    pub flavour: FsFlavour,
    /// `mapping->i_pages` under `xa_lock`: the page cache, by index.
    pub i_pages: Mutex<B, Vec<Option<Pfn>>>,
    /// The blocks on disk, by index.
    pub disk: Mutex<B, Vec<[u64; 2]>>,
    /// `mapping->invalidate_lock`: shared while a fault fills the page cache,
    /// exclusive while a hole punch removes pages and frees their blocks.
    pub invalidate_lock: RwLock<B, ()>,
}

impl<B: Backend> Inode<B> {
    pub fn new(id: u32, spec: &FileSpec) -> Self {
        Inode {
            id,
            flavour: spec.flavour,
            i_pages: Mutex::new(vec![None; spec.pages as usize]),
            disk: Mutex::new(vec![[0, 0]; spec.pages as usize]),
            invalidate_lock: RwLock::new(()),
        }
    }
    pub fn nr_pages(&self) -> u32 {
        self.i_pages.lock().len() as u32
    }
}
