//! The contract's stream invariants, checked on one output streamed at given chunk boundaries.
//!
//! What [`check_stream`] demands (the `stream-event` invariants of the WIT contract and the
//! parsing rules' streaming rule):
//! - nothing panics, and the stream fails exactly when the whole parse fails;
//! - no content delta holds one of the adapter's call triggers (unless the whole parse reads it
//!   as prose and gives it back as content) or end-of-turn markers, and no
//!   reasoning delta an end-of-turn marker (unless the output can only have formed it by
//!   joining the text around a removed marker, `<tool<|eot|>_call>`);
//! - call indices first appear in order 0, 1, 2 …; each call is begun once, with a non-empty
//!   name; arguments and the end come only between its begin and its end or failure; a call
//!   fails (a problem other than `unknown-tool` with its index) at most once, and never after it
//!   ended; when the stream is finished every begun call has ended or failed;
//! - an ended call's argument deltas concatenate to the text of a JSON object;
//! - the events fold to exactly the whole parse's result.

use std::collections::{BTreeMap, BTreeSet};

use super::Extra;
use crate::emit::fold;
use crate::types::{ParseOptions, ParsedResponse, ProblemKind, StreamEvent};
use crate::{Adapter, StreamParse};

/// Where a stream is cut into chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cuts {
    /// One push of the whole output.
    Whole,
    /// Chunks of this many characters.
    Chars(usize),
    /// Cuts at these byte offsets (each moved back to a character boundary).
    Bytes(Vec<usize>),
}

impl Cuts {
    /// Chunks of 1 to `max_chars` characters, sizes drawn from `rng`.
    pub fn random(output: &str, rng: &mut super::mutate::Rng, max_chars: usize) -> Cuts {
        let bounds: Vec<usize> = output.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += 1 + rng.below(max_chars.max(1));
            match bounds.get(at - 1) {
                Some(&cut) => cuts.push(cut),
                None => break,
            }
        }
        Cuts::Bytes(cuts)
    }

    /// The chunks of `output`.
    pub fn chunks<'a>(&self, output: &'a str) -> Vec<&'a str> {
        let mut offsets: Vec<usize> = match self {
            Cuts::Whole => vec![],
            Cuts::Chars(size) => output
                .char_indices()
                .map(|(i, _)| i)
                .enumerate()
                .filter(|(n, i)| *i > 0 && n % (*size).max(1) == 0)
                .map(|(_, i)| i)
                .collect(),
            Cuts::Bytes(cuts) => cuts
                .iter()
                .map(|&c| {
                    let mut c = c.min(output.len());
                    while !output.is_char_boundary(c) {
                        c -= 1;
                    }
                    c
                })
                .collect(),
        };
        offsets.sort_unstable();
        offsets.dedup();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in offsets.into_iter().chain([output.len()]) {
            if cut > from {
                chunks.push(&output[from..cut]);
                from = cut;
            }
        }
        chunks
    }
}

