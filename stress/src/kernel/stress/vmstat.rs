//! The pin counters of /proc/vmstat: `nr_foll_pin_acquired` and
//! `nr_foll_pin_released` count every FOLL_PIN reference taken and dropped,
//! system-wide. At a quiescent point of the run (no registration, no I/O, no
//! child) their difference must be back where it was before the run; the
//! counters are shared with every other process, so a difference that stays
//! is blamed on others only when they provably pinned meanwhile: the counters
//! moved during an interval in which this process did nothing.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    pub acquired: u64,
    pub released: u64,
}

impl Pins {
    /// Pins held system-wide.
    pub fn held(&self) -> i64 {
        self.acquired as i64 - self.released as i64
    }
}

pub fn parse(text: &str) -> Result<Pins, String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<u64>().ok())?
            })
            .ok_or_else(|| format!("/proc/vmstat has no {name} (a kernel before 5.8?)"))
    };
    Ok(Pins {
        acquired: field("nr_foll_pin_acquired")?,
        released: field("nr_foll_pin_released")?,
    })
}

/// One quiescent point's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The pins held are the baseline's.
    Balanced,
    /// They are not, but other processes pinned or unpinned during the idle
    /// interval (`moved` counts, acquired plus released): tolerated.
    Others { delta: i64, moved: u64 },
    /// They are not, and nothing else moved: pins this run took and never
    /// released (or a pin another process took during the run and still
    /// holds, which no counter tells apart).
    Unbalanced { delta: i64 },
}

/// `settled`: the counters after the run's own releases had time to finish;
/// `idle`: the counters at the start and end of an interval in which this
/// process did nothing (the run waits up to 5 s for them to move).
pub fn judge(baseline_held: i64, settled: Pins, idle: (Pins, Pins)) -> Balance {
    let delta = settled.held() - baseline_held;
    if delta == 0 {
        return Balance::Balanced;
    }
    let moved = (idle.1.acquired - idle.0.acquired) + (idle.1.released - idle.0.released);
    if moved > 0 {
        Balance::Others { delta, moved }
    } else {
        Balance::Unbalanced { delta }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece of this machine's /proc/vmstat (6.18).
    const RECORDED: &str = "\
nr_unevictable 0
nr_foll_pin_acquired 79511
nr_foll_pin_released 79507
nr_kernel_stack 9424
";

    #[test]
    fn counters_parse_and_a_missing_one_is_an_error() {
        let p = parse(RECORDED).unwrap();
        assert_eq!((p.acquired, p.released, p.held()), (79511, 79507, 4));
        let e = parse("nr_free_pages 3\n").unwrap_err();
        assert!(e.contains("nr_foll_pin_acquired"), "{e}");
    }

    #[test]
    fn balance_blames_others_only_when_they_moved() {
        let at = |a, r| Pins {
            acquired: a,
            released: r,
        };
        let still = (at(90, 86), at(90, 86));
        assert_eq!(judge(4, at(90, 86), still), Balance::Balanced);
        assert_eq!(
            judge(4, at(95, 86), still),
            Balance::Unbalanced { delta: 5 }
        );
        assert_eq!(
            judge(4, at(95, 86), (at(95, 86), at(97, 87))),
            Balance::Others { delta: 5, moved: 3 }
        );
    }
}
