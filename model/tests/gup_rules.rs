//! The GUP API's rules, one test per flag rule and per return-value rule, each
//! across the eras where it differs (KERNEL.md §2, the seed patch, and the 5.7 /
//! 5.11 sources). Sequential, std backend.

use gupcheck_model::backend::{KAtomic, Std};
use gupcheck_model::flags::{Flag, Foll};
use gupcheck_model::ghost::{take_steps, Ctx};
use gupcheck_model::state::layout::{Layout, Populate, Region};
use gupcheck_model::state::mem::{pg, Zone};
use gupcheck_model::types::Errno;
use gupcheck_model::types::Pfn;
use gupcheck_model::types::PAGE_SIZE;
use gupcheck_model::{Arch, PresetId, World, WorldConfig};

use PresetId::*;

const P: u64 = PAGE_SIZE;
const EINVAL: i64 = -(Errno::EINVAL as i64);
const EFAULT: i64 = -(Errno::EFAULT as i64);
const ENOSYS: i64 = -(Errno::ENOSYS as i64);
const EOVERFLOW: i64 = -(Errno::EOVERFLOW as i64);

fn cfg(preset: PresetId) -> WorldConfig {
    WorldConfig {
        fanout_bits: 2,
        nr_frames: 96,
        nr_tables: 16,
        preset,
        trace: false,
        ..WorldConfig::small(Arch::Rcu)
    }
}

/// Pages 0..4 anonymous and populated, 4..8 never faulted, 8..12 the zero page.
fn world(preset: PresetId) -> World<Std> {
    World::build(
        cfg(preset),
        &Layout::one(vec![
            Region::anon(0, 4, Populate::Anon),
            Region::anon(4, 4, Populate::None),
            Region::anon(8, 4, Populate::ZeroPage),
        ]),
    )
    .unwrap()
}

fn ctx() -> Ctx {
    Ctx::new(0, 1, false)
}

fn f(flags: &[Flag]) -> Foll {
    Foll::of(flags)
}

/// Runs `call` on a fresh world of each preset and compares with `want`.
fn per_era(want: &[(PresetId, i64)], call: impl Fn(&World<Std>, &mut Ctx, &mut Vec<Pfn>) -> i64) {
    for &(p, expected) in want {
        let w = world(p);
        let mut c = ctx();
        let mut pages = Vec::new();
        let got = call(&w, &mut c, &mut pages);
        assert_eq!(got, expected, "preset {}", p.name());
        if got > 0 {
            assert_eq!(
                pages.len() as i64,
                got,
                "preset {}: prefix filled",
                p.name()
            );
        }
    }
}

#[test]
fn get_user_pages_refuses_foll_pin_in_every_era() {
    let all = [
        (Seed, EINVAL),
        (V5_7, EINVAL),
        (V5_11, EINVAL),
        (V6_1, EINVAL),
        (Latest, EINVAL),
    ];
    per_era(&all, |w, c, p| {
        w.get_user_pages(c, 0, 1, f(&[Flag::Pin]), Some(p)).unwrap()
    });
    per_era(&all, |w, c, p| {
        w.get_user_pages_fast(c, 0, 1, f(&[Flag::Pin]), Some(p))
            .unwrap()
    });
    per_era(&all, |w, c, p| {
        w.get_user_pages_remote(c, 0, 0, 1, f(&[Flag::Pin]), Some(p), None)
            .unwrap()
    });
}

#[test]
fn get_user_pages_longterm_is_refused_from_5_11() {
    // 5.7 accepted FOLL_LONGTERM on get_user_pages; is_valid_gup_flags (5.10
    // cycle) refuses it; 6.3 refuses LONGTERM without PIN.
    per_era(
        &[
            (Seed, 1),
            (V5_7, 1),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, EINVAL),
        ],
        |w, c, p| {
            w.get_user_pages(c, 0, 1, f(&[Flag::Longterm]), Some(p))
                .unwrap()
        },
    );
}

