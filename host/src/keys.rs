//! API keys: who may call the server, and for what. Keys are kept as SHA-256 digests and
//! compared in constant time; a key is named in logs and metrics by its name or a short hash
//! of it, never by itself.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Chat, completions, model listings.
    Inference,
    /// Adapters, templates, tokenizer, model pull/delete/copy, events (and `/metrics` when
    /// protected).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Inference => "inference",
            Scope::Admin => "admin",
        }
    }
}

/// One key the server accepts.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl Key {
    pub fn new(name: impl Into<String>, secret: &str, scopes: Vec<Scope>) -> Key {
        Key {
            name: name.into(),
            digest: Sha256::digest(secret.as_bytes()).into(),
            scopes,
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// The keys file: `[[keys]]` tables with `name`, `key` (or `sha256`, the hex digest of the key,
/// so the file need not hold the secret) and `scopes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: Option<String>,
    sha256: Option<String>,
    #[serde(default = "all_scopes")]
    scopes: Vec<Scope>,
}

fn all_scopes() -> Vec<Scope> {
    vec![Scope::Inference, Scope::Admin]
}

/// Keys shorter than this are refused: they can be guessed.
const SHORTEST_KEY: usize = 16;

/// Every key the server accepts; empty means no key is asked for.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    /// The keys of `--api-key` (one key, every scope, named `default`) and of a keys file.
    pub fn load(single: Option<&str>, file: Option<&Path>) -> anyhow::Result<Keys> {
        let mut keys = Vec::new();
        if let Some(secret) = single {
            check_secret("--api-key", secret)?;
            keys.push(Key::new("default", secret, all_scopes()));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the keys file {}: {e}", path.display())
            })?;
            keys.extend(parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
        }
        let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("two keys are named '{}'", twice[0]);
        }
        Ok(Keys { keys })
    }

    pub fn from_keys(keys: Vec<Key>) -> Keys {
        Keys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose secret this is. Every key's digest is compared, each in constant time, so
    /// the time taken says nothing about how close a guess came, nor which key it was near.
    pub fn find(&self, secret: &str) -> Option<&Key> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }
}

/// A short, stable name for a secret that matched no key (for logs): 8 hex digits of its hash.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..4])
}

fn check_secret(name: &str, secret: &str) -> anyhow::Result<()> {
    if secret.chars().count() < SHORTEST_KEY {
        anyhow::bail!("the key {name} is shorter than {SHORTEST_KEY} characters");
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("the key {name} has spaces or control characters");
    }
    Ok(())
}

fn parse(text: &str) -> anyhow::Result<Vec<Key>> {
    // Not the parser's own message: it quotes the line, which may hold a key.
    let file: KeysFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        anyhow::anyhow!(
            "{} (line {})",
            e.message(),
            line.map_or("?".into(), |l| l.to_string())
        )
    })?;
    file.keys
        .into_iter()
        .map(|entry| {
            if entry.scopes.is_empty() {
                anyhow::bail!("key '{}' has no scopes", entry.name);
            }
            let digest = match (entry.key, entry.sha256) {
                (Some(secret), None) => {
                    check_secret(&format!("'{}'", entry.name), &secret)?;
                    Sha256::digest(secret.as_bytes()).into()
                }
                (None, Some(hex_digest)) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32);
                    let Some(bytes) = bytes else {
                        anyhow::bail!("key '{}': sha256 is not 64 hex digits", entry.name);
                    };
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(&bytes);
                    digest
                }
                _ => anyhow::bail!("key '{}' needs one of `key` or `sha256`", entry.name),
            };
            Ok(Key {
                name: entry.name,
                digest,
                scopes: entry.scopes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[keys]]
name = "app"
key = "sk-app-0123456789abcdef"
scopes = ["inference"]

[[keys]]
name = "ops"
sha256 = "SHA"
"#;

    fn keys() -> Keys {
        let ops_digest = hex::encode(Sha256::digest(b"sk-ops-0123456789abcdef"));
        Keys::from_keys(parse(&FILE.replace("SHA", &ops_digest)).expect("parses"))
    }

    #[test]
    fn a_key_is_found_by_its_secret_or_its_digest_with_its_scopes() {
        let keys = keys();
        let app = keys.find("sk-app-0123456789abcdef").expect("app");
        assert_eq!(app.name, "app");
        assert!(app.allows(Scope::Inference) && !app.allows(Scope::Admin));
        let ops = keys.find("sk-ops-0123456789abcdef").expect("ops");
        assert!(ops.allows(Scope::Admin) && ops.allows(Scope::Inference));
        assert!(keys.find("sk-app-0123456789abcdeF").is_none());
        assert!(keys.find("").is_none());
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        let short = "[[keys]]\nname = \"x\"\nkey = \"short\"\n";
        assert!(parse(short).unwrap_err().to_string().contains("shorter"));
        let neither = "[[keys]]\nname = \"x\"\n";
        assert!(
            parse(neither)
                .unwrap_err()
                .to_string()
                .contains("needs one of")
        );
        let scope = "[[keys]]\nname = \"x\"\nkey = \"0123456789abcdefgh\"\nscopes = [\"root\"]\n";
        assert!(parse(scope).is_err());
        let digest = "[[keys]]\nname = \"x\"\nsha256 = \"abc\"\n";
        assert!(parse(digest).unwrap_err().to_string().contains("64 hex"));
        assert!(Keys::load(Some("tiny"), None).is_err());
        // A typo near a key does not print the key.
        let typo = "[[keys]]\nname = \"x\"\nkey = \"sk-secret-0123456789\" oops\n";
        let error = parse(typo).unwrap_err().to_string();
        assert!(!error.contains("sk-secret"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn a_fingerprint_names_a_secret_without_showing_it() {
        let print = fingerprint("sk-app-0123456789abcdef");
        assert_eq!(print.len(), 8);
        assert!(!"sk-app-0123456789abcdef".contains(&print));
    }
}
