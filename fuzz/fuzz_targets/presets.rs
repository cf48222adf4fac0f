//! `presets`: see `gupcheck_model::fuzzing`. A finding is a value inside the
//! model; the target panics once, here, outside shuttle.
#![no_main]

use gupcheck_model::harness::fuzzing::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(f) = Target::Presets.check(data) {
        panic!("{f}");
    }
});
