//! herd7 litmus tests, in the C dialect of the Linux-kernel memory model
//! (tools/memory-model), for orderings the model checks under loom: each test
//! is the race of one matrix entry reduced to the accesses that order it, with
//! the result herd7 should give (`Sometimes` or `Never`) and why. They are
//! generated from the table `TESTS`, one `Litmus` per test; `render` adds what
//! herd7 wants around the two threads (the header, the initial state, each
//! thread's parameters and registers). gupcheck does not run herd7; a test
//! holds each expected result to the matrix's outcome for the same scenario,
//! preset and mutation: `Sometimes` where loom finds it, `Never` where the
//! entry is clean.
//!
//! The shared variables, one name each in every test:
//! `seq` is `mm->write_protect_seq.sequence`, `has_pinned` MMF_HAS_PINNED
//! (`mm->has_pinned` before 5.14), `refcount` and `pincount` the folio's
//! `_refcount` and `_pincount`, `ptl` the source PTE table's lock. Stand-ins,
//! as herd7 needs them:
//! - `s->sequence++` is a plain increment in the kernel; it is `WRITE_ONCE`
//!   here (KCSAN treats it as marked; a plain access would be a data race to
//!   herd7);
//! - herd7 does not model the `atomic_*_unless` family, so
//!   `atomic_add_return` stands in for a successful `folio_ref_try_add` /
//!   `page_ref_add_unless`: both are fully ordered;
//! - `set_bit` / `test_bit` / `atomic_set` / `atomic_read` of the flag are
//!   `WRITE_ONCE` / `READ_ONCE`: only their order matters;
//! - GUP_PIN_COUNTING_BIAS is scaled to 4, and the parent's mapping holds the
//!   one reference the folio starts with.

use crate::config::Mutation;
use crate::preset::PresetId;

/// What herd7 should answer for the `exists` clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Herd {
    /// Some execution satisfies it: the kernel allows the outcome.
    Sometimes,
    /// None does: the kernel forbids it.
    Never,
}

impl Herd {
    pub fn name(self) -> &'static str {
        match self {
            Herd::Sometimes => "Sometimes",
            Herd::Never => "Never",
        }
    }
}

/// One litmus test: the fork side (P0) and the GUP-fast side (P1) of a matrix
/// entry, the outcome asked about, and the expected answer with its reason.
#[derive(Clone, Debug)]
pub struct Litmus {
    /// herd7's test name (the `C` line; the file is `NAME.litmus`).
    pub name: &'static str,
    /// The scenarios whose matrix entries it states (both arch modes).
    pub scenarios: &'static [&'static str],
    pub preset: PresetId,
    pub mutation: Option<Mutation>,
    /// Shared variables that do not start at 0.
    pub init: &'static [(&'static str, i32)],
    /// P0: `copy_page_range()` of fork, up to its read of the pin state.
    pub fork: &'static [&'static str],
    /// P1: `gup_fast_fallback()`, from MMF_HAS_PINNED to `read_seqcount_retry()`.
    pub gup: &'static [&'static str],
    /// The outcome: fork saw no pin, and GUP-fast saw the count unchanged.
    pub exists: &'static str,
    pub result: Herd,
    pub why: &'static str,
}

/// The shared variables: name, C type, what it stands for.
const VARS: [(&str, &str, &str); 5] = [
    ("seq", "int", "mm->write_protect_seq.sequence"),
    (
        "has_pinned",
        "int",
        "MMF_HAS_PINNED (mm->has_pinned before 5.14)",
    ),
    ("refcount", "atomic_t", "folio->_refcount"),
    ("pincount", "atomic_t", "folio->_pincount"),
    ("ptl", "spinlock_t", "the source PTE table's lock"),
];

/// The scenarios of the `gup_fast_vs_fork` family.
const FIRST_PIN: &[&str] = &["gup_fast_vs_fork"];
const PINNED_MM: &[&str] = &["gup_fast_vs_fork_pinned_mm"];
const LARGE: &[&str] = &["gup_fast_vs_fork_thp", "gup_fast_vs_fork_thp_pte"];
/// From 5.19 a 2 MiB hugetlb folio has the THP's fork order too
/// (`copy_hugetlb_page_range`: `folio_get`, then `hugetlb_try_dup_anon_rmap`).
const LARGE_LATEST: &[&str] = &[
    "gup_fast_vs_fork_thp",
    "gup_fast_vs_fork_thp_pte",
    "gup_fast_vs_fork_hugetlb",
];

