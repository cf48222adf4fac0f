//! Suites live in `tests/`.
