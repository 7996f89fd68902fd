//! The model store against a fake hub (a test double, named as one: the hub is not reachable
//! here) serving the real test GGUFs: downloads land in the hub's cache layout, resume after a
//! cut, are verified before they are published, are shared, and stop when no one waits; the
//! CLI, Ollama's `/api/pull` through the real `ollama` client, `/v1/models/pull`, pull on
//! first use, the config file read again while serving; and Python's `huggingface_hub` and
//! plugboard using each other's files.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use plugboard::store::{HubFile, PullError, PullState, Store, StoreOptions};
use plugboard_tests::fake_hub::{COMMIT, FakeHub, HubFault};
use plugboard_tests::http::{get, post};
use plugboard_tests::{TestServer, models, plugboard_bin, root};

const GEMMA_REPO: &str = "test/gemma-3-270m-GGUF";
const GEMMA_FILE: &str = "gemma-3-270m-Q4_K_M.gguf";
/// A second repository, serving the Gemma file under another name (the smaller test model keeps
/// the downloads short).
const OTHER_REPO: &str = "test/other-270m-GGUF";
const OTHER_FILE: &str = "other-270m-q4_k_m.gguf";

fn store(root: &Path, hub: &FakeHub, reserve: u64) -> Arc<Store> {
    Store::new(StoreOptions {
        root: root.to_path_buf(),
        endpoint: hub.base.clone(),
        token: None,
        reserve,
    })
    .expect("a store")
}

fn file(repo: &str, name: &str) -> HubFile {
    HubFile {
        repo: repo.into(),
        revision: "main".into(),
        file: name.into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Every file under a folder, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .expect("under")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_pull_lands_in_the_hub_layout_and_a_cut_connection_resumes() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    let cut = 50 << 20;
    let sha = hub.add(
        GEMMA_REPO,
        GEMMA_FILE,
        &gemma,
        Some(HubFault::CutOnceAfter(cut)),
    );
    let dir = tempfile::tempdir().expect("a folder");
    let store = store(dir.path(), &hub, 0);
    let rt = runtime();

    let pulled = rt
        .block_on(store.pull_and_wait(file(GEMMA_REPO, GEMMA_FILE)))
        .expect("the pull resumes after the cut and succeeds");
    assert!(pulled.downloaded);
    assert_eq!(pulled.digest, format!("sha256:{sha}"));
    // The second request asks for the rest only: from what reached the disk before the cut.
    let downloads = hub.downloads();
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert_eq!(downloads[0], (sha.clone(), 0));
    assert!(
        downloads[1].1 > cut / 2 && downloads[1].1 <= cut,
        "resumed at {} (cut at {cut})",
        downloads[1].1
    );
    // The hub's layout: the blob named by its hash, a relative link from the snapshot, the ref.
    let repo = dir.path().join("models--test--gemma-3-270m-GGUF");
    let link = repo.join("snapshots").join(COMMIT).join(GEMMA_FILE);
    assert_eq!(pulled.path, link);
    assert_eq!(
        std::fs::read_link(&link).expect("a link"),
        Path::new("../../blobs").join(&sha)
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).expect("the ref"),
        COMMIT
    );
    assert_eq!(
        std::fs::metadata(&link).expect("the blob").len(),
        std::fs::metadata(&gemma).expect("the model").len()
    );
    assert!(
        !files_under(&repo)
            .iter()
            .any(|f| f.ends_with(".incomplete")),
        "{:?}",
        files_under(&repo)
    );
    assert_eq!(store.find(&file(GEMMA_REPO, GEMMA_FILE)), Some(link));

    // Pulled again: nothing is downloaded.
    let again = rt
        .block_on(store.pull_and_wait(file(GEMMA_REPO, GEMMA_FILE)))
        .expect("already here");
    assert!(!again.downloaded);
    assert_eq!(hub.downloads().len(), 2);
}

