//! Fuzz targets for Switchboard: the bodies are in `targets.rs`, shared with the seed-corpus
//! replay in the main test suite (`tests/tests/fuzz_corpus.rs`).

pub mod targets;
