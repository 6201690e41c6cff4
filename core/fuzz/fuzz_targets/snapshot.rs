//! Snapshot decoding and restore (see cardsvc_core::fuzzing).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cardsvc_core::fuzzing::snapshot_input(data));
