//! Constrained decoding in the engine: the token trie agrees with the tokenizer, the trigger
//! state machine on scripted logits (real vocabulary, real llguidance), and real generations of
//! the Qwen test model held to a grammar.

use plugboard::engine::{
    Activation, ConstraintRequest, DropReason, Engine, GenEvent, GenerateRequest, GgufFile,
    GrammarFactory, Sampler, SamplingParams, Tokenizer, Trigger,
};
use plugboard::engine::{Constraint, vocabulary_bytes};
use plugboard_tests::{models, tool, weather_tools};
use serde_json::Value;

fn tokenizer(path: &std::path::Path) -> Tokenizer {
    Tokenizer::load(&GgufFile::open(path).expect("opens")).expect("tokenizer loads")
}

/// xorshift64*: random enough for picking ids, with no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[test]
fn the_trie_spells_every_token_as_the_tokenizer_decodes_it() {
    for path in [models::qwen(), models::gemma()].into_iter().flatten() {
        let tokenizer = tokenizer(&path);
        let words = vocabulary_bytes(&tokenizer, tokenizer.vocab_size());
        assert_eq!(words.len(), tokenizer.vocab_size());
        let ordinary: Vec<u32> = (0..tokenizer.vocab_size() as u32)
            .filter(|id| !tokenizer.is_control(*id))
            .collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..10_000 {
            let ids: Vec<u32> = (0..1 + rng.below(8))
                .map(|_| ordinary[rng.below(ordinary.len())])
                .collect();
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|id| words[*id as usize].clone())
                .collect();
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                tokenizer.decode(&ids).expect("decodes"),
                "{}: ids {ids:?}",
                path.display()
            );
        }
        // Control tokens are marked, so that no text can produce them.
        let control = (0..tokenizer.vocab_size() as u32)
            .find(|id| tokenizer.is_control(*id))
            .expect("a control token");
        assert_eq!(words[control as usize][0], 0xFF);
    }
}

const WEATHER_CALL: &str = r#"start: "<tool_call>" "\n" call "\n" "</tool_call>"
call: %json {"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}, "required": ["name", "arguments"], "additionalProperties": false}
"#;

/// Drives a constraint with logits that favour one scripted token at a time, as a model that
/// writes `script` would; returns the text and the constraint.
fn drive(
    factory: &GrammarFactory,
    tokenizer: &Tokenizer,
    request: ConstraintRequest,
    script: &[u32],
) -> (String, Constraint) {
    let mut constraint = Constraint::new(factory, request);
    let mut sampler = Sampler::new(SamplingParams::default());
    let mut text = Vec::new();
    for &want in script {
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        logits[want as usize] = 10.0;
        let (id, _) = constraint.sample(&mut sampler, &logits, None);
        let bytes = tokenizer.token_bytes(id);
        constraint.accept(id, &bytes);
        text.extend(bytes);
        if id != want {
            break;
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), constraint)
}

/// Token ids spelling `pieces`, each piece tokenised on its own (so that a piece boundary is a
/// token boundary).
fn script(factory: &GrammarFactory, pieces: &[&str]) -> Vec<u32> {
    pieces
        .iter()
        .flat_map(|p| factory.trie().greedy_tokenize(p.as_bytes()))
        .collect()
}

fn on_trigger(repeat: bool) -> ConstraintRequest {
    ConstraintRequest {
        grammar: WEATHER_CALL.into(),
        activation: Activation::OnTrigger {
            triggers: vec![Trigger {
                text: "<tool_call>".into(),
                at_start: false,
            }],
            reasoning: Some(("<think>".into(), "</think>".into())),
            starts_in_reasoning: false,
        },
        repeat,
    }
}

const CALL: &str =
    "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

#[test]
fn a_trigger_switches_the_grammar_on_wherever_tokens_split_it() {
    let Some(path) = models::qwen() else { return };
    let tokenizer = tokenizer(&path);
    let end = tokenizer.token_id("<|im_end|>").expect("end token");
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &[end]).expect("builds");

    // Prose, then a trigger split across tokens, a call the grammar accepts as written, prose.
    let written = script(
        &factory,
        &[
            "Let me check the weather.\n",
            "<tool",
            "_call>",
            CALL,
            "\nDone.",
        ],
    );
    let (text, constraint) = drive(&factory, &tokenizer, on_trigger(true), &written);
    assert_eq!(
        text,
        format!("Let me check the weather.\n<tool_call>{CALL}\nDone.")
    );
    assert_eq!(constraint.report.activations, 1);
    assert_eq!(
        constraint.report.masks, 0,
        "a call written right is never masked"
    );
    assert!(constraint.report.dropped.is_none());

    // The trigger starting inside a token (" <" is one token).
    let mut written = script(&factory, &["Checking"]);
    written.push(factory.trie().token_id(b" <").expect("' <' is a token"));
    written.extend(script(&factory, &["tool_call>", CALL]));
    let (text, constraint) = drive(&factory, &tokenizer, on_trigger(true), &written);
    assert_eq!(text, format!("Checking <tool_call>{CALL}"));
    assert_eq!(constraint.report.activations, 1);
    assert!(constraint.report.dropped.is_none());

    // A trigger inside reasoning is not a call; after it, one is.
    let written = script(
        &factory,
        &[
            "<think>I could write <tool_call> here",
            "</think>",
            "<tool_call>",
            CALL,
        ],
    );
    let (_, constraint) = drive(&factory, &tokenizer, on_trigger(true), &written);
    assert_eq!(constraint.report.activations, 1);

    // Re-armed after a call: two calls, two activations.
    let written = script(&factory, &["<tool_call>", CALL, "\n", "<tool_call>", CALL]);
    let (text, constraint) = drive(&factory, &tokenizer, on_trigger(true), &written);
    assert_eq!(constraint.report.activations, 2, "{text}");
    assert_eq!(constraint.report.masks, 0);
}

