//! `ops`: one thread's op sequence on a small world, checked after the run against
//! the invariants (conservation at quiescence). Violations are values; the target
//! panics once, here, at its edge.
#![no_main]

use gupcheck_model::ops::Op;
use gupcheck_model::{run, scenario, Arch, Engine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<Op>| {
    let mut sc = scenario::munmap_vs_lockless_walker();
    sc.threads = vec![ops.into_iter().take(64).collect()];
    let cfg = sc.config(Arch::Rcu, &[]);
    let out = run(&sc, &cfg, &Engine::Std { iterations: 1 }).expect("catalogue layout fits");
    if let Some(f) = out.failure {
        panic!("{}", f.violation);
    }
});
