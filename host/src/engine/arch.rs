//! The architectures the engine runs, in one table: each one's GGUF name, the Hugging Face
//! `model_type`s the converter turns into it, and the traits that set it apart from the common
//! pre-norm decoder. The loader, the converter and the "unsupported architecture" error all
//! read this table, so adding an architecture starts here (see the engine's module doc).
//!
//! Tensor names are GGUF's, common to every architecture (`blk.N.attn_q.weight` …); what an
//! architecture has or lacks (fused q/k/v, biases, q/k norms, post-norms) the loader finds in
//! the file, so it needs no trait here.

/// An architecture the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Phi3,
    Gemma3,
}

/// What sets an architecture apart, where the file does not say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traits {
    /// Its name in `general.architecture`, and the prefix of its metadata keys.
    pub name: &'static str,
    /// The Hugging Face `model_type`s whose checkpoints convert to it (none: not convertible).
    pub checkpoint_types: &'static [&'static str],
    /// The feed-forward gate is GELU (tanh approximation) rather than SiLU.
    pub gelu: bool,
    /// Rotary embeddings rotate adjacent pairs (GGUF's q/k row order for Llama), rather than
    /// the two halves of a head. The converter reorders a checkpoint's q/k rows to match.
    pub interleaved_rope: bool,
    /// Embeddings are multiplied by √(embedding length) before the first layer.
    pub embed_scale: bool,
    /// Some layers attend to a sliding window (`attention.sliding_window` and its pattern are
    /// read from the file).
    pub sliding_window: bool,
}

const COMMON: Traits = Traits {
    name: "",
    checkpoint_types: &[],
    gelu: false,
    interleaved_rope: false,
    embed_scale: false,
    sliding_window: false,
};

impl Arch {
    /// Every architecture, in the order error messages list them.
    pub const ALL: [Arch; 4] = [Arch::Llama, Arch::Qwen2, Arch::Phi3, Arch::Gemma3];

    pub const fn traits(self) -> Traits {
        match self {
            // Llama 2/3, Mistral, DeepSeek Coder …
            Arch::Llama => Traits {
                name: "llama",
                checkpoint_types: &["llama", "mistral"],
                interleaved_rope: true,
                ..COMMON
            },
            // Biases on q/k/v, found in the file.
            Arch::Qwen2 => Traits {
                name: "qwen2",
                checkpoint_types: &["qwen2"],
                ..COMMON
            },
            // Fused q/k/v and gate/up projections, found in the file.
            Arch::Phi3 => Traits {
                name: "phi3",
                ..COMMON
            },
            // Per-head q/k norms and post-norms, found in the file.
            Arch::Gemma3 => Traits {
                name: "gemma3",
                gelu: true,
                embed_scale: true,
                sliding_window: true,
                ..COMMON
            },
        }
    }

    pub const fn name(self) -> &'static str {
        self.traits().name
    }

    /// The architecture of a `general.architecture` value.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The architecture a checkpoint's `model_type` converts to.
    pub fn of_checkpoint(model_type: &str) -> Option<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.traits().checkpoint_types.contains(&model_type))
    }

    /// "llama, qwen2, phi3, gemma3", for error messages.
    pub fn supported() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    /// The checkpoint `model_type`s the converter reads, for error messages.
    pub fn supported_checkpoints() -> String {
        Arch::ALL
            .iter()
            .flat_map(|a| a.traits().checkpoint_types)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checkpoint_types_lead_back_to_their_architecture() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
            for model_type in arch.traits().checkpoint_types {
                assert_eq!(Arch::of_checkpoint(model_type), Some(arch));
            }
        }
        assert_eq!(Arch::from_name("gpt2"), None);
        assert_eq!(Arch::supported(), "llama, qwen2, phi3, gemma3");
        assert_eq!(Arch::supported_checkpoints(), "llama, mistral, qwen2");
    }
}
