//! A list of runs on a rayon pool, started in list order (the first runs
//! start first, so Ctrl-C leaves the tail of the list not run), each result
//! handed back as it finishes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

/// Runs `work` on every unit, `jobs` at once, until the list ends or `stop`
/// is set (runs under way finish); `done(i, result)` sees each result in the
/// order they finish. A run that panics ends the pool with an error, after
/// the runs under way.
pub fn in_order<U: Sync, R: Send>(
    jobs: usize,
    name: &str,
    units: &[U],
    stop: &AtomicBool,
    work: impl Fn(&U) -> R + Sync,
    done: impl FnMut(usize, R) + Send,
) -> Result<(), String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name({
            let name = name.to_string();
            move |i| format!("gupcheck-{name}-{i}")
        })
        // loom and shuttle run inside: deep model stacks.
        .stack_size(64 << 20)
        .build()
        .map_err(|e| format!("cannot start {jobs} {name} workers: {e}"))?;
    let next = AtomicUsize::new(0);
    let panicked = AtomicBool::new(false);
    let done = Mutex::new(done);
    pool.broadcast(|_| {
        let worker = || loop {
            if stop.load(SeqCst) || panicked.load(SeqCst) {
                return;
            }
            let i = next.fetch_add(1, SeqCst);
            let Some(u) = units.get(i) else {
                return;
            };
            let r = work(u);
            (done.lock().unwrap_or_else(|e| e.into_inner()))(i, r);
        };
        if catch_unwind(AssertUnwindSafe(worker)).is_err() {
            panicked.store(true, SeqCst);
        }
    });
    if panicked.load(SeqCst) {
        return Err(format!("a {name} worker panicked"));
    }
    Ok(())
}
