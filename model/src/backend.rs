//! The `Backend` trait: the kernel's synchronisation vocabulary (LKMM), with one
//! implementation per engine.
//!
//! The model never touches a Rust atomic ordering directly. It speaks the kernel's
//! words (READ_ONCE, atomic_add, atomic_add_return, cmpxchg, smp_mb,
//! smp_mb__after_atomic, ...) and each backend maps them:
//!
//! | kernel (LKMM) | loom | std (x86) | shuttle |
//! |---|---|---|---|
//! | value-returning RMW (fully ordered) | fence(SeqCst); RMW; fence(SeqCst) | SeqCst RMW | RMW |
//! | non-returning RMW | Relaxed RMW | Relaxed RMW | RMW |
//! | smp_mb__after_atomic | fence(SeqCst) | compiler barrier | nothing |
//! | smp_mb | fence(SeqCst) | fence(SeqCst) | nothing |
//! | smp_rmb / smp_wmb | fence(Acquire) / fence(Release) | compiler barrier | nothing |
//! | READ_ONCE feeding an address | Acquire load | Relaxed | load |
//! | READ_ONCE / WRITE_ONCE | Relaxed | Relaxed | load / store |
//! | smp_store_release / refcount init | Release store | Release store | store |
//!
//! loom treats SeqCst *accesses* as AcqRel, hence the explicit fences. Shuttle is
//! sequentially consistent, so fences would only add scheduling points.
//!
//! Where the loom mapping is stronger than LKMM (so it can only hide bugs, never
//! invent them):
//! - smp_rmb / smp_wmb as Acquire / Release fences (C11 has no exact rmb / wmb);
//! - a READ_ONCE that feeds an address as an Acquire load (address dependencies);
//! - a failed cmpxchg is unordered in LKMM, but the leading fence orders it here.
//!
//! Scheduling points are exactly the backend operations: loom and shuttle switch
//! threads at atomics and locks, so steps that touch nothing shared need no
//! marker. `yield_now` exists only for real retry loops.

use std::ops::{Deref, DerefMut};

/// One atomic word, with the kernel's operations. `V` is the value type.
pub trait KAtomic: Send + Sync + 'static {
    type V: Copy + Eq + std::fmt::Debug;
    fn new(v: Self::V) -> Self;
    /// READ_ONCE(): plain, unordered.
    fn read_once(&self) -> Self::V;
    /// READ_ONCE() whose value feeds an address (pgd -> pud -> pmd -> pte, page ->
    /// head -> refcount): the address dependency orders later accesses through it.
    fn read_once_dep(&self) -> Self::V;
    /// WRITE_ONCE(): plain, unordered.
    fn write_once(&self, v: Self::V);
    /// smp_store_release(), and the refcount set on a freshly allocated frame.
    fn store_release(&self, v: Self::V);
    /// smp_load_acquire().
    fn load_acquire(&self) -> Self::V;
    /// atomic_add() (non-returning: unordered).
    fn add(&self, v: Self::V);
    /// atomic_fetch_add_relaxed(): unordered, returns the old value (lets the
    /// model check an increment without adding ordering the kernel lacks).
    fn fetch_add_relaxed(&self, v: Self::V) -> Self::V;
    /// atomic_sub() (non-returning: unordered).
    fn sub(&self, v: Self::V);
    /// set_bit() / atomic_or() (non-returning: unordered).
    fn or(&self, v: Self::V);
    /// clear_bit() / atomic_andnot() (non-returning: unordered).
    fn andnot(&self, v: Self::V);
    /// atomic_add_return(): fully ordered, returns the new value (wrapping).
    fn add_return(&self, v: Self::V) -> Self::V;
    /// atomic_sub_return(): fully ordered, returns the new value (wrapping).
    fn sub_return(&self, v: Self::V) -> Self::V;
    /// test_and_set_bit() style: fully ordered, returns the old value.
    fn fetch_or(&self, v: Self::V) -> Self::V;
    /// test_and_clear_bit() style: fully ordered, returns the old value.
    fn fetch_andnot(&self, v: Self::V) -> Self::V;
    /// cmpxchg(): fully ordered, returns the old value (equal to `old` on success).
    fn cmpxchg(&self, old: Self::V, new: Self::V) -> Self::V;
    /// xchg(): fully ordered, returns the old value.
    fn xchg(&self, v: Self::V) -> Self::V;
    /// xchg_relaxed(): unordered, returns the old value (arm64's
    /// `__ptep_get_and_clear`).
    fn xchg_relaxed(&self, v: Self::V) -> Self::V;
}

