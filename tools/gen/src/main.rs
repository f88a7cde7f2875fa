//! `ylokh-gen write` regenerates every generated file of the repository;
//! `ylokh-gen check` lists the stale ones and exits 1 if there are any.
//! Run from anywhere: the repository is found from this crate's manifest.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("the repository root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mode = std::env::args().nth(1).unwrap_or_default();
    let outputs = match ylokh_gen::generate(&root, &cargo) {
        Ok(outputs) => outputs,
        Err(e) => {
            eprintln!("ylokh-gen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match mode.as_str() {
        "write" => match ylokh_gen::write(&root, &outputs) {
            Ok(changed) => {
                for path in changed {
                    println!("wrote {path}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ylokh-gen: {e}");
                ExitCode::FAILURE
            }
        },
        "check" => {
            let stale = ylokh_gen::stale(&root, &outputs);
            for path in &stale {
                eprintln!("stale: {path}");
            }
            if stale.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("run `make docs` and commit the result");
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: ylokh-gen write|check");
            ExitCode::from(2)
        }
    }
}
