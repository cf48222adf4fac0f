//! `--shard K/N`: the K-th of N parts of a command's work, so that N machines
//! (a CI matrix, a Kubernetes Indexed Job, a Slurm array) share one run, and
//! `gupcheck merge` joins their reports. Matrix entries and selftests rows go
//! to shards by index modulo N, in the matrix's (or the table's) own order;
//! stress runs whole in every shard, each from its own seed.

use gupcheck_model::harness::artifact::{check_writable_dir, write_file_atomic};
use gupcheck_model::harness::expect::Entry;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// Shard `index` of `count`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// "K/N" with 1 <= K <= N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard '{s}' (use K/N with 1 <= K <= N, e.g. 2/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether item `i` (0-based, in the stable order) belongs to this shard.
    pub fn picks(self, i: usize) -> bool {
        i % self.count == self.index - 1
    }

    /// The items of `shard` (all of them for an unsharded run).
    pub fn select<T>(shard: Option<Shard>, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| shard.is_none_or(|s| s.picks(*i)))
            .map(|(_, t)| t)
            .collect()
    }

    /// How many of `total` items shard `index` of `count` holds.
    pub fn size(self, total: usize) -> usize {
        (0..total).filter(|&i| self.picks(i)).count()
    }

    /// The seed a stress run of `shard` draws from: `seed` itself for shard 1
    /// (and an unsharded run), seeds far apart for the others, so that N
    /// shards explore N different streams and `--seed` stays the one knob.
    pub fn seed(shard: Option<Shard>, seed: u64) -> u64 {
        let k = shard.map_or(0, |s| s.index as u64 - 1);
        seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let s = String::deserialize(d)?;
        Shard::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The matrix entries whose label contains one of `only` (all if none).
pub fn matching(matrix: &[Entry], only: &[String]) -> Vec<Entry> {
    matrix
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|o| e.label().contains(o.as_str())))
        .cloned()
        .collect()
}

/// What every report `gupcheck merge` reads holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Header {
    /// campaign | zoo | selftests | stress
    pub kind: String,
    /// The version that wrote it (the shards of one run share it).
    pub gupcheck: String,
    pub shard: Option<Shard>,
}

impl Header {
    pub fn new(kind: &str, shard: Option<Shard>) -> Header {
        Header {
            kind: kind.into(),
            gupcheck: env!("CARGO_PKG_VERSION").into(),
            shard,
        }
    }
}

/// The directory and name of a report file (`campaign.json`: the current
/// directory).
fn split(path: &Path) -> Result<(&Path, &str), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("bad report file name '{}'", path.display()))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    Ok((dir.unwrap_or(Path::new(".")), name))
}

/// Fails now, not after a long run, if the report cannot be written.
pub fn check_report_path(path: &Path) -> Result<(), String> {
    check_writable_dir(split(path)?.0)
}

/// Writes a JSON report to a temporary file and renames it into place, so a
/// reader (`gupcheck merge`) never sees half a report.
pub fn write_report<T: Serialize>(path: &Path, report: &T) -> Result<PathBuf, String> {
    let (dir, name) = split(path)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    write_file_atomic(dir, name, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_by_index_and_cover_everything_once() {
        let items: Vec<usize> = (0..10).collect();
        let mut seen = Vec::new();
        for k in 1..=3 {
            let s = Shard { index: k, count: 3 };
            let part = Shard::select(Some(s), items.clone());
            assert_eq!(part.len(), s.size(items.len()));
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, items);
        assert_eq!(Shard::select(None, items.clone()), items);
    }

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["0/2", "3/2", "x", "1/0", "2", "1/x", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
    }

    #[test]
    fn shard_seeds_differ_and_shard_one_keeps_the_seed() {
        let s = |k| Some(Shard { index: k, count: 4 });
        assert_eq!(Shard::seed(None, 7), 7);
        assert_eq!(Shard::seed(s(1), 7), 7);
        let seeds: Vec<u64> = (1..=4).map(|k| Shard::seed(s(k), 7)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{seeds:?}");
    }
}