/// The engine a model instance runs on.
pub trait Backend: Sized + Send + Sync + 'static {
    /// "std", "loom" or "shuttle".
    const NAME: &'static str;
    /// True when every thread runs under a model checker on one OS thread (loom,
    /// shuttle): ghost state may then use a shared lock without hiding races.
    const MODEL_CHECKED: bool;

    type AtomicI32: KAtomic<V = i32>;
    type AtomicU32: KAtomic<V = u32>;
    type AtomicU64: KAtomic<V = u64>;

    type RawMutex<T: Send + 'static>: Send + Sync;
    type RawMutexGuard<'a, T: Send + 'static>: DerefMut<Target = T>
    where
        T: 'a;
    type RawRwLock<T: Send + Sync + 'static>: Send + Sync;
    type RawReadGuard<'a, T: Send + Sync + 'static>: Deref<Target = T>
    where
        T: 'a;
    type RawWriteGuard<'a, T: Send + Sync + 'static>: DerefMut<Target = T>
    where
        T: 'a;
    type RawCondvar: Send + Sync;
    type JoinHandle<T: Send + 'static>;

    fn mutex_new<T: Send + 'static>(v: T) -> Self::RawMutex<T>;
    fn mutex_lock<T: Send + 'static>(m: &Self::RawMutex<T>) -> Self::RawMutexGuard<'_, T>;
    fn rwlock_new<T: Send + Sync + 'static>(v: T) -> Self::RawRwLock<T>;
    fn rwlock_read<T: Send + Sync + 'static>(l: &Self::RawRwLock<T>) -> Self::RawReadGuard<'_, T>;
    fn rwlock_write<T: Send + Sync + 'static>(l: &Self::RawRwLock<T>)
        -> Self::RawWriteGuard<'_, T>;
    fn condvar_new() -> Self::RawCondvar;
    /// Blocks; the guard is released while waiting. Spurious wakeups are allowed,
    /// so callers wait in a `while` loop on a condition.
    fn condvar_wait<'a, T: Send + 'static>(
        cv: &Self::RawCondvar,
        g: Self::RawMutexGuard<'a, T>,
    ) -> Self::RawMutexGuard<'a, T>;
    fn condvar_notify_all(cv: &Self::RawCondvar);

    /// smp_mb(): full barrier.
    fn smp_mb();
    /// smp_mb__after_atomic(): upgrades the preceding non-returning RMW to a full
    /// barrier.
    fn smp_mb__after_atomic();
    /// smp_rmb().
    fn smp_rmb();
    /// smp_wmb().
    fn smp_wmb();

    fn spawn<F, T>(name: String, stack_size: usize, f: F) -> Self::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;
    fn join<T: Send + 'static>(h: Self::JoinHandle<T>) -> std::thread::Result<T>;
    /// Only inside a real retry loop, never as a step marker.
    fn yield_now();
}

/// Stack size for every modelled thread: loom and shuttle default to small stacks.
pub const THREAD_STACK: usize = 1 << 21;

/// A lock token with data (`spinlock_t` / `struct mutex` and what it protects).
pub struct Mutex<B: Backend, T: Send + 'static>(B::RawMutex<T>);

impl<B: Backend, T: Send + 'static> Mutex<B, T> {
    pub fn new(v: T) -> Self {
        Mutex(B::mutex_new(v))
    }
    pub fn lock(&self) -> B::RawMutexGuard<'_, T> {
        B::mutex_lock(&self.0)
    }
}

/// A reader-writer lock (`mmap_lock`).
pub struct RwLock<B: Backend, T: Send + Sync + 'static>(B::RawRwLock<T>);

impl<B: Backend, T: Send + Sync + 'static> RwLock<B, T> {
    pub fn new(v: T) -> Self {
        RwLock(B::rwlock_new(v))
    }
    pub fn read(&self) -> B::RawReadGuard<'_, T> {
        B::rwlock_read(&self.0)
    }
    pub fn write(&self) -> B::RawWriteGuard<'_, T> {
        B::rwlock_write(&self.0)
    }
}

