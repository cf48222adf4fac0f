//! What drives the model: ops as data, the scenario catalogue, the engines'
//! entry points, the expectation matrix, artifacts, fuzzing and the kernel's
//! selftests over the model. Kernel code never calls up into this floor.

pub mod artifact;
pub mod engine;
pub mod expect;
pub mod fuzzing;
pub mod kselftest;
pub mod ops;
pub mod scenario;
