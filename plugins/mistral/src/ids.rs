//! Mistral's templates accept only tool-call ids of 9 letters and digits and refuse the rest
//! (`call_8f2a…` from OpenAI clients among them). Before rendering, every id is mapped to 9
//! alphanumerics: an id that already is one stays, any other is hashed, so the same id always
//! gives the same short id and a call and its result keep agreeing. Calls without an id get one
//! from their position, and a result without an id answers the next unanswered call.

use std::collections::VecDeque;

use plugboard_sdk::types::{Message, PromptRequest, Role};

const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LEN: usize = 9;

/// Whether `id` is already what Mistral accepts.
fn is_short(id: &str) -> bool {
    id.len() == LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The 9-character id for `id`: itself when it already is one, else a hash of it.
pub fn short_id(id: &str) -> String {
    if is_short(id) {
        return id.to_string();
    }
    // FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = [0u8; LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(hash % 62) as usize];
        hash /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request with every tool-call id in Mistral's form.
pub fn shorten(mut request: PromptRequest) -> PromptRequest {
    let mut unanswered: VecDeque<String> = VecDeque::new();
    let mut calls_seen = 0usize;
    for message in &mut request.messages {
        match message.role {
            Role::Assistant => {
                unanswered.clear();
                for call in &mut message.tool_calls {
                    let id = match &call.id {
                        Some(id) => short_id(id),
                        None => short_id(&format!("plugboard-call-{calls_seen}")),
                    };
                    calls_seen += 1;
                    unanswered.push_back(id.clone());
                    call.id = Some(id);
                }
            }
            Role::Tool => answer(message, &mut unanswered),
            Role::System | Role::User => {}
        }
    }
    request
}

fn answer(message: &mut Message, unanswered: &mut VecDeque<String>) {
    let id = match &message.tool_call_id {
        Some(id) => {
            let id = short_id(id);
            if let Some(pos) = unanswered.iter().position(|u| *u == id) {
                unanswered.remove(pos);
            }
            id
        }
        None => match unanswered.pop_front() {
            Some(id) => id,
            // A result of no known call: the template wants an id all the same.
            None => short_id("plugboard-result"),
        },
    };
    message.tool_call_id = Some(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nine_alphanumerics_and_stable() {
        assert_eq!(short_id("abcDEF123"), "abcDEF123");
        let a = short_id("call_8f2a9b7c6d5e4f3a2b1c0d9e");
        assert_eq!(a.len(), 9);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, short_id("call_8f2a9b7c6d5e4f3a2b1c0d9e"));
        assert_ne!(a, short_id("call_8f2a9b7c6d5e4f3a2b1c0d9f"));
    }
}