#[test]
fn wrong_bytes_missing_files_a_non_gguf_and_a_full_disk_leave_nothing_behind() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(
        "test/corrupt",
        GEMMA_FILE,
        &gemma,
        Some(HubFault::WrongBytes),
    );
    let text = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(text.path(), "this is a README, not a model\n".repeat(100)).expect("written");
    hub.add("test/text", "model.gguf", text.path(), None);
    hub.add(GEMMA_REPO, GEMMA_FILE, &gemma, None);
    let dir = tempfile::tempdir().expect("a folder");
    let store = store(dir.path(), &hub, 0);
    let rt = runtime();
    let pull = |repo: &str, name: &str| {
        rt.block_on(store.pull_and_wait(file(repo, name)))
            .expect_err("refused")
    };

    let error = pull("test/corrupt", GEMMA_FILE);
    assert!(matches!(*error, PullError::Checksum { .. }), "{error}");
    assert!(error.to_string().contains("nothing was kept"), "{error}");
    let error = pull("test/text", "model.gguf");
    assert!(matches!(*error, PullError::NotGguf(_)), "{error}");
    let error = pull("test/missing", GEMMA_FILE);
    assert!(matches!(*error, PullError::NotFound(_)), "{error}");
    let error = pull(GEMMA_REPO, "nope.gguf");
    assert!(matches!(*error, PullError::NotFound(_)), "{error}");
    // Nothing of them anywhere: no blob, no part, no snapshot.
    for repo in ["models--test--corrupt", "models--test--text"] {
        let left: Vec<String> = files_under(&dir.path().join(repo));
        assert!(left.is_empty(), "{repo}: {left:?}");
    }
    assert!(store.find(&file("test/corrupt", GEMMA_FILE)).is_none());

    // A download that would leave less than the reserve free is refused before it starts.
    let full = self::store(dir.path(), &hub, u64::MAX / 4);
    let error = rt
        .block_on(full.pull_and_wait(file(GEMMA_REPO, GEMMA_FILE)))
        .expect_err("no room");
    assert!(matches!(*error, PullError::Disk { .. }), "{error}");
    assert!(
        error.to_string().contains("not enough disk space"),
        "{error}"
    );
    assert!(files_under(&dir.path().join("models--test--gemma-3-270m-GGUF")).is_empty());
}

#[test]
fn two_pulls_share_one_download_and_one_no_one_waits_for_stops() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(GEMMA_REPO, GEMMA_FILE, &gemma, None);
    hub.add(
        "test/slow",
        GEMMA_FILE,
        &gemma,
        Some(HubFault::Slow(8 << 20)),
    );
    let dir = tempfile::tempdir().expect("a folder");
    let store = store(dir.path(), &hub, 0);
    let rt = runtime();

    let (a, b) = rt.block_on(async {
        let first = store.pull_and_wait(file(GEMMA_REPO, GEMMA_FILE));
        let second = store.pull_and_wait(file(GEMMA_REPO, GEMMA_FILE));
        tokio::join!(first, second)
    });
    assert!(a.expect("first").downloaded && b.expect("second").downloaded);
    assert_eq!(hub.downloads().len(), 1, "one download for both");

    // A slow pull: its progress moves; when its only watcher goes, it stops, and nothing is
    // published (the part stays, for the next pull to resume).
    let completed = rt.block_on(async {
        let mut progress = store.pull(file("test/slow", GEMMA_FILE));
        let mut seen = Vec::new();
        while seen.len() < 3 {
            progress.changed().await.expect("progress");
            if let PullState::Downloading { completed, .. } = &*progress.borrow() {
                seen.push(*completed);
            }
        }
        seen
    });
    assert!(completed.windows(2).all(|w| w[0] < w[1]), "{completed:?}");
    std::thread::sleep(Duration::from_millis(500));
    let repo = dir.path().join("models--test--slow");
    let left = files_under(&repo);
    assert!(
        left.iter()
            .all(|f| f.starts_with("blobs/") && f.ends_with(".incomplete")),
        "only the part is left: {left:?}"
    );
    assert!(store.find(&file("test/slow", GEMMA_FILE)).is_none());
}

/// `plugboard` with the fake hub as its hub and `hub` as its store.
fn plugboard(hub: &FakeHub, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(plugboard_bin())
        .args(args)
        .arg("--hub-cache")
        .arg(cache)
        .env("HF_ENDPOINT", &hub.base)
        .env_remove("HF_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("plugboard runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn pull_list_show_and_rm_from_the_command_line() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(GEMMA_REPO, GEMMA_FILE, &gemma, None);
    hub.add(GEMMA_REPO, "gemma-3-270m-Q8_0.gguf", &gemma, None);
    let cache = tempfile::tempdir().expect("a folder");
    let name = format!("hf.co/{GEMMA_REPO}:Q4_K_M");

    let (ok, out, err) = plugboard(&hub, cache.path(), &["pull", &name]);
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with(&format!("pulled {name} (")), "{out}");
    let (ok, out, err) = plugboard(&hub, cache.path(), &["list", "--json"]);
    assert!(ok, "{err}");
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let row = listed
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} is listed: {out}"));
    assert_eq!(row["quant"], "Q4_K_M");
    assert_eq!(row["family"], "gemma3");
    assert!(row["size"].as_u64().unwrap_or(0) > 200 << 20, "{row}");
    let (ok, table, err) = plugboard(&hub, cache.path(), &["list"]);
    assert!(ok && table.starts_with("NAME"), "{table}\n{err}");

    // Shown by its repository alone (Q4_K_M is the default quant), as Ollama names it.
    let (ok, out, err) = plugboard(
        &hub,
        cache.path(),
        &["show", &format!("hf.co/{GEMMA_REPO}"), "--json"],
    );
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(shown["architecture"], "gemma3");
    assert!(
        shown["context_length"].as_u64().unwrap_or(0) >= 8192,
        "{shown}"
    );
    assert!(
        shown["memory_estimate"]["weights"].as_u64().is_some(),
        "{shown}"
    );

    // A name that would leave the store is refused before anything is asked of the hub.
    let (ok, _, err) = plugboard(&hub, cache.path(), &["pull", "org/repo/../../../x.gguf"]);
    assert!(!ok && err.contains("not a repository file name"), "{err}");
    // A quantisation the repository lacks: the error lists what it has.
    let (ok, _, err) = plugboard(&hub, cache.path(), &["pull", &format!("{GEMMA_REPO}:Q6_K")]);
    assert!(!ok && err.contains("Q4_K_M, Q8_0"), "{err}");

    let (ok, out, err) = plugboard(&hub, cache.path(), &["rm", &name]);
    assert!(
        ok && out.starts_with(&format!("deleted {name}")),
        "{out}\n{err}"
    );
    assert!(
        files_under(cache.path())
            .iter()
            .all(|f| f.starts_with(".locks"))
    );
    let (_, out, _) = plugboard(&hub, cache.path(), &["list", "--json"]);
    assert!(!out.contains(&name), "{out}");
}

