use gupcheck_model::{run, scenario, Arch, Engine, Mutation};
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = &args[1];
    let eng = &args[2];
    let arch = Arch::parse(&args[3]).unwrap();
    let muts: Vec<Mutation> = args[4..].iter().map(|m| Mutation::parse(m).unwrap()).collect();
    let sc = scenario::by_name(name).unwrap();
    let cfg = sc.config(arch, &muts);
    let e = match eng.as_str() {
        "loom1" => Engine::Loom { preemption_bound: Some(1) },
        "loom2" => Engine::Loom { preemption_bound: Some(2) },
        "loom3" => Engine::Loom { preemption_bound: Some(3) },
        "random" => Engine::ShuttleRandom { iterations: 10000, seed: 1 },
        "pct" => Engine::ShuttlePct { iterations: 10000, depth: 3, seed: 1 },
        "dfs" => Engine::ShuttleDfs { max_iterations: Some(200000) },
        _ => Engine::Std { iterations: 2000 },
    };
    let t = Instant::now();
    let o = run(&sc, &cfg, &e).unwrap();
    println!("{} {} {:?} iters={} {:?} {:?}", name, eng, arch, o.iterations, t.elapsed(), o.failure.as_ref().map(|f| f.violation.to_string()));
    if let Some(f) = o.failure { if std::env::var_os("TRACE").is_some() { for s in f.trace { println!("  t{} {} {:#x}", s.thread, s.name, s.arg); } } }
}
