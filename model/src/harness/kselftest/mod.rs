//! The kernel's selftests over the model: cow.c and gup_longterm.c (`cow`).

pub mod cow;