/// A condition variable paired with a backend `Mutex`: every wait in the model
/// blocks on one of these, never spins (a spin exhausts loom's branch budget).
pub struct Condvar<B: Backend>(B::RawCondvar);

impl<B: Backend> Condvar<B> {
    pub fn new() -> Self {
        Condvar(B::condvar_new())
    }
    pub fn wait<'a, T: Send + 'static>(
        &self,
        g: B::RawMutexGuard<'a, T>,
    ) -> B::RawMutexGuard<'a, T> {
        B::condvar_wait(&self.0, g)
    }
    pub(crate) fn notify_all(&self) {
        B::condvar_notify_all(&self.0)
    }
}

impl<B: Backend> Default for Condvar<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Implements `KAtomic` for one raw atomic type. `$full` is the fence placed
/// around fully ordered RMWs (`()` for none), `$rmw` the ordering of those RMWs,
/// `$dep` the ordering standing in for an address dependency.
macro_rules! katomic {
    ($name:ident, $raw:ty, $v:ty, full = $full:expr, rmw = $rmw:expr, dep = $dep:expr, relaxed = $rel:expr, rel = $relst:expr, acq = $acq:expr) => {
        pub struct $name($raw);
        // `full` is `()` where a value-returning RMW needs no fence around it.
        #[allow(clippy::no_effect)]
        impl KAtomic for $name {
            type V = $v;
            #[inline]
            fn new(v: $v) -> Self {
                $name(<$raw>::new(v))
            }
            #[inline]
            #[track_caller]
            fn read_once(&self) -> $v {
                self.0.load($rel)
            }
            #[inline]
            #[track_caller]
            fn read_once_dep(&self) -> $v {
                self.0.load($dep)
            }
            #[inline]
            #[track_caller]
            fn write_once(&self, v: $v) {
                self.0.store(v, $rel)
            }
            #[inline]
            #[track_caller]
            fn store_release(&self, v: $v) {
                self.0.store(v, $relst)
            }
            #[inline]
            #[track_caller]
            fn load_acquire(&self) -> $v {
                self.0.load($acq)
            }
            #[inline]
            #[track_caller]
            fn add(&self, v: $v) {
                self.0.fetch_add(v, $rel);
            }
            #[inline]
            #[track_caller]
            fn fetch_add_relaxed(&self, v: $v) -> $v {
                self.0.fetch_add(v, $rel)
            }
            #[inline]
            #[track_caller]
            fn sub(&self, v: $v) {
                self.0.fetch_sub(v, $rel);
            }
            #[inline]
            #[track_caller]
            fn or(&self, v: $v) {
                self.0.fetch_or(v, $rel);
            }
            #[inline]
            #[track_caller]
            fn andnot(&self, v: $v) {
                self.0.fetch_and(!v, $rel);
            }
            #[inline]
            #[track_caller]
            fn add_return(&self, v: $v) -> $v {
                $full;
                let r = self.0.fetch_add(v, $rmw).wrapping_add(v);
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn sub_return(&self, v: $v) -> $v {
                $full;
                let r = self.0.fetch_sub(v, $rmw).wrapping_sub(v);
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn fetch_or(&self, v: $v) -> $v {
                $full;
                let r = self.0.fetch_or(v, $rmw);
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn fetch_andnot(&self, v: $v) -> $v {
                $full;
                let r = self.0.fetch_and(!v, $rmw);
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn cmpxchg(&self, old: $v, new: $v) -> $v {
                $full;
                let r = match self.0.compare_exchange(old, new, $rmw, $rel) {
                    Ok(v) | Err(v) => v,
                };
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn xchg(&self, v: $v) -> $v {
                $full;
                let r = self.0.swap(v, $rmw);
                $full;
                r
            }
            #[inline]
            #[track_caller]
            fn xchg_relaxed(&self, v: $v) -> $v {
                self.0.swap(v, $rel)
            }
        }
    };
}

/// A backend's three atomic types over its crate's `sync::atomic`, with the
/// orderings its column of the LKMM table gives (see `katomic!`).
macro_rules! backend_atomics {
    ($c:ident: $i32:ident, $u32:ident, $u64:ident; $($ord:tt)*) => {
        katomic!($i32, $c::sync::atomic::AtomicI32, i32, $($ord)*);
        katomic!($u32, $c::sync::atomic::AtomicU32, u32, $($ord)*);
        katomic!($u64, $c::sync::atomic::AtomicU64, u64, $($ord)*);
    };
}

/// The locks, condition variable and threads of a backend whose crate mirrors
/// std's `sync` and `thread` modules (std, loom, shuttle): one definition for
/// the three, as `katomic!` is for the atomics. A poisoned lock is taken over:
/// the panic that poisoned it is reported on its own.
macro_rules! sync_primitives {
    ($c:ident: $i32:ident, $u32:ident, $u64:ident) => {
        type AtomicI32 = $i32;
        type AtomicU32 = $u32;
        type AtomicU64 = $u64;
        type RawMutex<T: Send + 'static> = $c::sync::Mutex<T>;
        type RawMutexGuard<'a, T: Send + 'static> = $c::sync::MutexGuard<'a, T>;
        type RawRwLock<T: Send + Sync + 'static> = $c::sync::RwLock<T>;
        type RawReadGuard<'a, T: Send + Sync + 'static> = $c::sync::RwLockReadGuard<'a, T>;
        type RawWriteGuard<'a, T: Send + Sync + 'static> = $c::sync::RwLockWriteGuard<'a, T>;
        type RawCondvar = $c::sync::Condvar;
        type JoinHandle<T: Send + 'static> = $c::thread::JoinHandle<T>;

        fn mutex_new<T: Send + 'static>(v: T) -> Self::RawMutex<T> {
            $c::sync::Mutex::new(v)
        }
        fn mutex_lock<T: Send + 'static>(m: &Self::RawMutex<T>) -> Self::RawMutexGuard<'_, T> {
            m.lock().unwrap_or_else(|e| e.into_inner())
        }
        fn rwlock_new<T: Send + Sync + 'static>(v: T) -> Self::RawRwLock<T> {
            $c::sync::RwLock::new(v)
        }
        fn rwlock_read<T: Send + Sync + 'static>(
            l: &Self::RawRwLock<T>,
        ) -> Self::RawReadGuard<'_, T> {
            l.read().unwrap_or_else(|e| e.into_inner())
        }
        fn rwlock_write<T: Send + Sync + 'static>(
            l: &Self::RawRwLock<T>,
        ) -> Self::RawWriteGuard<'_, T> {
            l.write().unwrap_or_else(|e| e.into_inner())
        }
        fn condvar_new() -> Self::RawCondvar {
            $c::sync::Condvar::new()
        }
        fn condvar_notify_all(cv: &Self::RawCondvar) {
            cv.notify_all()
        }
        fn spawn<F, T>(name: String, stack_size: usize, f: F) -> Self::JoinHandle<T>
        where
            F: FnOnce() -> T + Send + 'static,
            T: Send + 'static,
        {
            $c::thread::Builder::new()
                .name(name)
                .stack_size(stack_size)
                .spawn(f)
                .expect(concat!("spawning a ", stringify!($c), " thread"))
        }
        fn join<T: Send + 'static>(h: Self::JoinHandle<T>) -> std::thread::Result<T> {
            h.join()
        }
        fn yield_now() {
            $c::thread::yield_now()
        }
    };
}

