//! DeepSeek's special tokens, written out. `｜` is U+FF5C and `▁` U+2581: three bytes each, so a
//! stream chunk may end in the middle of one character of a marker as well as between them.

pub const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
pub const CALLS_END: &str = "<｜tool▁calls▁end｜>";
pub const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
pub const CALL_END: &str = "<｜tool▁call▁end｜>";
pub const SEP: &str = "<｜tool▁sep｜>";
pub const END_OF_SENTENCE: &str = "<｜end▁of▁sentence｜>";
pub const BEGIN_OF_SENTENCE: &str = "<｜begin▁of▁sentence｜>";
pub const USER: &str = "<｜User｜>";
pub const ASSISTANT: &str = "<｜Assistant｜>";
pub const OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
pub const OUTPUTS_END: &str = "<｜tool▁outputs▁end｜>";
pub const OUTPUT_BEGIN: &str = "<｜tool▁output▁begin｜>";
pub const OUTPUT_END: &str = "<｜tool▁output▁end｜>";
pub const THINK: (&str, &str) = ("<think>", "</think>");