/// Streams `output` through a fresh parser of `A` at `cuts` and checks the invariants against
/// the whole parse (with `extra`'s markers too). Returns the whole result, or what was broken.
pub fn check_stream<A: Adapter>(
    output: &str,
    options: &ParseOptions,
    cuts: &Cuts,
    extra: &Extra,
) -> Result<Option<ParsedResponse>, String> {
    let whole = A::parse_response(output.to_string(), options.clone()).ok();
    let mut parser = A::Parser::new(options.clone());
    let mut events = Vec::new();
    let mut failed = false;
    for chunk in cuts.chunks(output) {
        match parser.push(chunk) {
            Ok(more) => events.extend(more),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if !failed {
        match parser.finish() {
            Ok(more) => events.extend(more),
            Err(_) => failed = true,
        }
    }
    let Some(whole) = whole else {
        return if failed {
            Ok(None)
        } else {
            Err(format!(
                "{cuts:?}: the whole parse failed, the stream did not"
            ))
        };
    };
    if failed {
        return Err(format!(
            "{cuts:?}: the stream failed, the whole parse did not"
        ));
    }
    let info = A::info();
    // A call trigger that the whole parse gives back as content was read as prose (a marker
    // that no call follows, `write a <tool_use> block`): it may stand in content deltas, once
    // the parser decided so (the stream still folds to the whole parse).
    let prose = |m: &&String| {
        whole
            .content
            .as_deref()
            .is_some_and(|c| c.contains(m.as_str()))
    };
    let content_markers: Vec<&str> = info
        .tool_call_triggers
        .iter()
        .filter(|m| !prose(m))
        .chain(&info.end_of_turn)
        .map(String::as_str)
        .chain(extra.content.iter().copied())
        .collect();
    let reasoning_markers: Vec<&str> = info
        .end_of_turn
        .iter()
        .map(String::as_str)
        .chain(extra.reasoning.iter().copied())
        .collect();
    check_events(output, &events, &content_markers, &reasoning_markers)
        .map_err(|e| format!("{cuts:?}: {e}\nevents: {events:?}"))?;
    let streamed = fold(events);
    if streamed != whole {
        return Err(format!(
            "{cuts:?}: the stream gave\n  {streamed:?}\nthe whole output\n  {whole:?}"
        ));
    }
    Ok(Some(whole))
}

/// Whether `marker` may show in content without the model having written it there: text
/// before a removed piece (an end-of-turn marker, a dropped tag, a call span that gave no
/// event, an empty reasoning block) joins the text after it. So the output holds a start of
/// the marker right before a removable piece (a marker or anything tag-shaped), and the rest
/// of the marker after that (`<tool<|eot|>_call>`, `functool<think></think>s[`).
fn may_be_joined(output: &str, marker: &str, removed: &[&str]) -> bool {
    marker.char_indices().skip(1).any(|(cut, _)| {
        let (head, tail) = marker.split_at(cut);
        removed.iter().filter(|r| !r.is_empty()).any(|piece| {
            let joint = format!("{head}{piece}");
            output
                .find(&joint)
                .is_some_and(|at| output[at + joint.len()..].contains(tail))
        })
    })
}

/// The tag-shaped pieces of `output` (`<response>`, `[/THINK]`, `<|end|>`): a format may drop
/// such tags beyond the markers its info names, joining the text around them.
fn tags(output: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (start, open) in output
        .char_indices()
        .filter(|(_, c)| matches!(c, '<' | '['))
    {
        let close = if open == '<' { '>' } else { ']' };
        let rest = &output[start + 1..];
        let Some(len) = rest.find(|c: char| c == close || c == open || c.is_whitespace()) else {
            continue;
        };
        if len < 32 && rest[len..].starts_with(close) {
            found.push(&output[start..start + 1 + len + close.len_utf8()]);
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Whether `text` is one JSON object, as serde_json (which the host checks arguments with)
/// reads it: a call the host cannot read fails the whole response.
fn json_object(text: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err("not an object".into()),
        Err(e) => Err(format!("serde_json: {e}")),
    }
}

/// Checks a finished stream's events; `output` is the text that was pushed.
pub fn check_events(
    output: &str,
    events: &[StreamEvent],
    content_markers: &[&str],
    reasoning_markers: &[&str],
) -> Result<(), String> {
    let mut removed: Vec<&str> = content_markers.to_vec();
    removed.push("```");
    removed.extend(tags(output));
    // A delta may hold a marker the output does not hold whole, or one formed by joining
    // (see `may_be_joined`, only asked when a delta holds one).
    let real = |m: &str| output.contains(m) && !may_be_joined(output, m, &removed);
    let mut next_index = 0u32;
    let mut seen = BTreeSet::new();
    // Begun calls: their arguments so far, and whether they ended or failed.
    let mut calls: BTreeMap<u32, (String, bool)> = BTreeMap::new();
    let mut failed = BTreeSet::new();
    let mut appear = |index: u32| -> Result<(), String> {
        if seen.insert(index) {
            if index != next_index {
                return Err(format!(
                    "call index {index} appears where {next_index} was due"
                ));
            }
            next_index += 1;
        }
        Ok(())
    };
    for event in events {
        match event {
            StreamEvent::Content(text) | StreamEvent::Reasoning(text) => {
                if text.is_empty() {
                    return Err("an empty text delta".into());
                }
                let markers = match event {
                    StreamEvent::Content(_) => content_markers,
                    _ => reasoning_markers,
                };
                let held = markers
                    .iter()
                    .find(|m| !m.is_empty() && text.contains(**m) && real(m));
                if let Some(m) = held {
                    return Err(format!("the delta {event:?} holds the marker {m:?}"));
                }
            }
            StreamEvent::ToolCallBegin(begin) => {
                appear(begin.index)?;
                if begin.name.is_empty() {
                    return Err(format!("call {} begun without a name", begin.index));
                }
                if calls.contains_key(&begin.index) || failed.contains(&begin.index) {
                    return Err(format!("call {} begun twice or after failing", begin.index));
                }
                calls.insert(begin.index, (String::new(), false));
            }
            StreamEvent::ToolCallArguments(args) => match calls.get_mut(&args.index) {
                Some((text, false)) if !failed.contains(&args.index) => text.push_str(&args.delta),
                _ => return Err(format!("arguments of call {} outside its span", args.index)),
            },
            StreamEvent::ToolCallEnd(index) => match calls.get_mut(index) {
                Some((text, ended)) if !*ended && !failed.contains(index) => {
                    *ended = true;
                    if let Err(e) = json_object(text) {
                        return Err(format!(
                            "call {index} ended with arguments that are no JSON object ({e}): {text:?}"
                        ));
                    }
                }
                _ => return Err(format!("call {index} ended outside its span")),
            },
            StreamEvent::Problem(problem) => {
                let Some(index) = problem.index else { continue };
                appear(index)?;
                if problem.kind == ProblemKind::UnknownTool {
                    if !calls.contains_key(&index) {
                        return Err(format!(
                            "unknown-tool for call {index}, which was not begun"
                        ));
                    }
                    continue;
                }
                if calls.get(&index).is_some_and(|(_, ended)| *ended) {
                    return Err(format!("call {index} failed after it ended"));
                }
                if !failed.insert(index) {
                    return Err(format!("call {index} failed twice"));
                }
            }
        }
    }
    for (index, (_, ended)) in &calls {
        if !ended && !failed.contains(index) {
            return Err(format!("call {index} was left open at the end"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Problem, ToolCallArguments, ToolCallBegin};

    fn begin(index: u32, name: &str) -> StreamEvent {
        StreamEvent::ToolCallBegin(ToolCallBegin {
            index,
            id: None,
            name: name.into(),
        })
    }

    fn args(index: u32, delta: &str) -> StreamEvent {
        StreamEvent::ToolCallArguments(ToolCallArguments {
            index,
            delta: delta.into(),
        })
    }

    fn problem(kind: ProblemKind, index: u32) -> StreamEvent {
        StreamEvent::Problem(Problem {
            kind,
            message: String::new(),
            index: Some(index),
        })
    }

    #[test]
    fn good_streams_pass() {
        let events = [
            StreamEvent::Content("Sure.".into()),
            begin(0, "f"),
            problem(ProblemKind::UnknownTool, 0),
            args(0, "{\"a\":"),
            args(0, " 1}"),
            StreamEvent::ToolCallEnd(0),
            problem(ProblemKind::MalformedJson, 1),
            begin(2, "g"),
            problem(ProblemKind::Truncated, 2),
        ];
        assert_eq!(check_events("", &events, &["<call>"], &[]), Ok(()));
    }

    #[test]
    fn broken_streams_fail() {
        let bad: [&[StreamEvent]; 6] = [
            &[begin(1, "f"), StreamEvent::ToolCallEnd(1)],
            &[begin(0, "f"), args(0, "[]"), StreamEvent::ToolCallEnd(0)],
            &[begin(0, "f")],
            &[
                begin(0, "f"),
                args(0, "{}"),
                StreamEvent::ToolCallEnd(0),
                args(0, " "),
            ],
            &[begin(0, "f"), begin(0, "f")],
            &[StreamEvent::Content("a <call>".into())],
        ];
        for events in bad {
            assert!(
                check_events("a <call>", events, &["<call>"], &[]).is_err(),
                "{events:?}"
            );
        }
    }

    #[test]
    fn markers_formed_by_removing_others_may_show() {
        let events = [StreamEvent::Content("<call>".into())];
        assert_eq!(
            check_events("<ca<eot>ll>", &events, &["<call>", "<eot>"], &[]),
            Ok(())
        );
    }

    #[test]
    fn a_marker_the_output_also_holds_whole_may_still_be_joined() {
        // `[0]` is tag-shaped and removable; removing it must not hide the joined marker.
        let output = "func<eot>call[{\"a\": 1}] x = funccall[0]";
        let events = [StreamEvent::Content("funccall[{\"a\": 1}] x =".into())];
        assert_eq!(
            check_events(output, &events, &["funccall[", "<eot>"], &[]),
            Ok(())
        );
    }

    #[test]
    fn markers_joined_around_a_span_without_events_may_show() {
        let output = "funccall[]x funccal[0]l[{}]";
        let events = [StreamEvent::Content("funccall[{}]".into())];
        assert_eq!(check_events(output, &events, &["funccall["], &[]), Ok(()));
    }

    #[test]
    fn chunks_cover_the_output_at_character_boundaries() {
        let text = "aé東🌧b";
        for cuts in [
            Cuts::Whole,
            Cuts::Chars(1),
            Cuts::Chars(3),
            Cuts::Bytes(vec![2, 3, 4, 100]),
        ] {
            let chunks = cuts.chunks(text);
            assert_eq!(chunks.concat(), text, "{cuts:?}");
        }
        assert_eq!(Cuts::Chars(2).chunks(text), ["aé", "東🌧", "b"]);
    }
}