/// How long a real thread may sleep on one condition variable before the wait
/// counts as a deadlock (see the std backend's `condvar_wait`).
pub const STD_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Real threads on real atomics: what x86 costs.
pub mod std_backend {
    use super::*;
    use std::sync::atomic::{compiler_fence, fence, Ordering::*};

    pub struct Std;

    // An address dependency orders on every CPU Rust targets except Alpha; Rust
    // has no consume ordering, so off x86 the std backend uses Acquire.
    const DEP: std::sync::atomic::Ordering =
        if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            Relaxed
        } else {
            Acquire
        };

    backend_atomics!(std: StdAtomicI32, StdAtomicU32, StdAtomicU64; full = (), rmw = SeqCst, dep = DEP, relaxed = Relaxed, rel = Release, acq = Acquire);

    impl Backend for Std {
        const NAME: &'static str = "std";
        const MODEL_CHECKED: bool = false;
        sync_primitives!(std: StdAtomicI32, StdAtomicU32, StdAtomicU64);
        // Real threads have no deadlock detector: a wait that lasts
        // `STD_WAIT_LIMIT` is one (every modelled wait is for a step that takes
        // microseconds), reported as `progress` by the engine (`panic_finding`),
        // so that no run hangs.
        fn condvar_wait<'a, T: Send + 'static>(
            cv: &Self::RawCondvar,
            g: Self::RawMutexGuard<'a, T>,
        ) -> Self::RawMutexGuard<'a, T> {
            let (g, waited) = cv
                .wait_timeout(g, STD_WAIT_LIMIT)
                .unwrap_or_else(|e| e.into_inner());
            if waited.timed_out() {
                drop(g);
                panic!(
                    "deadlock! a real thread waited {} s for a wake-up",
                    STD_WAIT_LIMIT.as_secs()
                );
            }
            g
        }
        fn smp_mb() {
            fence(SeqCst)
        }
        // x86: a locked RMW is already a full barrier and loads/stores are ordered
        // (TSO); keep the compiler honest. Elsewhere, real fences.
        fn smp_mb__after_atomic() {
            if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
                compiler_fence(SeqCst)
            } else {
                fence(SeqCst)
            }
        }
        fn smp_rmb() {
            if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
                compiler_fence(Acquire)
            } else {
                fence(Acquire)
            }
        }
        fn smp_wmb() {
            if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
                compiler_fence(Release)
            } else {
                fence(Release)
            }
        }
    }
}