/// The table.
pub const TESTS: [Litmus; 9] = [
    Litmus {
        name: "GUPfast-vs-fork+first-pin+latest",
        scenarios: FIRST_PIN,
        preset: PresetId::Latest,
        mutation: None,
        init: &[("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "WRITE_ONCE(*has_pinned, 1);",
            "r3 = smp_load_acquire(seq);",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(3, refcount);",
            "smp_mb__after_atomic();",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Sometimes,
        why: "store buffering on the mm's first pin: nothing fully ordered stands between fork's seq store and its test_bit(MMF_HAS_PINNED) (smp_wmb orders stores, the PTL is an ACQUIRE, folio_get orders _refcount only), while GUP-fast sets the flag before its fully ordered grab and re-reads seq; each can miss the other's store",
    },
    Litmus {
        name: "GUPfast-vs-fork+first-pin+latest+fork-seq-mb",
        scenarios: FIRST_PIN,
        preset: PresetId::Latest,
        mutation: Some(Mutation::ForkSeqMb),
        init: &[("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "smp_mb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "WRITE_ONCE(*has_pinned, 1);",
            "r3 = smp_load_acquire(seq);",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(3, refcount);",
            "smp_mb__after_atomic();",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Never,
        why: "SB with a full barrier on each side: fork's smp_mb() after raw_write_seqcount_begin(), GUP-fast's fully ordered grab after its flag store; one of them sees the other",
    },
    Litmus {
        name: "GUPfast-vs-fork+pinned-mm+latest",
        scenarios: PINNED_MM,
        preset: PresetId::Latest,
        mutation: None,
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(refcount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "r3 = smp_load_acquire(seq);",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(3, refcount);",
            "smp_mb__after_atomic();",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ (0:r0=2 \\/ 0:r0=3) /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Never,
        why: "fork's folio_get (fb3d824d1a46, 5.19) is an RMW on the _refcount it then reads: coherence-before GUP-fast's RMWs, one of them reads from it and message passing (smp_wmb, then the fully ordered grab or smp_mb__after_atomic) makes GUP-fast see the odd seq; coherence-after them, fork's read sees the bias (CoWR). r0 of 2 or 3 is below the bias of 4: not pinned",
    },
    Litmus {
        name: "GUPfast-vs-fork+pinned-mm+6.0",
        scenarios: PINNED_MM,
        preset: PresetId::V6_0,
        mutation: None,
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(refcount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "r3 = READ_ONCE(*seq);",
            "smp_rmb();",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(3, refcount);",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ (0:r0=2 \\/ 0:r0=3) /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Never,
        why: "as on latest without GUP-fast's smp_mb__after_atomic (088b8aa537c2 is 6.1): where the relaxed bias add reads from fork's folio_get, read_seqcount_retry's smp_rmb orders that read before the seq re-read, and smp_wmb on fork's side completes the message passing",
    },
    Litmus {
        name: "GUPfast-vs-fork+pinned-mm+5.11",
        scenarios: PINNED_MM,
        preset: PresetId::V5_11,
        mutation: None,
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(refcount);",
            "atomic_inc(refcount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "WRITE_ONCE(*has_pinned, 1);",
            "r3 = READ_ONCE(*seq);",
            "smp_rmb();",
            "r2 = atomic_add_return(4, refcount);",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ 0:r0=1 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Sometimes,
        why: "5.11's copy_present_page reads has_pinned and page_maybe_dma_pinned before copy_present_pte's get_page: store buffering between fork's seq store and its _refcount load, and GUP-fast's fully ordered page_ref_add_unless(refs * bias) and its seq re-read",
    },
    Litmus {
        name: "GUPfast-vs-fork+large-folio+latest",
        scenarios: LARGE_LATEST,
        preset: PresetId::Latest,
        mutation: None,
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(pincount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "r3 = smp_load_acquire(seq);",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(1, pincount);",
            "smp_mb__after_atomic();",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ 0:r0=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Sometimes,
        why: "store buffering on a large folio (a THP in copy_huge_pmd/copy_present_pte, a hugetlb folio in copy_hugetlb_page_range): fork's folio_get is an RMW on _refcount, its check reads _pincount; if GUP-fast's grab does not read from fork's folio_get, nothing relates fork's seq store to its _pincount load, and GUP-fast's pincount store is fully ordered before its seq re-read: each can miss the other's store",
    },
    Litmus {
        name: "GUPfast-vs-fork+large-folio+latest+fork-seq-mb",
        scenarios: LARGE_LATEST,
        preset: PresetId::Latest,
        mutation: Some(Mutation::ForkSeqMb),
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "smp_mb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(pincount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "r3 = smp_load_acquire(seq);",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(1, pincount);",
            "smp_mb__after_atomic();",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ 0:r0=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Never,
        why: "SB with a full barrier on each side: fork's smp_mb() after raw_write_seqcount_begin(), GUP-fast's smp_mb__after_atomic() after the _pincount add (088b8aa537c2, 6.1)",
    },
    Litmus {
        name: "GUPfast-vs-fork+large-folio+6.0+fork-seq-mb",
        scenarios: LARGE,
        preset: PresetId::V6_0,
        mutation: Some(Mutation::ForkSeqMb),
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "smp_mb();",
            "spin_lock(ptl);",
            "atomic_inc(refcount);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(pincount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "r3 = READ_ONCE(*seq);",
            "smp_rmb();",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(1, pincount);",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ 0:r0=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Sometimes,
        why: "fork's smp_mb() alone is not enough before 6.1: GUP-fast's relaxed _pincount add is its last store, and smp_rmb does not order a store before a later load",
    },
    Litmus {
        name: "GUPfast-vs-fork+large-folio+5.11",
        scenarios: LARGE,
        preset: PresetId::V5_11,
        mutation: None,
        init: &[("has_pinned", 1), ("refcount", 1)],
        fork: &[
            "WRITE_ONCE(*seq, 1);",
            "smp_wmb();",
            "spin_lock(ptl);",
            "r4 = READ_ONCE(*has_pinned);",
            "r0 = atomic_read(pincount);",
            "atomic_inc(refcount);",
            "spin_unlock(ptl);",
        ],
        gup: &[
            "WRITE_ONCE(*has_pinned, 1);",
            "r3 = READ_ONCE(*seq);",
            "smp_rmb();",
            "r2 = atomic_add_return(1, refcount);",
            "atomic_add(1, pincount);",
            "smp_rmb();",
            "r1 = READ_ONCE(*seq);",
        ],
        exists: "0:r4=1 /\\ 0:r0=0 /\\ 1:r3=0 /\\ 1:r1=0",
        result: Herd::Sometimes,
        why: "5.11 reads has_pinned and the compound page's pincount before get_page, and GUP-fast's hpage_pincount_add has no barrier after it: store buffering, with no full barrier on either side",
    },
];

/// The scenarios that have litmus tests, in table order.
pub fn scenarios() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for t in &TESTS {
        for s in t.scenarios {
            if !v.contains(s) {
                v.push(s);
            }
        }
    }
    v
}

/// The tests of `scenario`, or why there are none (one line, naming the
/// scenarios that have some).
pub fn for_scenario(scenario: &str) -> Result<Vec<&'static Litmus>, String> {
    let tests: Vec<&Litmus> = TESTS
        .iter()
        .filter(|t| t.scenarios.contains(&scenario))
        .collect();
    if !tests.is_empty() {
        return Ok(tests);
    }
    let what = if crate::harness::scenario::by_name(scenario).is_ok() {
        format!("no litmus tests for scenario '{scenario}'")
    } else {
        format!("unknown scenario '{scenario}'")
    };
    Err(format!(
        "{what} (litmus tests exist for: {})",
        scenarios().join(", ")
    ))
}

/// The identifiers of a C line.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// Whether `w` is a register name (`r` and digits).
fn is_register(w: &str) -> bool {
    w.len() > 1 && w.starts_with('r') && w[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A paragraph as comment lines of at most `width` characters after " * ".
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

impl Litmus {
    pub fn file_name(&self) -> String {
        format!("{}.litmus", self.name)
    }

    /// The matrix entries it states, as `scenario / preset / mutation` (each
    /// in every arch mode the matrix has it).
    pub fn entries(&self) -> Vec<String> {
        let m = self.mutation.map_or("-", |m| m.name());
        self.scenarios
            .iter()
            .map(|s| format!("{s} / {} / {m}", self.preset.name()))
            .collect()
    }

    /// One thread: its parameters (the shared variables it names), its
    /// registers and its body.
    fn thread(&self, n: usize, body: &[&str]) -> String {
        let named = |v: &str| body.iter().any(|l| words(l).any(|w| w == v));
        let params: Vec<String> = VARS
            .iter()
            .filter(|(v, _, _)| named(v))
            .map(|(v, ty, _)| format!("{ty} *{v}"))
            .collect();
        let mut regs: Vec<&str> = body
            .iter()
            .flat_map(|l| words(l))
            .filter(|w| is_register(w))
            .collect();
        regs.sort_by_key(|r| r[1..].parse::<u32>().unwrap_or(0));
        regs.dedup();
        let mut s = format!("P{n}({})\n{{\n", params.join(", "));
        for r in &regs {
            s += &format!("\tint {r};\n");
        }
        if !regs.is_empty() {
            s += "\n";
        }
        for l in body {
            s += &format!("\t{l}\n");
        }
        s + "}\n"
    }

    /// The test as herd7 reads it.
    pub fn render(&self) -> String {
        let mut s = format!(
            "C {}\n\n(*\n * Result: {}\n *\n",
            self.name,
            self.result.name()
        );
        let header = [
            format!(
                "gupcheck: {} in model/expectations.json, each arch mode.",
                self.entries().join("; ")
            ),
            "P0 is fork: copy_page_range()'s raw_write_seqcount_begin(), the source PTL, the pin check of copy_present_ptes() / copy_huge_pmd(). P1 is GUP-fast: MMF_HAS_PINNED, raw_seqcount_try_begin(), the grab and the pin, read_seqcount_retry(). The outcome: fork saw no pin and shares the page, GUP-fast saw the count unchanged and keeps its pin.".to_string(),
            format!("Why {}: {}.", self.result.name(), self.why),
        ];
        for (i, para) in header.iter().enumerate() {
            if i > 0 {
                s += " *\n";
            }
            for l in wrap(para, 72) {
                s += &format!(" * {l}\n");
            }
        }
        s += " *\n";
        for (v, _, what) in VARS {
            s += &format!(" * {v}: {what}\n");
        }
        s += " * atomic_add_return() stands in for atomic_add_unless() (success).\n";
        s += " * GUP_PIN_COUNTING_BIAS is 4; the parent's mapping holds refcount 1.\n";
        s += " *)\n\n{\n";
        for (v, val) in self.init {
            let ty = VARS.iter().find(|x| x.0 == *v).map_or("int", |x| x.1);
            if ty == "atomic_t" {
                s += &format!("\tatomic_t {v} = ATOMIC_INIT({val});\n");
            } else {
                s += &format!("\t{ty} {v} = {val};\n");
            }
        }
        s += "}\n\n";
        s += &self.thread(0, self.fork);
        s += "\n";
        s += &self.thread(1, self.gup);
        s += &format!("\nexists ({})\n", self.exists);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::harness::expect::{matrix, Expect};

    /// The shape herd7 reads: `C name`, the comment, an initial-state block,
    /// P0 and P1 with their parameters, registers declared first, and an
    /// `exists` clause over registers the threads have.
    fn check_shape(t: &Litmus, text: &str) -> Result<(), String> {
        let mut lines = text.lines();
        let first = lines.next().ok_or("empty")?;
        if first != format!("C {}", t.name) || t.name.contains(char::is_whitespace) {
            return Err(format!("header line: {first}"));
        }
        let open = text.find("(*").ok_or("no comment")?;
        let close = text.find("*)").ok_or("comment not closed")?;
        if !(open < close && text[open..close].contains(&format!("Result: {}", t.result.name()))) {
            return Err("no Result line in the comment".into());
        }
        // herd7's comments nest: no other opening or closing inside.
        if text[open + 2..close].contains("(*") || text[close + 2..].contains("*)") {
            return Err("a comment delimiter inside the comment".into());
        }
        let rest = &text[close + 2..];
        let init_at = rest.find("\n{\n").ok_or("no initial-state block")?;
        let init_end = rest[init_at..]
            .find("\n}\n")
            .ok_or("init block not closed")?
            + init_at;
        for l in rest[init_at + 3..init_end].lines() {
            let l = l.trim();
            if !(l.ends_with(';') && l.contains(" = ")) {
                return Err(format!("init line: {l}"));
            }
        }
        let mut regs = Vec::new();
        let mut at = init_end;
        for p in ["P0(", "P1("] {
            let start = rest[at..]
                .find(&format!("\n{p}"))
                .ok_or(format!("no {p}"))?
                + at
                + 1;
            let end = rest[start..]
                .find("\n}\n")
                .ok_or(format!("{p} not closed"))?
                + start;
            let body = &rest[start..end];
            let params = &body[3..body.find(")\n{").ok_or(format!("{p} parameters"))?];
            for param in params.split(", ") {
                let (ty, name) = param.split_once(" *").ok_or(format!("parameter {param}"))?;
                if !VARS.iter().any(|v| v.0 == name && v.1 == ty) {
                    return Err(format!("{p} parameter {param}"));
                }
            }
            let mut declaring = true;
            for l in body.lines().skip(2) {
                let l = l.trim();
                if l.is_empty() {
                    declaring = false;
                    continue;
                }
                if !l.ends_with(';') {
                    return Err(format!("{p}: {l}"));
                }
                match l.strip_prefix("int ") {
                    Some(r) if declaring => {
                        regs.push(format!("{}:{}", &p[1..2], &r[..r.len() - 1]))
                    }
                    Some(_) => return Err(format!("{p}: declaration after a statement: {l}")),
                    None => declaring = false,
                }
            }
            at = end + "\n}\n".len();
        }
        let exists = rest[at..].trim();
        let clause = exists
            .strip_prefix("exists (")
            .and_then(|e| e.strip_suffix(')'))
            .ok_or(format!("exists clause: {exists}"))?;
        if clause.matches('(').count() != clause.matches(')').count() {
            return Err(format!("unbalanced exists clause: {exists}"));
        }
        for atom in clause
            .split(['/', '\\', '(', ')', ' '])
            .filter(|a| a.contains('='))
        {
            let (reg, val) = atom.split_once('=').unwrap();
            if !regs.iter().any(|r| r == reg) || val.parse::<i32>().is_err() {
                return Err(format!("exists names {atom}, not a register of P0/P1"));
            }
        }
        Ok(())
    }

    #[test]
    fn every_test_has_the_litmus_shape() {
        let mut names = Vec::new();
        for t in &TESTS {
            let text = t.render();
            check_shape(t, &text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", t.name));
            assert!(!names.contains(&t.name), "two tests named {}", t.name);
            names.push(t.name);
        }
        // The checker refuses what herd7 would.
        let t = &TESTS[0];
        let bad = t.render().replace("exists (", "exists ((");
        assert!(check_shape(t, &bad).is_err());
        let bad = t.render().replace("\tint r4;\n", "");
        assert!(check_shape(t, &bad).is_err());
    }

    /// Each expected result is the matrix's outcome for its scenario, preset
    /// and mutation: Sometimes where the entry must be found (loom only, the
    /// sequentially consistent engines missing it), Never where it is clean.
    #[test]
    fn every_expected_result_is_the_matrix_outcome() {
        let matrix = matrix();
        for t in &TESTS {
            for s in t.scenarios {
                let entries: Vec<_> = matrix
                    .iter()
                    .filter(|e| {
                        e.scenario == *s
                            && e.preset == t.preset
                            && e.mutation == t.mutation
                            && e.tolerate.is_empty()
                    })
                    .collect();
                assert!(!entries.is_empty(), "{}: no matrix entry for {s}", t.name);
                let rcu = entries.iter().any(|e| e.arch == Arch::Rcu);
                assert!(rcu, "{}: no rcu entry for {s}", t.name);
                for e in entries {
                    match t.result {
                        Herd::Sometimes => {
                            assert_ne!(e.expect, Expect::Clean, "{}: {}", t.name, e.label());
                            assert_eq!(e.found_by, ["loom"], "{}: {}", t.name, e.label());
                            assert!(e.missed_by.iter().any(|m| m == "shuttle-pct"));
                        }
                        Herd::Never => {
                            assert_eq!(e.expect, Expect::Clean, "{}: {}", t.name, e.label())
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scenarios_without_tests_are_refused_with_the_list() {
        assert_eq!(for_scenario("gup_fast_vs_fork").unwrap().len(), 2);
        assert_eq!(for_scenario("gup_fast_vs_fork_thp_pte").unwrap().len(), 4);
        let e = for_scenario("gup_fast_vs_munmap").unwrap_err();
        assert!(
            e.starts_with("no litmus tests for scenario 'gup_fast_vs_munmap'"),
            "{e}"
        );
        assert!(
            e.contains("gup_fast_vs_fork, gup_fast_vs_fork_pinned_mm"),
            "{e}"
        );
        let e = for_scenario("nope").unwrap_err();
        assert!(
            e.starts_with("unknown scenario 'nope'") && !e.contains('\n'),
            "{e}"
        );
    }
}
