//! Plain HTTP for the end-to-end tests: a JSON request, its answer read whole.

use std::time::Duration;

use serde_json::Value;

/// An HTTP answer, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `data:` payloads of an SSE answer, `[DONE]` left out.
    pub fn events(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }

    /// The OpenAI error's code.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub fn post(base: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    send(|client| {
        let mut request = client.post(format!("{base}{path}")).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    })
}

/// A POST of these bytes as they are (a body that is not JSON), answered whole.
pub fn post_raw(base: &str, path: &str, body: &str) -> Answer {
    let body = body.to_string();
    send(|client| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
    })
}

/// A GET, answered whole.
pub fn get(base: &str, path: &str) -> Answer {
    get_with(base, path, &[])
}

/// A GET with these headers, answered whole.
pub fn get_with(base: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(|client| {
        let mut request = client.get(format!("{base}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    })
}

/// Sends a request (at most 120 s) and reads its answer whole.
fn send(request: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let response = request(&reqwest::Client::new())
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("the server answers");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap_or_default(),
        }
    })
}

/// Follows an SSE answer on a thread of its own (a POST with `body`, else a GET): each
/// `data:` payload arrives on the channel as it comes, `None` when the stream ends. Dropping
/// the receiver hangs up.
pub fn sse(url: &str, body: Option<Value>) -> std::sync::mpsc::Receiver<Option<String>> {
    follow(url, body, |buffer| {
        let end = buffer.find("\n\n")?;
        let frame: String = buffer.drain(..end + 2).collect();
        Some(
            frame
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .map(str::to_string)
                .collect(),
        )
    })
}

/// Follows an NDJSON answer (Ollama's streams) the same way: each line as it comes.
pub fn ndjson(url: &str, body: Option<Value>) -> std::sync::mpsc::Receiver<Option<String>> {
    follow(url, body, |buffer| {
        let end = buffer.find('\n')?;
        let line: String = buffer.drain(..end + 1).collect();
        Some(
            vec![line.trim().to_string()]
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect(),
        )
    })
}

/// Reads an answer on a thread of its own; `next` takes the next frame's items out of what
/// has arrived, `None` when no whole frame has.
fn follow(
    url: &str,
    body: Option<Value>,
    next: fn(&mut String) -> Option<Vec<String>>,
) -> std::sync::mpsc::Receiver<Option<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            use futures::StreamExt;
            let client = reqwest::Client::new();
            let request = match &body {
                Some(body) => client.post(&url).json(body),
                None => client.get(&url),
            };
            let response = request.send().await.expect("answered");
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(items) = next(&mut buffer) {
                    for item in items {
                        if tx.send(Some(item)).is_err() {
                            return; // the receiver is gone: hang up
                        }
                    }
                }
            }
            let _ = tx.send(None);
        });
    });
    rx
}