#[test]
fn pin_user_pages_refuses_foll_get_with_the_eras_result() {
    // The seed's pin_user_pages is get_user_pages: FOLL_GET passes. 6.3+ pin_*
    // wrappers return 0 on invalid arguments.
    per_era(
        &[
            (Seed, 1),
            (V5_7, EINVAL),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, 0),
        ],
        |w, c, p| w.pin_user_pages(c, 0, 1, f(&[Flag::Get]), Some(p)).unwrap(),
    );
    // The seed's fast path takes WRITE | LONGTERM | PIN only: FOLL_GET is refused.
    per_era(
        &[
            (Seed, EINVAL),
            (V5_7, EINVAL),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, EINVAL),
        ],
        |w, c, p| {
            w.pin_user_pages_fast(c, 0, 1, f(&[Flag::Get]), Some(p))
                .unwrap()
        },
    );
}

#[test]
fn pin_user_pages_without_a_pages_array_is_refused_from_6_1() {
    per_era(&[(V6_1, EINVAL), (Latest, 0)], |w, c, _| {
        w.pin_user_pages(c, 0, 1, Foll::NONE, None).unwrap()
    });
}

#[test]
fn the_fast_path_flag_mask_is_the_eras() {
    // The seed patch: WRITE | LONGTERM | PIN only; FOLL_FORCE from 5.7.
    per_era(
        &[
            (Seed, EINVAL),
            (V5_7, 1),
            (V5_11, 1),
            (V6_1, 1),
            (Latest, 1),
        ],
        |w, c, p| {
            w.get_user_pages_fast(c, 0, 1, f(&[Flag::Force]), Some(p))
                .unwrap()
        },
    );
    // FOLL_NOFAULT (5.16) joins the mask in 6.1.
    per_era(&[(V6_1, 1), (Latest, 1)], |w, c, p| {
        w.get_user_pages_fast(c, 0, 1, f(&[Flag::Nofault]), Some(p))
            .unwrap()
    });
    // A flag outside every mask.
    per_era(
        &[
            (Seed, EINVAL),
            (V5_7, EINVAL),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, EINVAL),
        ],
        |w, c, p| {
            w.get_user_pages_fast(c, 0, 1, f(&[Flag::Dump]), Some(p))
                .unwrap()
        },
    );
}

#[test]
fn internal_flags_from_a_caller_are_refused_in_6_3_and_later() {
    per_era(&[(Latest, EINVAL)], |w, c, p| {
        w.get_user_pages(c, 0, 1, f(&[Flag::Touch]), Some(p))
            .unwrap()
    });
    per_era(&[(Latest, 0)], |w, c, p| {
        w.pin_user_pages(c, 0, 1, f(&[Flag::Remote]), Some(p))
            .unwrap()
    });
}

#[test]
fn fast_only_variants_exist_from_5_9_and_never_return_an_error_before_6_3() {
    per_era(
        &[
            (Seed, ENOSYS),
            (V5_7, ENOSYS),
            (V5_11, 0),
            (V6_1, 0),
            (Latest, 0),
        ],
        |w, c, p| {
            w.pin_user_pages_fast_only(c, 0, 1, f(&[Flag::Get]), Some(p))
                .unwrap()
        },
    );
    // An unmapped page: nothing taken, no fallback, no error.
    per_era(&[(V5_11, 0), (V6_1, 0), (Latest, 0)], |w, c, p| {
        w.get_user_pages_fast_only(c, 4 * P, 1, Foll::NONE, Some(p))
            .unwrap()
    });
}

#[test]
fn unlocked_variants_refuse_longterm_before_6_3() {
    per_era(
        &[
            (Seed, EINVAL),
            (V5_7, EINVAL),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, EINVAL),
        ],
        |w, c, p| {
            w.get_user_pages_unlocked(c, 0, 1, Some(p), f(&[Flag::Longterm]))
                .unwrap()
        },
    );
    // pin_user_pages_unlocked appeared in 5.8; with LONGTERM it was refused until
    // 6.3 (it went through get_user_pages_unlocked).
    per_era(
        &[
            (Seed, ENOSYS),
            (V5_7, ENOSYS),
            (V5_11, EINVAL),
            (V6_1, EINVAL),
            (Latest, 1),
        ],
        |w, c, p| {
            w.pin_user_pages_unlocked(c, 0, 1, Some(p), f(&[Flag::Longterm]))
                .unwrap()
        },
    );
}

