//! Criterion benchmarks for ordercore's hot paths. They live in their own
//! crate so criterion and its dependencies stay out of the server build;
//! shared fixtures for the benchmarks are defined here.
