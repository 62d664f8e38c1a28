//! What the load tools share (chat-load: a room fed at a rate; interaction-load: a lesson's
//! poll and reactions): the API calls of the setup, WebSocket helpers, the server's CPU and RSS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use yawc::{Frame, HttpRequestBuilder, OpCode, TcpWebSocket, WebSocket};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Result<Value> {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<String> {
        let v = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await?;
        Ok(v["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned())
    }
}

/// Server CPU time (s) and RSS (KiB) from /proc.
pub fn proc_stats(pid: Option<u32>) -> Option<(f64, u64)> {
    let pid = pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // CLK_TCK is 100 on Linux x86-64 and arm64.
    Some((ticks as f64 / 100.0, rss))
}

pub async fn connect(ws_url: &str, token: &str) -> Result<TcpWebSocket> {
    // BENCH_DEFLATE=1 offers permessage-deflate, as every browser does (it costs the server a
    // compressor per connection); the default measures uncompressed connections.
    let mut options = yawc::Options::default();
    if std::env::var("BENCH_DEFLATE").is_ok_and(|v| v == "1") {
        options = options.with_balanced_compression();
    }
    let ws = WebSocket::connect(ws_url.parse()?)
        .with_options(options)
        .with_request(HttpRequestBuilder::new().header("Authorization", format!("Bearer {token}")))
        .await?;
    Ok(ws)
}

pub async fn next_json(ws: &mut TcpWebSocket) -> Result<Value> {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no frame within 30 s")?
            .context("closed")?;
        match f.opcode() {
            OpCode::Text => return Ok(serde_json::from_slice(f.payload())?),
            OpCode::Close => bail!("closed by the server"),
            _ => {}
        }
    }
}

/// Connect and subscribe to `channel`.
pub async fn open(ws_url: &str, token: &str, channel: &str) -> Result<TcpWebSocket> {
    let mut ws = connect(ws_url, token).await?;
    ws.send(Frame::text(
        json!({"type": "subscribe", "channel": channel}).to_string(),
    ))
    .await?;
    loop {
        let v = next_json(&mut ws).await?;
        match v["type"].as_str() {
            Some("subscribed") if v["channel"] == channel => return Ok(ws),
            Some("error") => bail!("subscribe {channel}: {v}"),
            _ => {}
        }
    }
}

pub fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}
