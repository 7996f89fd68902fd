//! Turning a token stream into a text stream: incremental detokenisation that never splits a
//! UTF-8 character, and stop strings that may span tokens and are never emitted.

use super::tokenizer::Tokenizer;

/// Decodes tokens one at a time, emitting text only once it is whole.
#[derive(Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    /// Tokens before `prefix` are done; `prefix..read` were decoded last time as context, so
    /// that tokenizers which depend on the previous token (leading spaces) decode right.
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Adds a token; returns the new text it completes (possibly empty).
    pub fn push(&mut self, id: u32, tokenizer: &Tokenizer) -> String {
        self.ids.push(id);
        let before = tokenizer
            .decode(&self.ids[self.prefix..self.read])
            .unwrap_or_default();
        let after = tokenizer
            .decode(&self.ids[self.prefix..])
            .unwrap_or_default();
        // A trailing replacement character means a multi-byte character is not complete yet.
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return String::new();
        }
        let delta = match after.strip_prefix(before.as_str()) {
            Some(delta) => delta.to_string(),
            None => after.get(before.len()..).unwrap_or("").to_string(),
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        delta
    }

    /// Whatever is still undecided at the end (an incomplete character is written as U+FFFD).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> String {
        let before = tokenizer
            .decode(&self.ids[self.prefix..self.read])
            .unwrap_or_default();
        let after = tokenizer
            .decode(&self.ids[self.prefix..])
            .unwrap_or_default();
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        after
            .strip_prefix(before.as_str())
            .unwrap_or("")
            .to_string()
    }
}

/// Finds stop strings in streamed text, holding back what may be the start of one.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What [`StopMatcher::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    /// Text that is certainly output.
    pub text: String,
    /// The stop string that ended the output, if one did (it is not in `text`).
    pub stop: Option<String>,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Matched {
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = earliest {
            let text = self.held[..at].to_string();
            let stop = stop.clone();
            self.held.clear();
            return Matched {
                text,
                stop: Some(stop),
            };
        }
        // Hold back the longest tail that some stop string starts with.
        let hold = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|n| s.is_char_boundary(*n))
                    .filter(|n| self.held.ends_with(&s[..*n]))
                    .max()
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - hold;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Matched { text, stop: None }
    }

    /// The output ended without a stop string: the held-back text is output after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_span_pushes_and_are_never_emitted() {
        let mut m = StopMatcher::new(&["</answer>".to_string(), "STOP".to_string()]);
        assert_eq!(m.push("Hello </ans").text, "Hello ");
        let out = m.push("wer> more");
        assert_eq!(
            out,
            Matched {
                text: String::new(),
                stop: Some("</answer>".into())
            }
        );
    }

    #[test]
    fn a_false_start_is_released() {
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        assert_eq!(m.push("a ST").text, "a ");
        assert_eq!(m.push("ART").text, "START");
        assert_eq!(m.push(" ST").text, " ");
        assert_eq!(m.finish(), "ST");
    }
}