#[test]
fn remote_longterm_with_locked_is_refused_before_6_3() {
    per_era(
        &[(V5_7, EINVAL), (V5_11, EINVAL), (V6_1, EINVAL), (Latest, 1)],
        |w, c, p| {
            let mut locked = 1;
            w.pin_user_pages_remote(c, 0, 0, 1, f(&[Flag::Longterm]), Some(p), Some(&mut locked))
                .unwrap()
        },
    );
}

#[test]
fn get_user_pages_locked_refuses_pin_only_from_5_8() {
    per_era(
        &[(V5_7, 1), (V5_11, EINVAL), (V6_1, EINVAL), (Latest, ENOSYS)],
        |w, c, p| {
            let mut locked = 1;
            w.get_user_pages_locked(c, 0, 1, f(&[Flag::Pin]), Some(p), &mut locked)
                .unwrap()
        },
    );
}

#[test]
fn nr_pages_zero_returns_zero() {
    let all = [(Seed, 0), (V5_7, 0), (V5_11, 0), (V6_1, 0), (Latest, 0)];
    per_era(&all, |w, c, p| {
        w.get_user_pages_fast(c, 0, 0, Foll::NONE, Some(p)).unwrap()
    });
    per_era(&all, |w, c, p| {
        w.get_user_pages(c, 0, 0, Foll::NONE, Some(p)).unwrap()
    });
    per_era(
        &[(Seed, 0), (V5_7, 0), (V5_11, 0), (V6_1, 0), (Latest, 0)],
        |w, c, p| w.pin_user_pages(c, 0, 0, Foll::NONE, Some(p)).unwrap(),
    );
}

#[test]
fn a_negative_count_is_a_huge_length_on_the_fast_path() {
    // (unsigned long)nr_pages << PAGE_SHIFT: from address 0 the end lies past the
    // address space (-EFAULT); from higher up it wraps (0, or -EOVERFLOW in 6.3+).
    per_era(
        &[
            (V5_7, EFAULT),
            (V5_11, EFAULT),
            (V6_1, EFAULT),
            (Latest, EFAULT),
        ],
        |w, c, p| {
            w.get_user_pages_fast(c, 0, -3, Foll::NONE, Some(p))
                .unwrap()
        },
    );
    per_era(
        &[(V5_7, 0), (V5_11, 0), (V6_1, 0), (Latest, EOVERFLOW)],
        |w, c, p| {
            w.get_user_pages_fast(c, 8 * P, -3, Foll::NONE, Some(p))
                .unwrap()
        },
    );
}

#[test]
fn get_user_pages_fast_refuses_longterm_from_5_11() {
    // 5.7 let FOLL_LONGTERM through get_user_pages_fast; is_valid_gup_flags()
    // refuses it in 5.11 and 6.1; 6.3 refuses LONGTERM without PIN.
    per_era(
        &[(V5_7, 1), (V5_11, EINVAL), (V6_1, EINVAL), (Latest, EINVAL)],
        |w, c, p| {
            w.get_user_pages_fast(c, 0, 1, f(&[Flag::Longterm]), Some(p))
                .unwrap()
        },
    );
}

#[test]
fn a_dropped_lock_is_reported_through_locked() {
    let layout = Layout::one(vec![
        Region::anon(0, 1, Populate::Swapped),
        Region::anon(1, 1, Populate::Anon),
    ]);
    for p in [V5_7, V5_11, Latest] {
        let w = World::<Std>::build(cfg(p), &layout).unwrap();
        let mut c = ctx();
        let mut pages = Vec::new();
        let mut locked = 1;
        let r = w
            .get_user_pages_remote(
                &mut c,
                0,
                P,
                1,
                Foll::NONE,
                Some(&mut pages),
                Some(&mut locked),
            )
            .unwrap();
        assert_eq!((r, locked), (1, 1), "{}", p.name());
        let r = w
            .get_user_pages_remote(
                &mut c,
                0,
                0,
                1,
                Foll::NONE,
                Some(&mut pages),
                Some(&mut locked),
            )
            .unwrap();
        assert_eq!(
            (r, locked),
            (1, 0),
            "{}: the swap-in dropped the lock",
            p.name()
        );
    }
}

