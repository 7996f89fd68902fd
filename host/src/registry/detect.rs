//! Picking the adapter for a chat template, by the markup the template writes (as llama.cpp
//! recognises chat formats). The most specific signs come first.

/// The adapter for a model whose chat template is `template` (`jinja` when nothing more
/// specific fits, since it renders any template).
pub fn adapter_for(template: Option<&str>) -> &'static str {
    let Some(t) = template else { return "tool-use" };
    let has = |s: &str| t.contains(s);
    if has("start_function_call") {
        "functiongemma"
    } else if has("<｜tool▁calls▁begin｜>") || has("<｜tool▁call▁begin｜>") {
        "deepseek"
    } else if has("[TOOL_CALLS]") || has("[AVAILABLE_TOOLS]") {
        "mistral"
    } else if has("functools") || has("<|/tool|>") {
        // Phi-4-mini: the official template wraps the tool list in `<|tool|>…<|/tool|>`;
        // converted files often carry a template that spells out `functools[…]` instead.
        "phi4-mini"
    } else if has("<|tool_call|>") || has("<|start_of_role|>") {
        "granite"
    } else if has("<|python_start|>") || has("<|header_start|>") {
        // Llama 4 writes calls in Python syntax.
        "pythonic"
    } else if has("<|python_tag|>") || has("<|start_header_id|>") {
        "llama3"
    } else if has("<tool_call>") || has("<|im_start|>") {
        "hermes"
    } else if has("<|user|>") || has("### Instruction") {
        // Phi-3 and DeepSeek Coder have no tool format: tools go through the tool-use block.
        "tool-use"
    } else {
        "jinja"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_templates_pick_their_family() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/templates");
        let expected = [
            ("Qwen--Qwen2.5-7B-Instruct.jinja", "hermes"),
            ("Qwen--Qwen3-0.6B.jinja", "hermes"),
            (
                "NousResearch--Hermes-3-Llama-3.1-8B--tool_use.jinja",
                "hermes",
            ),
            ("meta-llama--Llama-3.1-8B-Instruct.jinja", "llama3"),
            ("meta-llama--Llama-3.2-3B-Instruct.jinja", "llama3"),
            (
                "meta-llama--Llama-4-Scout-17B-16E-Instruct.jinja",
                "pythonic",
            ),
            ("mistralai--Mistral-7B-Instruct-v0.3.jinja", "mistral"),
            (
                "mistralai--Mistral-Small-3.2-24B-Instruct-2506.jinja",
                "mistral",
            ),
            ("deepseek-ai--DeepSeek-V3.jinja", "deepseek"),
            ("deepseek-ai--DeepSeek-R1.jinja", "deepseek"),
            ("ibm-granite--granite-3.3-2b-instruct.jinja", "granite"),
            ("microsoft--Phi-4-mini-instruct.jinja", "phi4-mini"),
            ("microsoft--Phi-3-mini-4k-instruct.jinja", "tool-use"),
            (
                "deepseek-ai--deepseek-coder-6.7b-instruct.jinja",
                "tool-use",
            ),
        ];
        for (file, adapter) in expected {
            let template =
                std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(adapter_for(Some(&template)), adapter, "{file}");
        }
    }
}
