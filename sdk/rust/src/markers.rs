//! A family's special markers, written once.
//!
//! An adapter names its markers in four places: the stream parser's [`Spec`] (reasoning, end
//! of turn), its [`AdapterInfo`](crate::types::AdapterInfo) (call triggers, end of turn), the
//! [`Prompt`] of each request (stop strings, call triggers, whether it ends inside reasoning)
//! and its call grammar ([`CallSyntax`](crate::grammar::CallSyntax): triggers, reasoning).
//! Written out in each place, the lists can drift apart unnoticed — a call marker the parser
//! reads but the info does not name is one the host's checks cannot keep out of content — so a
//! family writes one [`MarkerTable`] and every place reads it. Where a family really differs
//! from its table in one place, it changes what the table gave there and says why (e.g. a
//! Spec that also removes a stray closing tag).

use std::borrow::Cow;

use crate::grammar;
use crate::prompt::{calls_allowed, ends_inside};
use crate::stream::{CallMarkup, Spec};
use crate::types::{Prompt, PromptRequest, Trigger};

/// A family's markers: the one table its parser's spec, its info, its prompts and its call
/// grammar read.
///
/// `triggers` and `end_of_turn` describe what the family's *output* may hold, which the parser
/// reads and the info lists. `prompt_triggers` and `stop` are what *generation* watches for,
/// and may be fewer: a family whose parser reads several call forms is prompted for one (and
/// its grammar generates that one), and a marker removed from output may be an end-of-text
/// token the host stops at anyway. Both default to the wider list.
///
/// ```
/// use plugboard_sdk::markers::MarkerTable;
///
/// const END_OF_TURN: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];
/// const MARKERS: MarkerTable = MarkerTable::new(&["<tool_call>"], &END_OF_TURN)
///     .with_reasoning(("<think>", "</think>"))
///     .with_stop(&[END_OF_TURN[0]]);
/// assert_eq!(MARKERS.prompt_triggers, ["<tool_call>"]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerTable {
    /// Every marker that opens a call in the output, in any form the parser reads: the info's
    /// `tool_call_triggers`, which no content delta may hold.
    pub triggers: &'static [&'static str],
    /// The markers that open the calls the family is prompted to write and its grammar
    /// generates: the prompt's `tool_call_triggers` (where the host may switch to constrained
    /// decoding) and the grammar's triggers. All of `triggers` unless narrowed.
    pub prompt_triggers: &'static [&'static str],
    /// Markers that end a turn: removed from the output, and listed in the info (the host
    /// stops on those that are single tokens of the model).
    pub end_of_turn: &'static [&'static str],
    /// The prompt's stop strings. All of `end_of_turn` unless narrowed.
    pub stop: &'static [&'static str],
    /// The markers around reasoning, if the family reasons.
    pub reasoning: Option<(&'static str, &'static str)>,
}