#[test]
fn an_overflowing_range_is_zero_before_6_3_and_eoverflow_after() {
    per_era(
        &[(V5_7, 0), (V5_11, 0), (V6_1, 0), (Latest, EOVERFLOW)],
        |w, c, p| {
            w.get_user_pages_fast(c, u64::MAX - P, 4, Foll::NONE, Some(p))
                .unwrap()
        },
    );
}

#[test]
fn a_range_past_the_address_space_is_efault() {
    per_era(&[(V5_7, EFAULT), (Latest, EFAULT)], |w, c, p| {
        let top = w.cfg.va_size();
        w.get_user_pages_fast(c, top - P, 2, Foll::NONE, Some(p))
            .unwrap()
    });
}

#[test]
fn an_unmapped_address_is_efault_and_a_hole_ends_a_prefix() {
    let all = [
        (Seed, EFAULT),
        (V5_7, EFAULT),
        (V5_11, EFAULT),
        (V6_1, EFAULT),
        (Latest, EFAULT),
    ];
    per_era(&all, |w, c, p| {
        w.get_user_pages_fast(c, 20 * P, 1, Foll::NONE, Some(p))
            .unwrap()
    });
    per_era(&all, |w, c, p| {
        w.get_user_pages(c, 20 * P, 1, Foll::NONE, Some(p)).unwrap()
    });
    // Pages 0..12 are mapped, 12.. are not: 2 from page 10, then the hole.
    let prefix = [(Seed, 2), (V5_7, 2), (V5_11, 2), (V6_1, 2), (Latest, 2)];
    per_era(&prefix, |w, c, p| {
        w.pin_user_pages_fast(c, 10 * P, 4, Foll::NONE, Some(p))
            .unwrap()
    });
}

#[test]
fn an_unaligned_start_is_rounded_down() {
    per_era(&[(V5_7, 1), (Latest, 1)], |w, c, p| {
        let r = w
            .get_user_pages_fast(c, 2 * P + 123, 1, Foll::NONE, Some(p))
            .unwrap();
        let want = w
            .walk_lockless(&mut Ctx::new(9, 0, false), 0, 2 * P)
            .unwrap()
            .unwrap()
            .pte
            .pfn();
        assert_eq!(p[0], want);
        r
    });
}

#[test]
fn the_slow_path_faults_pages_in() {
    // Pages 4..8 were never touched: a write pin faults them in.
    per_era(
        &[(Seed, 3), (V5_7, 3), (V5_11, 3), (V6_1, 3), (Latest, 3)],
        |w, c, p| {
            w.pin_user_pages_fast(c, 4 * P, 3, f(&[Flag::Write]), Some(p))
                .unwrap()
        },
    );
    // FOLL_NOFAULT does not.
    per_era(&[(V6_1, EFAULT), (Latest, EFAULT)], |w, c, p| {
        w.get_user_pages_fast(c, 4 * P, 1, f(&[Flag::Nofault]), Some(p))
            .unwrap()
    });
}

