//! The one entry every kernel-named GUP wrapper goes through (`gup_entry`): the
//! step, the era's entry checks (`is_valid_gup_args` from 6.3, the per-wrapper
//! rules before; rules.rs), then the path the wrapper takes with the flags the
//! checks leave. The eleven wrappers (`get_user_pages_fast` ... in fast.rs and
//! slow.rs) are shims over it, in the kernel's argument order, as mm/gup.c's
//! own wrappers are.

use crate::backend::Backend;
use crate::flags::Flag;
use crate::ghost::Ctx;
use crate::invariant::Res;
use crate::state::world::World;
use crate::types::Errno;

use super::api::{GupApi, GupCall};
use super::rules::Admit;
use super::Ret;

/// Defines kernel-named GUP wrappers, in the kernel's argument order, each a
/// shim over `World::gup_entry` (as loom generates its atomics: one macro, the
/// kernel's names). The argument list says which of the kernel's signatures a
/// wrapper has.
macro_rules! gup_wrappers {
    ($($(#[$doc:meta])* $name:ident = $api:ident ($($args:tt)*);)*) => {
        impl<B: Backend> World<B> {
            $(gup_wrappers!(@one $(#[$doc])* $name $api ($($args)*));)*
        }
    };
    (@one $(#[$doc:meta])* $name:ident $api:ident (start, nr_pages, gup_flags, pages)) => {
        $(#[$doc])*
        pub fn $name(
            &self,
            ctx: &mut Ctx,
            start: u64,
            nr_pages: i64,
            gup_flags: Foll,
            pages: Option<&mut Vec<Pfn>>,
        ) -> Res<Ret> {
            let call = GupCall::new(ctx.mm, start, nr_pages, gup_flags, pages, None);
            self.gup_entry(ctx, GupApi::$api, call)
        }
    };
    (@one $(#[$doc:meta])* $name:ident $api:ident (start, nr_pages, pages, gup_flags)) => {
        $(#[$doc])*
        pub fn $name(
            &self,
            ctx: &mut Ctx,
            start: u64,
            nr_pages: i64,
            pages: Option<&mut Vec<Pfn>>,
            gup_flags: Foll,
        ) -> Res<Ret> {
            let call = GupCall::new(ctx.mm, start, nr_pages, gup_flags, pages, None);
            self.gup_entry(ctx, GupApi::$api, call)
        }
    };
    (@one $(#[$doc:meta])* $name:ident $api:ident (mm, start, nr_pages, gup_flags, pages, locked)) => {
        $(#[$doc])*
        pub fn $name(
            &self,
            ctx: &mut Ctx,
            mm: usize,
            start: u64,
            nr_pages: i64,
            gup_flags: Foll,
            pages: Option<&mut Vec<Pfn>>,
            locked: Option<&mut i32>,
        ) -> Res<Ret> {
            let call = GupCall::new(mm, start, nr_pages, gup_flags, pages, locked);
            self.gup_entry(ctx, GupApi::$api, call)
        }
    };
    (@one $(#[$doc:meta])* $name:ident $api:ident (start, nr_pages, gup_flags, pages, &mut locked)) => {
        $(#[$doc])*
        pub fn $name(
            &self,
            ctx: &mut Ctx,
            start: u64,
            nr_pages: i64,
            gup_flags: Foll,
            pages: Option<&mut Vec<Pfn>>,
            locked: &mut i32,
        ) -> Res<Ret> {
            let call = GupCall::new(ctx.mm, start, nr_pages, gup_flags, pages, Some(locked));
            self.gup_entry(ctx, GupApi::$api, call)
        }
    };
}
pub(crate) use gup_wrappers;

impl<B: Backend> World<B> {
    /// One GUP call of `api`: the step, the entry checks of this preset's era,
    /// then the path with the flags they leave; the seed's pin_* placeholders
    /// forward to their get_* twin with the caller's flags.
    pub(crate) fn gup_entry(&self, ctx: &mut Ctx, api: GupApi, call: GupCall<'_>) -> Res<Ret> {
        ctx.step(&self.ghost, api.name(), call.start);
        let remote = matches!(api, GupApi::GetUserPagesRemote | GupApi::PinUserPagesRemote);
        if remote && call.mm >= self.mms.len() {
            return Ok(Errno::EFAULT.as_ret());
        }
        let has_pages = call.pages.is_some();
        match self.admit(api, call.gup_flags, has_pages, call.locked.is_some()) {
            Admit::Flags(f) => self.gup_path(
                ctx,
                api,
                GupCall {
                    gup_flags: f,
                    ..call
                },
            ),
            Admit::Return(r) => Ok(r),
            Admit::Forward(to) => self.gup_entry(ctx, to, call),
        }
    }

    /// What each wrapper does once its flags are admitted.
    fn gup_path(&self, ctx: &mut Ctx, api: GupApi, call: GupCall<'_>) -> Res<Ret> {
        use GupApi::*;
        let (mm, start, nr, f) = (call.mm, call.start, call.nr_pages, call.gup_flags);
        match api {
            // The caller holds `mmap_lock` (the model takes it around the call,
            // as the caller would); pin_user_pages drops FOLL_TOUCH (rules.rs).
            GetUserPages | PinUserPages => self.gup_slow(ctx, mm, start, nr, f, call.pages, false),
            GetUserPagesRemote | PinUserPagesRemote => self.gup_remote(ctx, call),
            GetUserPagesLocked => self.gup_remote_locked(ctx, call),
            // Takes and drops `mmap_lock` itself, and lets a fault drop it.
            GetUserPagesUnlocked => {
                let f = f.with(Flag::Unlockable);
                self.gup_slow(ctx, mm, start, nr, f, call.pages, true)
            }
            // Before 6.3 it is get_user_pages_unlocked with FOLL_PIN, and that
            // wrapper's checks.
            PinUserPagesUnlocked if self.cfg.p().valid_gup_args => {
                self.gup_slow(ctx, mm, start, nr, f, call.pages, true)
            }
            PinUserPagesUnlocked => self.gup_entry(ctx, GetUserPagesUnlocked, call),
            GetUserPagesFast | PinUserPagesFast => {
                self.internal_get_user_pages_fast(ctx, start, nr, f, call.pages)
            }
            GetUserPagesFastOnly | PinUserPagesFastOnly => {
                self.fast_only(ctx, start, nr, f, call.pages)
            }
        }
    }
}
