//! Real threads on the std backend: no schedule to record, real timing.

use super::*;
pub(super) fn run_std(
    sc: &Arc<Scenario>,
    cfg: &Arc<WorldConfig>,
    iterations: usize,
    deadline: Option<Instant>,
    hits: &Arc<Tally>,
) -> (u64, Option<Failure>) {
    for i in 0..iterations {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (i as u64, None);
        }
        let w =
            Arc::new(World::<Std>::build((**cfg).clone(), &sc.layout).expect("layout validated"));
        if let Err((v, trace)) = execute(&w, sc, hits) {
            return (
                i as u64 + 1,
                Some(Failure {
                    violation: *v,
                    iteration: i as u64,
                    trace,
                    schedule: None,
                }),
            );
        }
    }
    (iterations as u64, None)
}