#[test]
fn the_grammar_corrects_a_wrong_call_and_one_call_allows_only_an_end() {
    let Some(path) = models::qwen() else { return };
    let tokenizer = tokenizer(&path);
    let end = tokenizer.token_id("<|im_end|>").expect("end token");
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &[end]).expect("builds");

    // A model that misspells the tool: the mask allows only the offered name.
    let written = script(&factory, &["<tool_call>", "\n{\"name\": \"get_wether\""]);
    let (text, constraint) = drive(&factory, &tokenizer, on_trigger(true), &written);
    assert!(constraint.report.masks >= 1);
    assert!(
        "<tool_call>\n{\"name\": \"get_weather\"".starts_with(&text)
            || text.starts_with("<tool_call>\n{\"name\":"),
        "{text:?}"
    );
    assert!(!text.contains("wether"), "{text:?}");

    // parallel_tool_calls: false — after one call only an end token may follow.
    let mut written = script(&factory, &["<tool_call>", CALL, "\n<tool_call>"]);
    written.truncate(written.len() - 1);
    let mut constraint = Constraint::new(&factory, on_trigger(false));
    let mut sampler = Sampler::new(SamplingParams::default());
    let mut last = 0;
    for &want in &written {
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        logits[want as usize] = 10.0;
        let (id, _) = constraint.sample(&mut sampler, &logits, None);
        constraint.accept(id, &tokenizer.token_bytes(id));
        last = id;
        if id != want {
            break;
        }
    }
    assert_eq!(last, end, "after the one call allowed, the model must end");

    // Forced to call with several calls allowed, a model that repeats a call is ended there.
    let calls = ConstraintRequest {
        grammar: WEATHER_CALL.replace(
            "start: \"<tool_call>\"",
            "start: one (\"\\n\" one)* \"\\n\"?\none: \"<tool_call>\"",
        ),
        activation: Activation::FromStart,
        repeat: true,
    };
    let mut written = script(&factory, &["<tool_call>", CALL, "\n", "<tool_call>", CALL]);
    written.push(written[0]);
    let (text, constraint) = drive(&factory, &tokenizer, calls, &written);
    assert!(constraint.report.repeat_ended, "{text:?}");
    assert!(
        text.ends_with(&format!("</tool_call>\n<tool_call>{CALL}<|im_end|>")),
        "{text:?}"
    );
}