#[test]
fn a_write_pin_of_a_read_only_vma_is_efault() {
    let mut r = Region::anon(0, 2, Populate::Anon);
    r.writable = false;
    for p in [V5_7, Latest] {
        let w = World::<Std>::build(cfg(p), &Layout::one(vec![r.clone()])).unwrap();
        let mut c = ctx();
        let mut pages = Vec::new();
        assert_eq!(
            w.pin_user_pages(&mut c, 0, 1, f(&[Flag::Write]), Some(&mut pages))
                .unwrap(),
            EFAULT
        );
        assert_eq!(
            w.pin_user_pages(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
                .unwrap(),
            1
        );
    }
}

/// The refcount a pin of one small page adds, per era.
fn small_pin_delta(p: PresetId, fast: bool) -> i32 {
    let w = world(p);
    let mut c = ctx();
    let mut pages = Vec::new();
    let before = w
        .mem
        .folio_ref_count(w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn());
    let r = if fast {
        w.pin_user_pages_fast(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
            .unwrap()
    } else {
        w.pin_user_pages(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
            .unwrap()
    };
    assert_eq!(r, 1);
    w.mem.folio_ref_count(pages[0]) - before
}

#[test]
fn a_pin_adds_the_bias_from_5_7_and_a_plain_reference_in_the_seed() {
    for fast in [true, false] {
        assert_eq!(small_pin_delta(Seed, fast), 1);
        for p in [V5_7, V5_11, V6_1, Latest] {
            assert_eq!(small_pin_delta(p, fast), 1024, "{}", p.name());
        }
    }
}

#[test]
fn the_seeds_unlocked_path_returns_foll_pin_pages_without_a_reference() {
    // Only get_user_pages, _remote and _fast refuse FOLL_PIN in the seed, and
    // __get_user_pages_locked adds no FOLL_GET for it.
    let w = world(Seed);
    let mut c = ctx();
    let mut pages = Vec::new();
    let pfn = w.walk_lockless(&mut c, 0, 0).unwrap().unwrap().pte.pfn();
    let r = w
        .get_user_pages_unlocked(&mut c, 0, 1, Some(&mut pages), f(&[Flag::Pin]))
        .unwrap();
    assert_eq!(r, 1);
    assert_eq!(pages, vec![pfn]);
    assert_eq!(w.mem.folio_ref_count(pfn), 1, "no reference taken");
    // From 5.11 (and for get_user_pages_locked from 5.8) that call is refused
    // elsewhere; 6.3 refuses the internal flag.
    per_era(&[(Latest, EINVAL)], |w, c, p| {
        w.get_user_pages_unlocked(c, 0, 1, Some(p), f(&[Flag::Pin]))
            .unwrap()
    });
}

#[test]
fn a_pin_of_the_zero_page_is_a_no_op_from_6_5() {
    for (p, delta) in [(V6_1, 1024), (Latest, 0)] {
        let w = world(p);
        let mut c = ctx();
        let mut pages = Vec::new();
        let z = w.mem.zero_pfn;
        let before = w.mem.folio_ref_count(z);
        assert_eq!(
            w.pin_user_pages(&mut c, 8 * P, 1, Foll::NONE, Some(&mut pages))
                .unwrap(),
            1
        );
        assert_eq!(pages, vec![z]);
        assert_eq!(w.mem.folio_ref_count(z) - before, delta, "{}", p.name());
        w.unpin_user_pages(&mut c, &pages).unwrap();
        assert_eq!(w.mem.folio_ref_count(z), before);
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn a_longterm_pin_migrates_what_the_era_may_not_pin() {
    // Frames 1..5 are CMA, 6..7 movable. The page tables take frames 1..4, so
    // page 0 lands in CMA and pages 1..2 in ZONE_MOVABLE.
    for (p, cma_moved, movable_moved) in [
        // The seed counts pins as gets: the pins dropped before migrating are gets.
        (Seed, true, false),
        (V5_11, true, false),
        (V6_1, true, true),
        (Latest, true, true),
    ] {
        let mut cf = cfg(p);
        cf.cma_frames = 5;
        cf.movable_frames = 2;
        let w = World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 3, Populate::Anon)]))
            .unwrap();
        let mut c = ctx();
        let zone = |w: &World<Std>, a| {
            w.mem
                .frame(
                    w.walk_lockless(&mut Ctx::new(9, 0, false), 0, a)
                        .unwrap()
                        .unwrap()
                        .pte
                        .pfn(),
                )
                .zone
        };
        assert_eq!(zone(&w, 0), Zone::Cma);
        assert_eq!(zone(&w, P), Zone::Movable);
        let v = w.user_access(&mut c, 0, 0, true).unwrap().unwrap();
        let mut pages = Vec::new();
        let r = w
            .pin_user_pages(
                &mut c,
                0,
                2,
                f(&[Flag::Longterm, Flag::Write]),
                Some(&mut pages),
            )
            .unwrap();
        assert_eq!(r, 2, "{}", p.name());
        assert_eq!(
            w.mem.frame(pages[0]).zone != Zone::Cma,
            cma_moved,
            "{}",
            p.name()
        );
        assert_eq!(
            w.mem.frame(pages[1]).zone != Zone::Movable,
            movable_moved,
            "{}",
            p.name()
        );
        // The data moved with the page, and the pinned page is the mapped one.
        assert_eq!(w.mem.read_data(pages[0], 0), v);
        assert_eq!(zone(&w, 0), w.mem.frame(pages[0]).zone);
        w.unpin_user_pages(&mut c, &pages).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

/// Before 5.10 `get_user_pages(FOLL_LONGTERM)` is valid: the references that
/// `check_and_migrate_movable_pages()` drops before migrating are gets
/// (`put_page`), not pins, even in the eras that count pins.
#[test]
fn a_longterm_get_drops_gets_when_it_migrates() {
    for p in [V5_7, V5_8] {
        let mut cf = cfg(p);
        cf.cma_frames = 5;
        let w = World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)]))
            .unwrap();
        let mut c = ctx();
        let mut pages = Vec::new();
        let r = w
            .get_user_pages(&mut c, 0, 1, f(&[Flag::Longterm]), Some(&mut pages))
            .unwrap();
        assert_eq!(r, 1, "{}", p.name());
        assert_ne!(w.mem.frame(pages[0]).zone, Zone::Cma, "{}", p.name());
        assert_eq!(
            w.mem.frame(pages[0]).pincount.read_once(),
            0,
            "{}",
            p.name()
        );
        w.put_page(&mut c, pages[0]).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn a_failed_migration_keeps_the_cma_page_before_5_13_and_fails_after() {
    for (p, want) in [(V5_11, 1), (Latest, -(Errno::ENOMEM as i64))] {
        let mut cf = cfg(p);
        cf.cma_frames = 5;
        let w = World::<Std>::build(cf, &Layout::one(vec![Region::anon(0, 1, Populate::Anon)]))
            .unwrap();
        let mut c = ctx();
        // Someone else holds the page: migration cannot move it.
        let mut held = Vec::new();
        assert_eq!(
            w.get_user_pages_fast(&mut c, 0, 1, Foll::NONE, Some(&mut held))
                .unwrap(),
            1
        );
        let mut pages = Vec::new();
        let r = w
            .pin_user_pages(&mut c, 0, 1, f(&[Flag::Longterm]), Some(&mut pages))
            .unwrap();
        assert_eq!(r, want, "{}", p.name());
        if r > 0 {
            assert_eq!(
                w.mem.frame(pages[0]).zone,
                Zone::Cma,
                "kept, pinned, in CMA"
            );
            w.unpin_user_pages(&mut c, &pages).unwrap();
        }
        w.put_page(&mut c, held[0]).unwrap();
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn releases_must_match_and_counters_come_back() {
    for p in [V5_7, V6_1, Latest] {
        let w = world(p);
        let mut c = ctx();
        let mut pinned = Vec::new();
        let mut got = Vec::new();
        assert_eq!(
            w.pin_user_pages_fast(&mut c, 0, 3, f(&[Flag::Write]), Some(&mut pinned))
                .unwrap(),
            3
        );
        assert_eq!(
            w.get_user_pages_fast(&mut c, 3 * P, 1, Foll::NONE, Some(&mut got))
                .unwrap(),
            1
        );
        assert!(pinned.iter().all(|&pg| w.page_maybe_dma_pinned(pg)));
        // An unpin of a get is refused as a mismatch, before touching a counter.
        let v = w.unpin_user_page(&mut c, got[0]).unwrap_err();
        assert_eq!(v.invariant, gupcheck_model::Invariant::MatchedRelease);
        w.unpin_user_pages_dirty_lock(&mut c, &pinned, true)
            .unwrap();
        for &g in &got {
            w.put_page(&mut c, g).unwrap();
        }
        assert!(!w.page_maybe_dma_pinned(pinned[0]));
        assert!(
            w.mem.frame(pinned[0]).flags.read_once() & gupcheck_model::state::mem::pg::DIRTY != 0
        );
        assert_eq!(c.ledger.pin_acquired, 3);
        assert_eq!(c.ledger.pin_released, 3);
        w.check_quiescent(&c.ledger).unwrap();
    }
}

#[test]
fn a_swap_in_drops_mmap_lock_and_retries_only_when_the_caller_allows_it() {
    let layout = Layout::one(vec![
        Region::anon(0, 2, Populate::Swapped),
        Region::anon(2, 1, Populate::Anon),
    ]);
    for p in [V5_7, Latest] {
        take_steps();
        let w = World::<Std>::build(cfg(p), &layout).unwrap();
        let mut c = Ctx::new(0, 1, true);
        let mut pages = Vec::new();
        // _unlocked may drop the lock: VM_FAULT_RETRY, then FOLL_TRIED, per page.
        assert_eq!(
            w.get_user_pages_unlocked(&mut c, 0, 2, Some(&mut pages), Foll::NONE)
                .unwrap(),
            2
        );
        let drops = take_steps()
            .iter()
            .filter(|s| s.name == "mmap_read_unlock: VM_FAULT_RETRY")
            .count();
        assert_eq!(drops, 2, "{}", p.name());
        for &pg in &pages {
            w.put_page(&mut c, pg).unwrap();
        }
        assert!(
            w.swap.lock().iter().all(|s| s.is_none()),
            "slots freed by swap-in"
        );
        w.check_quiescent(&c.ledger).unwrap();
    }
    // get_user_pages (caller holds the lock, no `locked`) and user faults swap in
    // without dropping it.
    let w = World::<Std>::build(cfg(Latest), &layout).unwrap();
    let mut c = Ctx::new(0, 1, true);
    take_steps();
    let mut pages = Vec::new();
    assert_eq!(
        w.get_user_pages(&mut c, 0, 1, Foll::NONE, Some(&mut pages))
            .unwrap(),
        1
    );
    assert_eq!(
        w.user_access(&mut c, 0, P, true).unwrap().map(|_| ()),
        Ok(())
    );
    assert!(take_steps()
        .iter()
        .all(|s| s.name != "mmap_read_unlock: VM_FAULT_RETRY"));
    w.put_page(&mut c, pages[0]).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
}

#[test]
fn munmap_frees_swap_slots_and_no_mapping_outlives_its_vma() {
    let w = World::<Std>::build(
        cfg(Latest),
        &Layout::one(vec![Region::anon(0, 2, Populate::Swapped)]),
    )
    .unwrap();
    let mut c = ctx();
    w.munmap(&mut c, 0, 0, 2 * P).unwrap().unwrap();
    assert!(w.swap.lock().iter().all(|s| s.is_none()));
    w.check_quiescent(&c.ledger).unwrap();
    // A mapping left behind a removed VMA is a leak the quiescent check names.
    let w = world(Latest);
    w.mms[0].mmap_lock.write().retain(|v| v.start != 0);
    let v = w.check_quiescent(&ctx().ledger).unwrap_err();
    assert_eq!(v.invariant, gupcheck_model::Invariant::Conservation);
    assert!(v.detail.contains("outside any VMA"), "{}", v.detail);
}

/// `follow_page_mask` maps as much of a THP as the request has left: a pin of
/// part of a PMD-mapped THP takes exactly the pages asked for, one reference
/// each (`record_subpages`, `ctx->page_mask`).
#[test]
fn the_slow_path_takes_only_the_asked_part_of_a_thp() {
    let mut cf = cfg(Latest);
    cf.nr_frames = 64;
    let w = World::<Std>::build(cf, &Layout::one(vec![Region::anon(4, 4, Populate::Thp)])).unwrap();
    let mut c = ctx();
    for (first, nr) in [(4, 1), (5, 2), (5, 3), (6, 1)] {
        let mut pages = Vec::new();
        let r = w
            .pin_user_pages(&mut c, first * P, nr, f(&[Flag::Write]), Some(&mut pages))
            .unwrap();
        assert_eq!(r, nr, "pages {first}..+{nr}");
        assert_eq!(pages.len(), nr as usize, "pages {first}..+{nr}");
        let head = w.mem.page_folio(pages[0]);
        assert_eq!(pages[0], head + (first - 4) as Pfn);
        assert_eq!(w.mem.frame(head).pincount.read_once(), nr as i32);
        w.unpin_user_pages(&mut c, &pages).unwrap();
    }
    w.check_quiescent(&c.ledger).unwrap();

    // A THP met after the first page: what is left of the request bounds it.
    let w = World::<Std>::build(
        cfg(Latest),
        &Layout::one(vec![
            Region::anon(3, 1, Populate::Anon),
            Region::anon(4, 4, Populate::Thp),
        ]),
    )
    .unwrap();
    let mut pages = Vec::new();
    let r = w
        .pin_user_pages(&mut c, 3 * P, 3, f(&[Flag::Write]), Some(&mut pages))
        .unwrap();
    assert_eq!((r, pages.len()), (3, 3));
    w.unpin_user_pages(&mut c, &pages).unwrap();
    w.check_quiescent(&c.ledger).unwrap();
}

/// `__get_user_pages_locked()` stops at the first page that fails and returns
/// the prefix; it tries that page once (only VM_FAULT_RETRY retries).
#[test]
fn the_slow_path_tries_a_failing_page_once() {
    // Pages 0..4 populated; a later fault finds no frame left.
    let mut cf = cfg(Latest);
    cf.nr_frames = 12;
    let w = World::<Std>::build(
        cf,
        &Layout::one(vec![
            Region::anon(0, 4, Populate::Anon),
            Region::anon(4, 4, Populate::None),
        ]),
    )
    .unwrap();
    let mut c = Ctx::new(0, 1, true);
    // Fault pages in from page 4 until the frames run out.
    let mut mapped = 4;
    while mapped < 8 && w.user_access(&mut c, 0, mapped * P, true).unwrap().is_ok() {
        mapped += 1;
    }
    assert!(mapped < 8, "the world has too many frames for this test");
    let failing = mapped * P;
    take_steps();
    let mut pages = Vec::new();
    let r = w
        .get_user_pages(&mut c, 0, 8, f(&[Flag::Write]), Some(&mut pages))
        .unwrap();
    assert_eq!(r, mapped as i64);
    let faults = take_steps()
        .iter()
        .filter(|s| s.arg == failing && s.name == "faultin_page")
        .count();
    assert_eq!(faults, 1, "tried once");
    for &pg in &pages {
        w.put_page(&mut c, pg).unwrap();
    }
    w.check_quiescent(&c.ledger).unwrap();
}

/// FOLL_TOUCH (follow_page_pte): a write through a clean PTE dirties the page.
/// get_user_pages_remote() adds FOLL_TOUCH to the caller's flags;
/// pin_user_pages() does not (a page its caller writes is dirtied at unpin).
#[test]
fn a_remote_write_gup_dirties_a_clean_page_and_a_pin_does_not() {
    for (p, remote) in [(V6_1, true), (V6_1, false), (Latest, true), (Latest, false)] {
        let w = World::<Std>::build(
            cfg(p),
            &Layout::one(vec![Region::anon(4, 4, Populate::ThpPte)]),
        )
        .unwrap();
        let mut c = ctx();
        let mut pages = Vec::new();
        let r = if remote {
            w.get_user_pages_remote(
                &mut c,
                0,
                4 * P,
                1,
                f(&[Flag::Write]),
                Some(&mut pages),
                None,
            )
        } else {
            w.pin_user_pages(&mut c, 4 * P, 1, f(&[Flag::Write]), Some(&mut pages))
        }
        .unwrap();
        assert_eq!(r, 1);
        let head = w.mem.page_folio(pages[0]);
        let dirty = w.mem.frame(head).flags.read_once() & pg::DIRTY != 0;
        assert_eq!(dirty, remote, "{} remote {remote}", p.name());
    }
}