/// loom: every interleaving up to a bound, C11 weak memory.
pub mod loom_backend {
    use super::*;
    use loom::sync::atomic::{fence, Ordering::*};

    pub struct Loom;

    backend_atomics!(loom: LoomAtomicI32, LoomAtomicU32, LoomAtomicU64; full = fence(SeqCst), rmw = AcqRel, dep = Acquire, relaxed = Relaxed, rel = Release, acq = Acquire);

    impl Backend for Loom {
        const NAME: &'static str = "loom";
        const MODEL_CHECKED: bool = true;
        sync_primitives!(loom: LoomAtomicI32, LoomAtomicU32, LoomAtomicU64);
        // loom and shuttle see a wait nobody ends as a deadlock themselves.
        fn condvar_wait<'a, T: Send + 'static>(
            cv: &Self::RawCondvar,
            g: Self::RawMutexGuard<'a, T>,
        ) -> Self::RawMutexGuard<'a, T> {
            cv.wait(g).unwrap_or_else(|e| e.into_inner())
        }
        fn smp_mb() {
            fence(SeqCst)
        }
        fn smp_mb__after_atomic() {
            fence(SeqCst)
        }
        fn smp_rmb() {
            fence(Acquire)
        }
        fn smp_wmb() {
            fence(Release)
        }
    }
}

/// shuttle: random, PCT and DFS schedules, sequentially consistent.
pub mod shuttle_backend {
    use super::*;
    use shuttle::sync::atomic::Ordering::*;

    pub struct Shuttle;

    backend_atomics!(shuttle: ShuttleAtomicI32, ShuttleAtomicU32, ShuttleAtomicU64; full = (), rmw = SeqCst, dep = SeqCst, relaxed = SeqCst, rel = SeqCst, acq = SeqCst);

    impl Backend for Shuttle {
        const NAME: &'static str = "shuttle";
        const MODEL_CHECKED: bool = true;
        sync_primitives!(shuttle: ShuttleAtomicI32, ShuttleAtomicU32, ShuttleAtomicU64);
        // loom and shuttle see a wait nobody ends as a deadlock themselves.
        fn condvar_wait<'a, T: Send + 'static>(
            cv: &Self::RawCondvar,
            g: Self::RawMutexGuard<'a, T>,
        ) -> Self::RawMutexGuard<'a, T> {
            cv.wait(g).unwrap_or_else(|e| e.into_inner())
        }
        fn smp_mb() {}
        fn smp_mb__after_atomic() {}
        fn smp_rmb() {}
        fn smp_wmb() {}
    }
}

pub use loom_backend::Loom;
pub use shuttle_backend::Shuttle;
pub use std_backend::Std;