#[test]
fn a_broken_grammar_or_a_rejected_trigger_drops_the_constraint_and_generation_goes_on() {
    let Some(path) = models::qwen() else { return };
    let tokenizer = tokenizer(&path);
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &[]).expect("builds");
    let mut broken = on_trigger(true);
    broken.grammar = "start: call\ncall: %json {".into();
    let written = script(&factory, &["Hello <tool_call>", CALL]);
    let (text, constraint) = drive(&factory, &tokenizer, broken, &written);
    assert_eq!(text, format!("Hello <tool_call>{CALL}"));
    assert_eq!(
        constraint.report.dropped.as_ref().map(|d| d.0),
        Some(DropReason::Compile)
    );

    let mut mismatched = on_trigger(true);
    mismatched.grammar = r#"start: "[TOOL_CALLS]" /[a-z]+/"#.into();
    let (text, constraint) = drive(&factory, &tokenizer, mismatched, &written);
    assert_eq!(text, format!("Hello <tool_call>{CALL}"));
    assert_eq!(
        constraint.report.dropped.as_ref().map(|d| d.0),
        Some(DropReason::TriggerRejected)
    );
}

fn generate(
    engine: &Engine,
    prompt: &str,
    sampling: SamplingParams,
    constraint: Option<ConstraintRequest>,
) -> (String, plugboard::engine::Usage) {
    let mut events = engine
        .generate(GenerateRequest {
            prompt: engine.tokenizer().encode_prompt(prompt).expect("tokenizes"),
            sampling,
            max_tokens: 96,
            constraint,
            ..GenerateRequest::default()
        })
        .expect("queued");
    let mut text = String::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenEvent::Text { text: t, .. } => text.push_str(&t),
            GenEvent::Done { usage, .. } => return (text, usage),
            GenEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("no Done")
}

