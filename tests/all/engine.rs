//! Local inference with the real test models.

use std::sync::Arc;

use plugboard::engine::{
    Engine, EngineOptions, FinishReason, GenEvent, GenerateRequest, SamplingParams,
};
use plugboard_tests::models;

fn generate(
    engine: &Arc<Engine>,
    prompt: &str,
    max_tokens: usize,
    stop: &[&str],
) -> (String, FinishReason, plugboard::engine::Usage) {
    let ids = engine.tokenizer().encode_prompt(prompt).expect("tokenizes");
    let mut events = engine
        .generate(GenerateRequest {
            prompt: ids,
            sampling: SamplingParams::default(),
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            logprobs: None,
            extra_end_ids: vec![],
            ignore_end: false,
        })
        .expect("queued");
    let mut text = String::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenEvent::Text { text: t, .. } => text.push_str(&t),
            GenEvent::Done { reason, usage } => return (text, reason, usage),
            GenEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("the stream ended without Done")
}

#[test]
fn qwen_answers_a_chat_prompt() {
    let Some(path) = models::qwen() else { return };
    let engine = Engine::load(&path, &EngineOptions::default()).expect("loads");
    let prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n<|im_start|>assistant\n";
    let (text, reason, usage) = generate(&engine, prompt, 16, &[]);
    eprintln!("{text:?} {reason:?} {usage:?}");
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(reason, FinishReason::Stop);
}
