//! The kernel selftests table (`gupcheck selftests`): produced by running the
//! cases, it must equal the checked-in expectation `model/selftests.json`, and
//! the book's chapter on it (docs/src/selftests.md) must show exactly that table.

use gupcheck_model::harness::kselftest::cow as selftests;

use gupcheck_model::harness::kselftest::cow::Cell;

#[test]
fn the_table_matches_its_expectation_and_the_book() {
    let got = selftests::run_all();
    let expected = selftests::expected().unwrap();
    let diffs = selftests::differences(&got, &expected);
    assert!(diffs.is_empty(), "rows changed:\n{}", diffs.join("\n"));
    let chapter = include_str!("../../docs/src/selftests.md");
    assert!(
        chapter.contains(&selftests::markdown(&got)),
        "docs/src/selftests.md does not show the current `gupcheck selftests` table"
    );
}

/// cow.c and gup_longterm.c pass on a current kernel: every modelled case
/// passes in the latest preset but those upstream marks XFAIL, which fail
/// there, and the older eras fail some (the table shows history, not a
/// constant).
#[test]
fn latest_passes_everything_and_older_eras_do_not() {
    let t = selftests::run_all();
    let latest = t.presets.iter().position(|p| p == "latest").unwrap();
    for r in t.rows.iter().filter(|r| r.not_modelled.is_none()) {
        if r.xfail.is_some() {
            assert!(
                matches!(r.cells[latest], Cell::Fail(_)),
                "XFAIL {} / {} passes",
                r.case,
                r.backing
            );
        } else {
            assert_eq!(r.cells[latest], Cell::Pass, "{} / {}", r.case, r.backing);
        }
    }
    for (i, p) in t.presets.iter().enumerate().filter(|&(i, _)| i != latest) {
        assert!(
            t.rows
                .iter()
                .any(|r| matches!(r.cells.get(i), Some(Cell::Fail(_)))),
            "preset {p} fails nothing"
        );
    }
}

/// A changed row is reported: the comparison can fail.
#[test]
fn a_changed_row_is_a_difference() {
    let got = selftests::run_all();
    let mut expected = got.clone();
    let row = expected
        .rows
        .iter_mut()
        .find(|r| r.not_modelled.is_none())
        .unwrap();
    row.cells[0] = Cell::Fail("made up".into());
    assert_eq!(selftests::differences(&got, &expected).len(), 1);
    expected.rows.pop();
    assert_eq!(selftests::differences(&got, &expected).len(), 2);
}

/// cow.c's hugetlb A8 (fork with a R/W longterm pin) finds the mutation
/// `hugetlb_fork_ignores_pins` in every era with an early COW of pinned
/// hugetlb folios, and passes there without it.
#[test]
fn hugetlb_fork_ignoring_pins_fails_a8() {
    use gupcheck_model::{Mutation, PresetId};
    for backing in ["hugetlb 2048 kB", "hugetlb 1048576 kB"] {
        for p in [PresetId::V5_10, PresetId::V6_1, PresetId::Latest] {
            let run = |m: &[Mutation]| selftests::run_anon_case("A8", backing, p, m).unwrap();
            assert_eq!(run(&[]), Cell::Pass, "{backing} {p:?}");
            assert_eq!(
                run(&[Mutation::HugetlbForkIgnoresPins]),
                Cell::Fail("coherent pin".into()),
                "{backing} {p:?}"
            );
        }
    }
}