fn chat(user: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

#[test]
fn qwen_held_to_a_call_grammar_from_the_start_always_calls_and_unconstrained_text_is_unchanged() {
    let Some(engine) = models::qwen_engine() else {
        return;
    };
    let required = ConstraintRequest {
        grammar: WEATHER_CALL.into(),
        activation: Activation::FromStart,
        repeat: false,
    };
    // Chit-chat that would not call a tool, greedy and sampled.
    for (prompt, seed) in [
        ("Hi! How are you today?", None),
        ("Tell me a joke about cats.", Some(7)),
        ("What's the weather like in Lisbon?", Some(8)),
    ] {
        let sampling = SamplingParams {
            temperature: if seed.is_some() { 0.7 } else { 0.0 },
            seed,
            ..SamplingParams::default()
        };
        let (text, usage) = generate(&engine, &chat(prompt), sampling, Some(required.clone()));
        let report = usage.constraint.expect("a report");
        assert!(report.dropped.is_none(), "{report:?}");
        let body = text
            .strip_prefix("<tool_call>\n")
            .and_then(|t| t.strip_suffix("\n</tool_call>"))
            .unwrap_or_else(|| panic!("{prompt:?} gave no whole call: {text:?}"));
        let call: Value = serde_json::from_str(body).expect("the call is JSON");
        assert_eq!(call["name"], "get_weather", "{text}");
        assert!(call["arguments"]["city"].is_string(), "{text}");
        eprintln!("{prompt:?} -> {text:?}: {report:?}");
    }

    // A trigger that never comes: the same text as without a constraint, and no mask.
    let prompt = chat("Write one sentence about the sea.");
    let (free, _) = generate(&engine, &prompt, SamplingParams::default(), None);
    let (watched, usage) = generate(
        &engine,
        &prompt,
        SamplingParams::default(),
        Some(on_trigger(true)),
    );
    assert_eq!(watched, free);
    let report = usage.constraint.expect("a report");
    assert_eq!((report.masks, report.activations), (0, 0));
}

/// Three tool sets: plain, a schema stress set (with booleans and null nested, which families
/// that do not write JSON spell their own way), and tools without or with odd parameters.
fn tool_sets() -> Vec<Vec<plugboard::adapter::Tool>> {
    use serde_json::json;
    vec![
        weather_tools(),
        vec![tool(
            "book_table",
            json!({"type": "object", "properties": {
                "party": {"type": "integer", "minimum": 1, "maximum": 12},
                "seating": {"type": "string", "enum": ["inside", "terrace"]},
                "when": {"type": "object", "properties": {"day": {"type": "string", "enum": ["mon", "fri"]}, "hour": {"type": "integer", "minimum": 11, "maximum": 22}}, "required": ["day", "hour"], "additionalProperties": false},
                "requests": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
                "phone": {"anyOf": [{"type": "string", "pattern": "^[0-9]{6}$"}, {"type": "null"}]},
                "notes": {"type": "object", "properties": {"vip": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": ["string", "null"]}, "maxItems": 3}}}},
                "required": ["party", "seating", "when", "requests", "phone"], "additionalProperties": false}),
        )],
        vec![
            tool("ping", json!({})),
            tool(
                "say \"hi\"",
                json!({"type": "object", "properties": {"text": {"type": "string", "maxLength": 12}}, "required": ["text"]}),
            ),
        ],
    ]
}

/// A random walk through a grammar: each step picks the best of random logits (a sample, by the
/// Gumbel-max argument), with a bonus for tokens that close strings and objects so that walks
/// end, and for the rest of a [`CLOSERS`] marker once the walk has begun one (strings between
/// markers end only there). `None` when a walk has not ended within `limit` tokens.
/// Markers that end strings in some families' grammars (FunctionGemma's `<escape>`).
const CLOSERS: [&str; 1] = ["<escape>"];

fn random_walk(
    factory: &GrammarFactory,
    tokenizer: &Tokenizer,
    request: &ConstraintRequest,
    bonus: &[f32],
    rng: &mut Rng,
    limit: usize,
) -> Option<String> {
    let mut constraint = Constraint::new(factory, request.clone());
    let mut sampler = Sampler::new(SamplingParams::default());
    let ends = factory.trie().eos_tokens().to_vec();
    let mut text = Vec::new();
    let mut logits = vec![0.0f32; bonus.len()];
    for _ in 0..limit {
        for (l, b) in logits.iter_mut().zip(bonus) {
            *l = b + (rng.below(1 << 20) as f32 / (1 << 20) as f32) * 8.0;
        }
        for marker in CLOSERS.iter().map(|m| m.as_bytes()) {
            if let Some(begun) = (1..marker.len())
                .rev()
                .find(|&k| text.ends_with(&marker[..k]))
                && let Some(&next) = factory.trie().greedy_tokenize(&marker[begun..]).first()
            {
                logits[next as usize] += 20.0;
            }
        }
        let (id, _) = constraint.sample(&mut sampler, &logits, None);
        assert!(
            constraint.report.dropped.is_none(),
            "{:?}",
            constraint.report
        );
        if ends.contains(&id) {
            return Some(String::from_utf8_lossy(&text).into_owned());
        }
        let bytes = tokenizer.token_bytes(id);
        constraint.accept(id, &bytes);
        text.extend(bytes);
    }
    None
}

#[test]
fn random_walks_through_each_adapter_grammar_parse_as_exactly_their_calls() {
    use plugboard::adapter::{GrammarRequest, ParseOptions, ToolChoice};
    use plugboard::call_constraint::tool_constraint;
    use plugboard::plugins::PluginHost;
    use plugboard::toolcalls::ToolCheck;

    let Some(path) = models::qwen() else { return };
    let tokenizer = tokenizer(&path);
    let ends: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_id(t))
        .collect();
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &ends).expect("builds");
    let bonus: Vec<f32> = (0..tokenizer.vocab_size() as u32)
        .map(|id| {
            let bytes = tokenizer.token_bytes(id);
            if ends.contains(&id)
                || bytes.iter().any(|b| b"\"}],0123456789".contains(b))
                || bytes == b"<"
            {
                6.0
            } else {
                0.0
            }
        })
        .collect();
    let walks: usize = std::env::var("PLUGBOARD_GRAMMAR_WALKS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(12);
    let host = PluginHost::new(plugboard_tests::runtime(), true, None);
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for adapter in [
        "hermes",
        "tool-use",
        "llama3",
        "mistral",
        "granite",
        "phi4-mini",
        "deepseek",
        "pythonic",
        "functiongemma",
    ] {
        let plugin = host.get(adapter).expect("built in");
        for tools in tool_sets() {
            for (choice, parallel) in [
                (ToolChoice::Required, true),
                (ToolChoice::Function(tools[0].name.clone()), false),
            ] {
                let grammar = plugin
                    .session()
                    .expect("a session")
                    .call_grammar(&GrammarRequest {
                        tools: tools.clone(),
                        tool_choice: choice.clone(),
                        parallel_tool_calls: parallel,
                        control_tokens: tokenizer.control_tokens(),
                        ..GrammarRequest::default()
                    })
                    .expect("no error")
                    .unwrap_or_else(|| panic!("{adapter} has a call grammar"));
                let request = tool_constraint(grammar, &tools, parallel, false);
                let check = ToolCheck::new(&tools, &choice).expect("valid tools");
                let mut ended = 0;
                for _ in 0..walks {
                    let Some(text) =
                        random_walk(&factory, &tokenizer, &request, &bonus, &mut rng, 400)
                    else {
                        continue;
                    };
                    ended += 1;
                    let options = ParseOptions {
                        tools: tools.clone(),
                        ..ParseOptions::default()
                    };
                    let parsed = plugin.parse(&text, &options).expect("parses");
                    assert!(
                        parsed.problems.is_empty() && !parsed.tool_calls.is_empty(),
                        "{adapter}: {text:?} read as {parsed:?}"
                    );
                    assert!(parsed.content.is_none(), "{adapter}: {text:?}");
                    if !parallel {
                        assert_eq!(parsed.tool_calls.len(), 1, "{adapter}: {text:?}");
                    }
                    for (i, call) in parsed.tool_calls.iter().enumerate() {
                        check
                            .check(i as u32, &call.name, &call.arguments)
                            .unwrap_or_else(|p| panic!("{adapter}: {text:?}: {p:?}"));
                    }
                }
                assert!(
                    ended * 2 >= walks,
                    "{adapter}: only {ended} of {walks} walks ended"
                );
            }
        }
    }
}

#[test]
fn an_adapters_own_rendered_calls_are_accepted_by_its_grammar() {
    use plugboard::adapter::{GrammarRequest, Message, PromptRequest, Role, ToolCall, ToolChoice};
    use plugboard::call_constraint::tool_constraint;
    use plugboard::plugins::PluginHost;

    let Some(path) = models::qwen() else { return };
    let tokenizer = tokenizer(&path);
    let end = tokenizer.token_id("<|im_end|>").expect("end token");
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &[end]).expect("builds");
    let host = PluginHost::new(plugboard_tests::runtime(), true, None);
    let tools = tool_sets().remove(0);
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.tool_calls = vec![ToolCall {
        id: Some("call_1".into()),
        name: "get_weather".into(),
        arguments: r#"{"city": "Paris", "unit": "c"}"#.into(),
    }];
    let request = PromptRequest {
        messages: vec![
            Message::text(Role::User, "Weather in Paris?"),
            assistant,
            Message::text(Role::User, "Thanks."),
        ],
        tools: tools.clone(),
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: false,
        add_generation_prompt: true,
        model: Default::default(),
        template_variables: vec![],
    };
    for (adapter, open, close) in [
        ("hermes", "<tool_call>", "</tool_call>"),
        ("tool-use", "<tool_use>", "</tool_use>"),
        (
            "functiongemma",
            "<start_function_call>",
            "<end_function_call>",
        ),
    ] {
        let plugin = host.get(adapter).expect("built in");
        let prompt = plugin.format_prompt(&request).expect("renders").text;
        // The last one: the system prompt may show the markers too.
        let start = prompt.rfind(open).expect("the call is rendered");
        let end_at = start + prompt[start..].find(close).expect("closed") + close.len();
        let call = &prompt[start..end_at];
        let grammar = plugin
            .session()
            .expect("a session")
            .call_grammar(&GrammarRequest {
                tools: tools.clone(),
                tool_choice: ToolChoice::Required,
                parallel_tool_calls: false,
                ..GrammarRequest::default()
            })
            .expect("no error")
            .expect("a grammar");
        let mut constraint =
            Constraint::new(&factory, tool_constraint(grammar, &tools, false, false));
        for id in factory.trie().greedy_tokenize(call.as_bytes()) {
            constraint.accept(id, &tokenizer.token_bytes(id));
            assert!(
                constraint.report.dropped.is_none(),
                "{adapter}: {call:?}: {:?}",
                constraint.report
            );
        }
        // The call is complete: only the end may follow.
        let mut sampler = Sampler::new(SamplingParams::default());
        let (next, _) = constraint.sample(&mut sampler, &vec![0.0; tokenizer.vocab_size()], None);
        assert_eq!(next, end, "{adapter}: {call:?}");
    }
}
