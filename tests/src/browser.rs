//! A real browser for tests: Debian's Chromium, headless, in a host's
//! network namespace, driven over the Chrome DevTools Protocol (its
//! websocket): open a page, evaluate JavaScript in it, take a screenshot.
//! The websocket is connected from a thread moved into the same namespace,
//! so the browser and the page it loads see that host's network; a socket
//! keeps its namespace, so the test's own thread then uses it.

use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::netns::Host;
use crate::process::{self, Proc};

pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    // Dropped last: the process, then its profile.
    proc: Proc,
    profile: tempfile::TempDir,
}

/// Where tests leave what they want kept (screenshots): `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs `f` on a thread inside `host`'s network namespace.
fn in_netns<T: Send + 'static>(
    host: &Host,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = host.netns_path();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns {path}: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?
}

impl Browser {
    /// Starts Chromium in `host`'s namespace on a blank page and attaches
    /// to that page.
    pub fn start(host: &Host) -> Result<Browser, String> {
        let profile = tempfile::Builder::new()
            .prefix("mesh-chromium-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut cmd = process::command(Some(host), Path::new("chromium"));
        cmd.args([
            "--headless",
            // Tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank");
        let proc = Proc::spawn("chromium", cmd);
        // Chromium writes its DevTools port (and browser path) here.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Chromium did not open its DevTools port within 60 s:\n{}",
                    proc.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The blank page's own websocket.
        let list = process::run({
            let mut c = process::command(Some(host), Path::new("curl"));
            c.args(["-sS", "--max-time", "5"])
                .arg(format!("http://127.0.0.1:{port}/json/list"));
            c
        });
        let targets: Value = serde_json::from_slice(&list.stdout)
            .map_err(|e| format!("DevTools /json/list: {e}: {:?}", list))?;
        let url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| format!("no page target in {targets}"))?
            .to_string();
        let ws = in_netns(host, move || {
            let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            let (ws, _) =
                tungstenite::client::client(url.as_str(), stream).map_err(|e| e.to_string())?;
            Ok(ws)
        })?;
        let mut b = Browser {
            ws,
            next_id: 0,
            proc,
            profile,
        };
        b.call("Page.enable", json!({}))?;
        Ok(b)
    }

    /// One DevTools command; its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(msg))
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let m = self.ws.read().map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if v["id"] != id {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(format!("{method}: {err}"));
            }
            return Ok(v["result"].clone());
        }
    }

    /// Loads `url` in the page.
    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        match r.get("errorText").and_then(Value::as_str) {
            Some(e) => Err(format!("{url}: {e}")),
            None => Ok(()),
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expression}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// A PNG of the page as it is now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<usize, String> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())?;
        std::fs::write(path, &png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(png.len())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("Browser.close", json!({}));
        let _ = self.ws.close(None);
        self.proc.stop(Duration::from_secs(5));
        // Its helpers (zygote, renderers) are found by the unique profile.
        let _ = std::process::Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(format!("user-data-dir={}", self.profile.path().display()))
            .status();
    }
}
