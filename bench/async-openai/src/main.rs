//! async-openai streaming client for the benchmark. Same command line and JSON output as
//! bench/c/ylokh_bench.c (see there), so bench/run.py treats every client alike.

use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
    CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use futures::StreamExt;

struct Args {
    base_url: String,
    workload: String,
    tokens: u32,
    calls: u32,
    streams: u32,
}

fn args() -> Args {
    let mut a = Args {
        base_url: String::new(),
        workload: "stream".into(),
        tokens: 20,
        calls: 1,
        streams: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--base-url" => a.base_url = v,
            "--workload" => a.workload = v,
            "--tokens" => a.tokens = v.parse().unwrap(),
            "--calls" => a.calls = v.parse().unwrap(),
            "--streams" => a.streams = v.parse().unwrap(),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn client(base_url: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key("sk-bench"),
    )
}

fn request(tokens: u32) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .max_tokens(tokens)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Write a long story.")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

#[derive(Default, Clone, Copy)]
struct Call {
    tokens: u64,
    bytes: u64,
    ttft: Duration,
    total: Duration,
}

/// One streamed reply; the text of every content delta is looked at, as a consumer would.
async fn one_call(client: &Client<OpenAIConfig>, tokens: u32) -> Call {
    let started = Instant::now();
    let mut call = Call::default();
    let mut stream = client
        .chat()
        .create_stream(request(tokens))
        .await
        .expect("create_stream");
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("stream chunk");
        for choice in &chunk.choices {
            if choice.index != 0 {
                continue;
            }
            if let Some(text) = choice.delta.content.as_deref() {
                if text.is_empty() {
                    continue;
                }
                if call.tokens == 0 {
                    call.ttft = started.elapsed();
                }
                call.tokens += 1;
                call.bytes += text.len() as u64;
            }
        }
    }
    call.total = started.elapsed();
    call
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a = args();
    let shared = client(&a.base_url);
    let rss_before = status_kb("VmRSS:");
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let calls: Vec<Call> = match a.workload.as_str() {
        "stream" => vec![one_call(&shared, a.tokens).await],
        "seq" => {
            let mut v = Vec::new();
            for _ in 0..a.calls {
                v.push(one_call(&shared, a.tokens).await);
            }
            v
        }
        "seqnew" => {
            let mut v = Vec::new();
            for _ in 0..a.calls {
                let c = client(&a.base_url);
                v.push(one_call(&c, a.tokens).await);
            }
            v
        }
        "concurrent" => {
            let tasks: Vec<_> = (0..a.streams)
                .map(|_| {
                    let c = shared.clone();
                    let n = a.tokens;
                    tokio::spawn(async move { one_call(&c, n).await })
                })
                .collect();
            let mut v = Vec::new();
            for t in tasks {
                v.push(t.await.unwrap());
            }
            v
        }
        w => panic!("unknown workload {w}"),
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let hwm_after = status_kb("VmHWM:");
    let later: Vec<&Call> = calls.iter().skip(usize::from(calls.len() > 1)).collect();
    println!(
        "{{\"client\":\"async-openai\",\"calls\":{},\"tokens\":{},\"bytes\":{},\"cpu_s\":{:.6},\"wall_s\":{:.6},\
         \"ttft_us\":{:.1},\"call_us\":{:.1},\"rss_before_kb\":{},\"hwm_after_kb\":{}}}",
        calls.len(),
        calls.iter().map(|c| c.tokens).sum::<u64>(),
        calls.iter().map(|c| c.bytes).sum::<u64>(),
        cpu,
        wall,
        median(later.iter().map(|c| c.ttft.as_secs_f64() * 1e6).collect()),
        median(later.iter().map(|c| c.total.as_secs_f64() * 1e6).collect()),
        rss_before,
        hwm_after
    );
}
