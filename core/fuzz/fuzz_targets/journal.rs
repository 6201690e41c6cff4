//! Journal frame scanning, reading, record decoding and replay (see cardsvc_core::fuzzing).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cardsvc_core::fuzzing::journal_input(data));
