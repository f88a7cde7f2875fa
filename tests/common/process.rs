//! Running a program with a time limit and reading what it printed, for the tests that
//! drive C, C++ and Go programs and build tools.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's root.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of this test run, from this executable's path
/// (`.../target/debug/deps/c_api-<hash>` -> `.../target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// The cargo profile of this test run, as `cargo --profile` and `make install
/// INSTALL_PROFILE=` take it ("dev" for target/debug).
pub fn cargo_profile() -> String {
    let dir = profile_dir();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    if name == "debug" {
        "dev".to_owned()
    } else {
        name.to_owned()
    }
}

/// The target directory of the `make install` build the tests use
/// (`target/<profile>/ecosystem/cargo-target`, `INSTALL_TARGET_DIR=`): a directory of its own
/// cannot deadlock on the build lock of the cargo running the tests. tests/ecosystem.rs,
/// tests/abi.rs and tests/swift.rs share it, so the library is built once per run.
pub fn install_target_dir() -> PathBuf {
    profile_dir().join("ecosystem").join("cargo-target")
}

/// Make's and cargo's jobserver settings of an outer `make test`: a nested make or cargo
/// must not try to use the outer one's file descriptors.
pub const JOBSERVER_ENV: &[&str] = &["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"];

/// Environment variables the library (or libc) reads that must not leak from the
/// developer's shell into the programs a test runs: they would send requests elsewhere.
pub const SCRUBBED_ENV: &[&str] = &[
    "YLOKH_BASE_URL",
    "YLOKH_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// How a program run ended and what it printed.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub what: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Everything about the run, for failure messages.
    pub fn show(&self) -> String {
        format!(
            "{}\n  exit: {} after {:?}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.what, self.status, self.elapsed, self.stdout, self.stderr
        )
    }

    /// The rest of every stdout line that starts with `label` and a space.
    pub fn lines(&self, label: &str) -> Vec<&str> {
        let prefix = format!("{label} ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    /// The rest of the only line that starts with `label`.
    pub fn line(&self, label: &str) -> &str {
        match self.lines(label).as_slice() {
            [one] => one,
            other => panic!(
                "expected one {label:?} line, found {}\n{}",
                other.len(),
                self.show()
            ),
        }
    }

    pub fn json(&self, label: &str) -> Value {
        let text = self.line(label);
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{label} line is not JSON ({e}): {text}\n{}", self.show()))
    }

    /// A `LABEL [..]` line of JSON strings.
    pub fn strings(&self, label: &str) -> Vec<String> {
        serde_json::from_value(self.json(label))
            .unwrap_or_else(|e| panic!("{label} is not a list of strings ({e})\n{}", self.show()))
    }

    pub fn number(&self, label: &str) -> f64 {
        let text = self.line(label);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{label} {text:?} is not a number ({e})\n{}", self.show()))
    }

    pub fn error(&self) -> String {
        serde_json::from_value(self.json("ERROR")).expect("ERROR is a JSON string")
    }
}

/// Runs `cmd` with a time limit, feeding `stdin`, capturing stdout and stderr.
pub fn run_bounded(mut cmd: Command, stdin: Option<Vec<u8>>, limit: Duration) -> Outcome {
    let what = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let started = Instant::now();
    let mut child: Child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        thread::spawn(move || {
            // The program may exit without reading it all; that is its business.
            let _ = pipe.write_all(&bytes);
        })
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = reader(Box::new(child.stderr.take().expect("stderr pipe")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{what} did not finish within {limit:?}: killed\n--- stdout ---\n{stdout}\n\
                 --- stderr ---\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    Outcome {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: started.elapsed(),
        what,
    }
}
