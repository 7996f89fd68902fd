//! A component that exports `plugboard:adapter/adapter@9.0.0`.

wit_bindgen::generate!({ path: "wit", world: "model-adapter" });

struct Future;

impl exports::plugboard::adapter::adapter::Guest for Future {
    fn info() -> String {
        "from the future".into()
    }
}

#[cfg(target_family = "wasm")]
export!(Future);
