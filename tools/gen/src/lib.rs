//! Everything generated from the repository's sources, and the check that the committed
//! copies are current.
//!
//! - `docs/reference.md`: every declaration of `include/ylokh.h` with its documentation,
//!   grouped, with a short example per group (from `docs/examples/`);
//! - `docs/man/man3/*.3`: one man page per function and type, and `ylokh.3`, the overview;
//! - `THIRD-PARTY-NOTICES`: the license texts of every crate linked into the library.
//!
//! The tests include this file with `#[path]`, so it uses nothing but std and serde_json.

pub mod header;
pub mod man;
pub mod notices;
pub mod reference;

use std::fs;
use std::path::Path;

/// The directory of the generated man pages, relative to the repository.
pub const MAN_DIR: &str = "docs/man/man3";

/// One generated file: its path relative to the repository, and its contents.
#[derive(Debug)]
pub struct Output {
    pub path: String,
    pub text: String,
}

/// The header, parsed.
pub fn read_header(root: &Path) -> Result<header::Header, String> {
    let path = root.join("include/ylokh.h");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(header::parse(&text))
}

/// The reference and the man pages (no cargo needed).
pub fn docs(root: &Path) -> Result<Vec<Output>, String> {
    let h = read_header(root)?;
    let examples = reference::Examples::read(root)?;
    let mut out = vec![Output {
        path: "docs/reference.md".to_owned(),
        text: reference::markdown(&h, &examples),
    }];
    for (name, text) in man::pages(&h, &examples) {
        out.push(Output {
            path: format!("{MAN_DIR}/{name}.3"),
            text,
        });
    }
    Ok(out)
}

/// Every generated file. `cargo` is the cargo to ask for the dependency tree.
pub fn generate(root: &Path, cargo: &str) -> Result<Vec<Output>, String> {
    let mut out = docs(root)?;
    out.push(Output {
        path: notices::PATH.to_owned(),
        text: notices::generate(root, cargo)?,
    });
    Ok(out)
}

/// The outputs that differ from the files in `root`, and the man pages in [`MAN_DIR`] that
/// nothing generates any more (only when `outputs` includes man pages).
pub fn stale(root: &Path, outputs: &[Output]) -> Vec<String> {
    let mut stale: Vec<String> = outputs
        .iter()
        .filter(|o| fs::read_to_string(root.join(&o.path)).ok().as_deref() != Some(&o.text))
        .map(|o| o.path.clone())
        .collect();
    if outputs.iter().any(|o| o.path.starts_with(MAN_DIR)) {
        stale.extend(
            extra_man_pages(root, outputs)
                .into_iter()
                .map(|p| format!("{p} (no longer generated)")),
        );
    }
    stale
}

/// Man pages in [`MAN_DIR`] that are not among `outputs`.
fn extra_man_pages(root: &Path, outputs: &[Output]) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root.join(MAN_DIR)) else {
        return Vec::new();
    };
    let mut extra: Vec<String> = entries
        .flatten()
        .map(|e| format!("{MAN_DIR}/{}", e.file_name().to_string_lossy()))
        .filter(|p| !outputs.iter().any(|o| &o.path == p))
        .collect();
    extra.sort();
    extra
}

/// Writes the outputs that changed and removes man pages no longer generated; returns the
/// paths written or removed.
pub fn write(root: &Path, outputs: &[Output]) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for path in extra_man_pages(root, outputs) {
        fs::remove_file(root.join(&path)).map_err(|e| format!("{path}: {e}"))?;
        changed.push(format!("{path} (removed)"));
    }
    for o in outputs {
        let path = root.join(&o.path);
        if fs::read_to_string(&path).ok().as_deref() == Some(&o.text) {
            continue;
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::write(&path, &o.text).map_err(|e| format!("{}: {e}", path.display()))?;
        changed.push(o.path.clone());
    }
    Ok(changed)
}