#[test]
fn pulled_over_http_a_model_serves_and_the_config_file_is_read_again() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(GEMMA_REPO, GEMMA_FILE, &gemma, None);
    hub.add(OTHER_REPO, OTHER_FILE, &gemma, None);
    let cache = tempfile::tempdir().expect("a folder");
    let config_dir = tempfile::tempdir().expect("a folder");
    let config = config_dir.path().join("models.toml");
    std::fs::write(&config, "").expect("written");
    let weights = tempfile::tempdir().expect("a folder");
    let server = TestServer::start_with_env(
        &[
            "--hub-cache",
            cache.path().to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--weight-cache",
            weights.path().to_str().expect("utf-8"),
        ],
        &[("HF_ENDPOINT", &hub.base)],
    );
    let cached = |file: &str| -> Vec<String> {
        std::fs::read_dir(weights.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{file}-")) && n.ends_with(".weights"))
                    .collect()
            })
            .unwrap_or_default()
    };

    // The real ollama client: pull with progress, generate, copy, show, delete.
    let name = format!("hf.co/{GEMMA_REPO}:Q4_K_M");
    let out = server.run_client("store_client.py", &["pull", &name]);
    let statuses: Vec<&str> = out["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"), "{out}");
    assert_eq!(statuses.last(), Some(&"success"), "{out}");
    assert!(statuses.contains(&"verifying sha256 digest"), "{out}");
    let files: Vec<&Value> = out["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["digest"].is_string())
        .collect();
    let last = files.last().expect("file progress");
    assert_eq!(last["completed"], last["total"], "{out}");
    assert!(last["digest"].as_str().unwrap_or("").starts_with("sha256:"));
    assert!(!out["answer"].as_str().unwrap_or("").is_empty(), "{out}");
    assert!(
        out["listed"]
            .as_array()
            .expect("listed")
            .iter()
            .any(|m| m == name.as_str() || m == "my-copy"),
        "{out}"
    );
    assert_eq!(out["family"], "gemma3");
    assert_eq!(out["quantization"], "Q4_K_M");
    assert!(
        !out["after"]
            .as_array()
            .expect("after")
            .iter()
            .any(|m| m == name.as_str()),
        "{out}"
    );
    assert_eq!(out["gone"], 404, "{out}");
    // Its load cached its converted weights; deleting the model deleted them.
    let log = server.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        log.contains("converted weights cached") && log.contains(&format!("{GEMMA_FILE}-")),
        "{log}"
    );
    assert!(cached(GEMMA_FILE).is_empty(), "{:?}", cached(GEMMA_FILE));

    // A model added to the config file serves without a restart, pulled on first use.
    std::fs::write(
        &config,
        format!("[[models]]\nid = \"watched\"\nsource = {{ hf = \"{OTHER_REPO}\", quant = \"q4_k_m\" }}\n"),
    )
    .expect("written");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let models = get(&server.base, "/v1/models").json();
        let watched = models["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|m| m["id"] == "watched")
            .cloned();
        if let Some(watched) = watched {
            assert_eq!(watched["plugboard"]["state"], "not_downloaded", "{watched}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the config change was not seen: {models}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = post(
        &server.base,
        "/v1/chat/completions",
        &json!({"model": "watched", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Say hi."}]}),
        &[],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(cached(OTHER_FILE).len(), 1, "{:?}", cached(OTHER_FILE));
    // `plugboard ps` asks the server what it has loaded.
    let ps = Command::new(plugboard_bin())
        .args(["ps", "--url", &server.base])
        .output()
        .expect("plugboard runs");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        ps.starts_with("NAME") && ps.contains("watched") && ps.contains("minutes from now"),
        "{ps}"
    );
    // A broken config changes nothing.
    std::fs::write(&config, "[[models]]\nid = 3\n").expect("written");
    std::thread::sleep(Duration::from_millis(800));
    let models = get(&server.base, "/v1/models").json().to_string();
    assert!(models.contains("\"watched\""), "{models}");

    // plugboard's own SSE pull, of a file already here: it says so, and names the model.
    let events = post(
        &server.base,
        "/v1/models/pull",
        &json!({"model": format!("{OTHER_REPO}:Q4_K_M")}),
        &[],
    )
    .events();
    let done = events.last().expect("events");
    assert_eq!(done["status"], "success", "{events:?}");
    assert_eq!(done["downloaded"], false);
    assert_eq!(done["model"], "watched", "{done}");
    let missing = post(
        &server.base,
        "/v1/models/pull",
        &json!({"model": "test/nothing:Q4_K_M", "stream": false}),
        &[],
    );
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(missing.code(), "model_download_failed");
}

#[test]
fn huggingface_hub_and_plugboard_use_each_others_files() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(GEMMA_REPO, GEMMA_FILE, &gemma, None);
    hub.add(OTHER_REPO, OTHER_FILE, &gemma, None);
    let cache = tempfile::tempdir().expect("a folder");
    let cache_str = cache.path().to_str().expect("utf-8");
    let python = |args: &[&str]| -> Value {
        let output = Command::new("python3")
            .arg(root().join("tests/clients/store_client.py"))
            .arg("unused")
            .args(args)
            .env("HF_ENDPOINT", &hub.base)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env_remove("HF_TOKEN")
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON")
    };

    // Downloaded by huggingface_hub, used by plugboard without a new download.
    let theirs = python(&["hf-download", GEMMA_REPO, GEMMA_FILE, cache_str]);
    assert_eq!(hub.downloads().len(), 1);
    let (ok, out, err) = plugboard(
        &hub,
        cache.path(),
        &["pull", &format!("{GEMMA_REPO}/{GEMMA_FILE}")],
    );
    assert!(ok && out.starts_with("already here:"), "{out}\n{err}");
    assert!(
        out.contains(theirs["path"].as_str().expect("a path")),
        "{out}"
    );
    assert_eq!(hub.downloads().len(), 1, "plugboard downloaded nothing");

    // Downloaded by plugboard, found by huggingface_hub offline.
    let (ok, out, err) = plugboard(
        &hub,
        cache.path(),
        &["pull", &format!("{OTHER_REPO}/{OTHER_FILE}")],
    );
    assert!(ok && out.starts_with("pulled"), "{out}\n{err}");
    let found = python(&[
        "hf-download",
        OTHER_REPO,
        OTHER_FILE,
        cache_str,
        "--local-only",
    ]);
    assert!(
        out.contains(found["path"].as_str().expect("a path")),
        "{out}\n{found}"
    );
}

#[test]
fn a_client_that_leaves_an_api_pull_stops_the_download() {
    let Some(gemma) = models::gemma() else { return };
    let hub = FakeHub::start();
    hub.add(
        "test/slow",
        GEMMA_FILE,
        &gemma,
        Some(HubFault::Slow(4 << 20)),
    );
    let cache = tempfile::tempdir().expect("a folder");
    let server = TestServer::start_with_env(
        &["--hub-cache", cache.path().to_str().expect("utf-8")],
        &[("HF_ENDPOINT", &hub.base)],
    );
    let part_size = || -> u64 {
        files_under(&cache.path().join("models--test--slow"))
            .iter()
            .filter(|f| f.ends_with(".incomplete"))
            .map(|f| {
                std::fs::metadata(cache.path().join("models--test--slow").join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum()
    };
    let rt = runtime();
    let lines = rt.block_on(async {
        use futures::StreamExt;
        let response = reqwest::Client::new()
            .post(format!("{}/api/pull", server.base))
            .json(&json!({"model": format!("test/slow/{GEMMA_FILE}")}))
            .send()
            .await
            .expect("answers");
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while text.matches("\"completed\"").count() < 3 {
            let chunk = body.next().await.expect("more").expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
        // The response is dropped here: the client leaves.
    });
    assert!(
        lines.starts_with("{\"status\":\"pulling manifest\"}"),
        "{lines}"
    );
    std::thread::sleep(Duration::from_millis(800));
    let stopped = part_size();
    std::thread::sleep(Duration::from_millis(800));
    assert!(stopped > 0, "a part was written");
    assert_eq!(part_size(), stopped, "the download stopped with its client");
    let tags = get(&server.base, "/api/tags").json().to_string();
    assert!(!tags.contains("test/slow"), "{tags}");
}
