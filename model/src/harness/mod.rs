//! What drives the model: ops as data, the scenario catalogue, the engines'
//! entry points, the expectation matrix, artifacts, fuzzing, the kernel's
//! selftests over the model and herd7 litmus tests of its orderings. Kernel
//! code never calls up into this floor.

pub mod artifact;
pub mod engine;
pub mod expect;
pub mod fuzzing;
pub mod kselftest;
pub mod litmus;
pub mod ops;
pub mod scenario;