impl MarkerTable {
    /// A family's call triggers and end-of-turn markers; no reasoning.
    pub const fn new(
        triggers: &'static [&'static str],
        end_of_turn: &'static [&'static str],
    ) -> Self {
        MarkerTable {
            triggers,
            prompt_triggers: triggers,
            end_of_turn,
            stop: end_of_turn,
            reasoning: None,
        }
    }

    /// With reasoning between `open` and `close`.
    pub const fn with_reasoning(self, (open, close): (&'static str, &'static str)) -> Self {
        MarkerTable {
            reasoning: Some((open, close)),
            ..self
        }
    }

    /// With fewer triggers in prompts and grammars than the parser reads.
    pub const fn with_prompt_triggers(self, prompt_triggers: &'static [&'static str]) -> Self {
        MarkerTable {
            prompt_triggers,
            ..self
        }
    }

    /// With other stop strings than the end-of-turn markers.
    pub const fn with_stop(self, stop: &'static [&'static str]) -> Self {
        MarkerTable { stop, ..self }
    }

    /// The parser's [`Spec`]: this table's reasoning and end-of-turn markers, the family's
    /// call markups, no whole-output rules.
    pub fn spec(&self, calls: Vec<CallMarkup>) -> Spec {
        Spec {
            reasoning: self
                .reasoning
                .map(|(open, close)| (Cow::Borrowed(open), Cow::Borrowed(close))),
            end_of_turn: self.end_of_turn.iter().map(|&m| Cow::Borrowed(m)).collect(),
            calls,
            whole: Vec::new(),
        }
    }

    /// The info's `tool_call_triggers`: [`triggers`](Self::triggers).
    pub fn info_triggers(&self) -> Vec<String> {
        owned(self.triggers)
    }

    /// The info's `end_of_turn`: [`end_of_turn`](Self::end_of_turn).
    pub fn info_end_of_turn(&self) -> Vec<String> {
        owned(self.end_of_turn)
    }

    /// The grammar's triggers ([`CallSyntax::triggers`](crate::grammar::CallSyntax)): the
    /// prompt triggers, anywhere in the output.
    pub fn grammar_triggers(&self) -> Vec<Trigger> {
        self.prompt_triggers
            .iter()
            .map(|&t| grammar::trigger(t))
            .collect()
    }

    /// The prompt `text` rendered for `request`: generation stops at [`stop`](Self::stop), the
    /// [`prompt_triggers`](Self::prompt_triggers) are named when the request allows calls
    /// ([`calls_allowed`]), and the output starts as reasoning when `text` ends inside an open
    /// reasoning block ([`ends_inside`]).
    pub fn prompt(&self, text: String, request: &PromptRequest) -> Prompt {
        let tool_call_triggers = if calls_allowed(request) {
            owned(self.prompt_triggers)
        } else {
            Vec::new()
        };
        Prompt {
            reasoning_open: self
                .reasoning
                .is_some_and(|(open, close)| ends_inside(&text, open, close)),
            text,
            stop: owned(self.stop),
            tool_call_triggers,
        }
    }
}

fn owned(markers: &[&str]) -> Vec<String> {
    markers.iter().map(|&m| m.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ModelConfig, Tool, ToolChoice};

    const MARKERS: MarkerTable = MarkerTable::new(&["<a>", "<b>"], &["<end>", "<eos>"])
        .with_reasoning(("<think>", "</think>"))
        .with_prompt_triggers(&["<a>"])
        .with_stop(&["<end>"]);

    fn request(tools: usize, tool_choice: ToolChoice) -> PromptRequest {
        let tool = Tool {
            name: "f".into(),
            description: None,
            parameters: "{}".into(),
        };
        PromptRequest {
            messages: vec![],
            tools: vec![tool; tools],
            tool_choice,
            parallel_tool_calls: true,
            add_generation_prompt: true,
            model: ModelConfig {
                chat_template: None,
                bos_token: None,
                eos_token: None,
            },
            template_variables: vec![],
        }
    }

    #[test]
    fn prompts_name_their_triggers_only_where_calls_are_allowed() {
        let prompt = MARKERS.prompt("x<think>".into(), &request(1, ToolChoice::Auto));
        assert_eq!(prompt.tool_call_triggers, ["<a>"]);
        assert_eq!(prompt.stop, ["<end>"]);
        assert!(prompt.reasoning_open);
        for (tools, choice) in [(0, ToolChoice::Auto), (1, ToolChoice::None)] {
            let prompt = MARKERS.prompt("x".into(), &request(tools, choice));
            assert!(prompt.tool_call_triggers.is_empty());
            assert!(!prompt.reasoning_open);
        }
    }

    #[test]
    fn the_spec_and_the_info_read_the_wider_lists() {
        let spec = MARKERS.spec(vec![]);
        assert_eq!(spec.end_of_turn, ["<end>", "<eos>"]);
        assert_eq!(spec.reasoning, Some(("<think>".into(), "</think>".into())));
        assert_eq!(MARKERS.info_triggers(), ["<a>", "<b>"]);
        assert_eq!(MARKERS.info_end_of_turn(), ["<end>", "<eos>"]);
        assert_eq!(MARKERS.grammar_triggers(), [grammar::trigger("<a>")]);
    }
}
