//! What each GUP entry point checks and sets, per era, as data.
//!
//! Before 6.3 every wrapper had its own WARN_ON_ONCE checks; 6.3 folded them into
//! `is_valid_gup_args()` (KERNEL.md §2.2). One row per (entry point, era): refused
//! flags, whether a NULL pages array is refused, what an invalid call returns, the
//! flags the wrapper sets, and whether the seed's placeholder forwards to the
//! get_* path instead. Sources: see `Rules`.

use crate::backend::Backend;
use crate::gup::api::GupApi;
use crate::state::world::World;
use crate::types::Errno;

use super::Ret;
use crate::flags::{Flag, Foll, Rules};

/// One wrapper's behaviour in one era.
struct Row {
    /// The entry point exists in this era.
    exists: bool,
    /// The seed's pin_* placeholders call the get_* path unchanged.
    forward: Option<GupApi>,
    /// Flags the caller may not pass.
    refuse: Foll,
    /// A NULL pages array is refused (6.1 pin_*).
    refuse_no_pages: bool,
    /// What a refused call returns.
    invalid: Ret,
    /// Flags the wrapper adds (`to_set` of is_valid_gup_args in 6.3+).
    set: Foll,
}

const NONE: Foll = Foll::NONE;
const EINVAL: Ret = -(Errno::EINVAL as Ret);

const fn row(refuse: Foll, refuse_no_pages: bool, invalid: Ret, set: Foll) -> Row {
    Row {
        exists: true,
        forward: None,
        refuse,
        refuse_no_pages,
        invalid,
        set,
    }
}

const ABSENT: Row = Row {
    exists: false,
    forward: None,
    refuse: NONE,
    refuse_no_pages: false,
    invalid: 0,
    set: NONE,
};

const fn forward(to: GupApi) -> Row {
    Row {
        exists: true,
        forward: Some(to),
        refuse: NONE,
        refuse_no_pages: false,
        invalid: 0,
        set: NONE,
    }
}

fn rule(api: GupApi, r: Rules) -> Row {
    use Flag::*;
    use GupApi as A;
    use Rules::*;
    let pin = Foll::of(&[Pin]);
    let get = Foll::of(&[Get]);
    let pin_longterm = Foll::of(&[Pin, Longterm]);
    let longterm = Foll::of(&[Longterm]);
    let touch = Foll::of(&[Touch]);
    let latest = |set: &[Flag], invalid: Ret| row(NONE, false, invalid, Foll::of(set));
    match (api, r) {
        // get_user_pages: FOLL_PIN only from pin_*; is_valid_gup_flags (5.10
        // cycle) also refuses FOLL_LONGTERM.
        (A::GetUserPages, Seed | V5_7) => row(pin, false, EINVAL, touch),
        (A::GetUserPages, V5_11 | V6_1) => row(pin_longterm, false, EINVAL, touch),
        (A::GetUserPages, Latest) => latest(&[Touch], EINVAL),
        (A::GetUserPagesRemote, Seed | V5_7) => row(pin, false, EINVAL, NONE),
        (A::GetUserPagesRemote, V5_11 | V6_1) => row(pin_longterm, false, EINVAL, NONE),
        (A::GetUserPagesRemote, Latest) => latest(&[Touch, Remote], EINVAL),
        // get_user_pages_locked refused FOLL_PIN only once pin_user_pages_locked
        // existed (5.8); gone in 6.5.
        (A::GetUserPagesLocked, Seed | V5_7) => row(longterm, false, EINVAL, touch),
        (A::GetUserPagesLocked, V5_11 | V6_1) => row(pin_longterm, false, EINVAL, touch),
        (A::GetUserPagesLocked, Latest) => ABSENT,
        // get_user_pages_unlocked never refused FOLL_PIN before 6.3 (the seed's
        // hole: pages come back without a reference).
        (A::GetUserPagesUnlocked, Seed | V5_7 | V5_11 | V6_1) => {
            row(longterm, false, EINVAL, touch)
        }
        (A::GetUserPagesUnlocked, Latest) => latest(&[Touch, Unlockable], EINVAL),
        // The seed's fast path takes a reference whatever the flags; from 5.7
        // get_user_pages_fast sets FOLL_GET ("require FOLL_GET").
        (A::GetUserPagesFast, Seed) => row(pin, false, EINVAL, NONE),
        (A::GetUserPagesFast, V5_7) => row(pin, false, EINVAL, get),
        (A::GetUserPagesFast, V5_11 | V6_1) => row(pin_longterm, false, EINVAL, get),
        (A::GetUserPagesFast, Latest) => latest(&[Get], EINVAL),
        (A::GetUserPagesFastOnly, Seed | V5_7) => ABSENT,
        (A::GetUserPagesFastOnly, V5_11 | V6_1) => row(NONE, false, 0, Foll::of(&[Get, FastOnly])),
        (A::GetUserPagesFastOnly, Latest) => latest(&[Get, FastOnly], EINVAL),
        // pin_*: placeholders in the seed; refuse FOLL_GET from 5.7; 6.1 also
        // refuses a NULL pages array; 6.3+ returns 0 for the slow-path wrappers.
        (A::PinUserPages, Seed) => forward(A::GetUserPages),
        (A::PinUserPages, V5_7 | V5_11) => row(get, false, EINVAL, pin),
        (A::PinUserPages, V6_1) => row(get, true, EINVAL, pin),
        (A::PinUserPages, Latest) => latest(&[Pin], 0),
        (A::PinUserPagesRemote, Seed) => forward(A::GetUserPagesRemote),
        (A::PinUserPagesRemote, V5_7 | V5_11) => row(get, false, EINVAL, pin),
        (A::PinUserPagesRemote, V6_1) => row(get, true, EINVAL, pin),
        (A::PinUserPagesRemote, Latest) => latest(&[Pin, Touch, Remote], 0),
        (A::PinUserPagesUnlocked, Seed | V5_7) => ABSENT,
        (A::PinUserPagesUnlocked, V5_11) => row(get, false, EINVAL, pin),
        (A::PinUserPagesUnlocked, V6_1) => row(get, true, EINVAL, pin),
        (A::PinUserPagesUnlocked, Latest) => latest(&[Pin, Touch, Unlockable], 0),
        (A::PinUserPagesFast, Seed) => forward(A::GetUserPagesFast),
        (A::PinUserPagesFast, V5_7 | V5_11 | V6_1) => row(get, true, EINVAL, pin),
        (A::PinUserPagesFast, Latest) => latest(&[Pin], EINVAL),
        (A::PinUserPagesFastOnly, Seed | V5_7) => ABSENT,
        (A::PinUserPagesFastOnly, V5_11 | V6_1) => row(get, true, 0, Foll::of(&[Pin, FastOnly])),
        (A::PinUserPagesFastOnly, Latest) => latest(&[Pin, FastOnly], 0),
    }
}

/// What a wrapper does with its arguments.
pub enum Admit {
    /// Go on with these flags.
    Flags(Foll),
    /// Return this at once (-EINVAL, 0, or -ENOSYS where the call does not exist).
    Return(Ret),
    /// The seed's placeholder: call this get_* entry point with the same arguments.
    Forward(GupApi),
}

impl<B: Backend> World<B> {
    /// The entry checks of `api` in this preset's era.
    pub(crate) fn admit(&self, api: GupApi, gup_flags: Foll, pages: bool, locked: bool) -> Admit {
        let rules = self.cfg.p().rules;
        let r = rule(api, rules);
        if !r.exists {
            return Admit::Return(Errno::ENOSYS.as_ret());
        }
        if let Some(to) = r.forward {
            return Admit::Forward(to);
        }
        if self.cfg.p().valid_gup_args {
            return match self.is_valid_gup_args(pages, locked, gup_flags, r.set) {
                Some(f) => Admit::Flags(f),
                None => Admit::Return(r.invalid),
            };
        }
        if gup_flags.any(r.refuse) || (r.refuse_no_pages && !pages) {
            return Admit::Return(r.invalid);
        }
        Admit::Flags(gup_flags.union(r.set))
    }

    /// `is_valid_gup_args()` (6.3+): `None` is invalid (the kernel WARNs and returns
    /// -EINVAL, or 0 for the pin_* unlocked/remote wrappers).
    pub(crate) fn is_valid_gup_args(
        &self,
        pages: bool,
        locked: bool,
        flags: Foll,
        to_set: Foll,
    ) -> Option<Foll> {
        use Flag::*;
        let internal = Foll::of(&[
            Touch,
            Tried,
            Remote,
            Pin,
            FastOnly,
            Unlockable,
            MadvPopulate,
        ]);
        if flags.any(internal) {
            return None;
        }
        let mut f = flags.union(to_set);
        if locked {
            f = f.with(Unlockable);
        }
        if f.has(Get) && f.has(Pin) {
            return None;
        }
        if f.has(Longterm) && !f.has(Pin) {
            return None;
        }
        if f.any(Foll::of(&[Get, Pin])) && !pages {
            return None;
        }
        if f.has(Longterm) && f.has(PciP2pdma) {
            return None;
        }
        Some(f)
    }
}
