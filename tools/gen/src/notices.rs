//! `THIRD-PARTY-NOTICES`: the license texts of the code linked into libylokh, from the
//! dependency tree as `cargo metadata` reports it and the license files each crate ships.
//!
//! Which crates: everything the library depends on normally (not build or dev
//! dependencies, not procedural macros, which run in the compiler and are not linked), for
//! every target the project ships: Linux and Windows (mingw). Which license: the crate's
//! own where it has one; for a choice ("MIT OR Apache-2.0") the first of [`PREFERENCE`]
//! offered. A license outside [`PREFERENCE`], or a crate that ships no text for the license
//! used, is an error: a new dependency needs a look before it is accepted.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PATH: &str = "THIRD-PARTY-NOTICES";

/// The targets whose dependencies are listed.
pub const TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "x86_64-pc-windows-gnu"];

/// Accepted licenses, the preferred first (used where a crate offers a choice).
pub const PREFERENCE: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "ISC",
    "BSD-3-Clause",
    "BSD-2-Clause",
    "Zlib",
    "Unicode-3.0",
    "CDLA-Permissive-2.0",
];

/// A crate of the tree and the licenses it is used under.
struct Crate {
    name: String,
    version: String,
    expression: String,
    chosen: Vec<&'static str>,
    dir: PathBuf,
    license_file: Option<PathBuf>,
}

/// `cargo metadata` of the repository, for the shipped targets.
fn metadata(root: &Path, cargo: &str) -> Result<Value, String> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["metadata", "--format-version", "1", "--locked"]);
    for t in TARGETS {
        cmd.args(["--filter-platform", t]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {cargo} metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cargo} metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
}

/// "(A OR B) AND C" as [[A, B], [C]]: every group must be satisfied, by one of its members.
/// "A WITH E" (a license with an exception) stays one member.
fn parse_expression(expr: &str) -> Result<Vec<Vec<String>>, String> {
    let cleaned = expr.replace(['(', ')'], " ").replace('/', " OR ");
    let mut groups = Vec::new();
    for part in cleaned.split(" AND ") {
        let options: Vec<String> = part
            .split(" OR ")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let unreadable = |o: &String| o.replacen(" WITH ", "+", 1).contains(' ');
        if options.is_empty() || options.iter().any(unreadable) {
            return Err(format!("cannot read the license expression {expr:?}"));
        }
        groups.push(options);
    }
    Ok(groups)
}

/// The licenses used for `expr`: in each group, the first of [`PREFERENCE`] offered.
pub fn choose(expr: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen = Vec::new();
    for group in parse_expression(expr)? {
        let pick = PREFERENCE
            .iter()
            .find(|p| group.iter().any(|o| o == *p))
            .ok_or_else(|| format!("no accepted license in {expr:?}"))?;
        chosen.push(*pick);
    }
    Ok(chosen)
}

/// The license a file is for, from its name (`LICENSE-MIT`, `license-apache-2.0`, ...), or
/// None for a name that says nothing (`LICENSE`, `COPYING`).
fn license_of_file(name: &str) -> Option<&'static str> {
    let upper = name.to_uppercase();
    let stem = upper
        .trim_start_matches("LICENSE")
        .trim_start_matches("LICENCE")
        .trim_start_matches("COPYING");
    [
        ("MIT", "MIT"),
        ("APACHE", "Apache-2.0"),
        ("ISC", "ISC"),
        ("UNICODE", "Unicode-3.0"),
        ("ZLIB", "Zlib"),
        ("BSD", "BSD-3-Clause"),
    ]
    .iter()
    .find(|(key, _)| stem.contains(key))
    .map(|(_, license)| *license)
}

fn is_license_file(name: &str) -> bool {
    let upper = name.to_uppercase();
    ["LICENSE", "LICENCE", "COPYING", "NOTICE"]
        .iter()
        .any(|p| upper.starts_with(p))
}

/// The crates linked into the library: from the root package along normal dependencies,
/// without procedural macros (and so without what only they depend on).
fn linked_crates(meta: &Value) -> Result<Vec<Crate>, String> {
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("no resolve graph in cargo metadata")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = meta["resolve"]["root"]
        .as_str()
        .ok_or("no root package in cargo metadata")?;
    let is_proc_macro = |p: &Value| {
        p["targets"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
            })
        })
    };
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = nodes
            .get(id)
            .ok_or_else(|| format!("{id} not in the graph"))?;
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()));
            let Some(pkg) = dep["pkg"].as_str() else {
                continue;
            };
            if normal && !packages.get(pkg).is_some_and(|p| is_proc_macro(p)) {
                stack.push(pkg);
            }
        }
    }
    let mut crates = Vec::new();
    for id in seen {
        if id == root {
            continue;
        }
        let p = packages[id];
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let expression = p["license"]
            .as_str()
            .ok_or_else(|| format!("{name}: no license in its Cargo.toml"))?
            .to_owned();
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        crates.push(Crate {
            chosen: choose(&expression).map_err(|e| format!("{name}: {e}"))?,
            version: p["version"].as_str().unwrap_or_default().to_owned(),
            license_file: p["license_file"].as_str().map(|f| dir.join(f)),
            name,
            expression,
            dir,
        });
    }
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(crates)
}

/// The license files of `c` that cover the licenses it is used under, and its NOTICE files.
fn texts_of(c: &Crate) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = fs::read_dir(&c.dir)
        .map_err(|e| format!("{}: {e}", c.dir.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| is_license_file(&p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    if let Some(f) = &c.license_file {
        if !files.contains(f) {
            files.push(f.clone());
        }
    }
    files.sort();
    let name = |p: &PathBuf| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut picked: Vec<PathBuf> = files
        .iter()
        .filter(|f| name(f).to_uppercase().starts_with("NOTICE"))
        .cloned()
        .collect();
    let unnamed: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            license_of_file(&name(f)).is_none() && !name(f).to_uppercase().starts_with("NOTICE")
        })
        .collect();
    for license in &c.chosen {
        let named: Vec<&PathBuf> = files
            .iter()
            .filter(|f| license_of_file(&name(f)) == Some(license))
            .collect();
        let use_files = if named.is_empty() {
            unnamed.clone()
        } else {
            named
        };
        if use_files.is_empty() {
            return Err(format!(
                "{} {}: ships no license text for {license} (in {})",
                c.name,
                c.version,
                c.dir.display()
            ));
        }
        for f in use_files {
            if !picked.contains(f) {
                picked.push(f.clone());
            }
        }
    }
    Ok(picked)
}

/// The notices file for the repository at `root`.
pub fn generate(root: &Path, cargo: &str) -> Result<String, String> {
    let meta = metadata(root, cargo)?;
    let crates = linked_crates(&meta)?;
    let version = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == meta["resolve"]["root"]))
        .and_then(|p| p["version"].as_str())
        .unwrap_or_default()
        .to_owned();

    // Each distinct text once, with the crates it applies to, in order of first use.
    let mut texts: Vec<(String, Vec<String>)> = Vec::new();
    for c in &crates {
        for path in texts_of(c)? {
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .replace("\r\n", "\n");
            let text = text.trim_end().to_owned();
            let label = format!(
                "{} {} ({})",
                c.name,
                c.version,
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            match texts.iter_mut().find(|(t, _)| *t == text) {
                Some((_, users)) => users.push(label),
                None => texts.push((text, vec![label])),
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "Third-party software in libylokh {version}");
    out.push_str(
        "\nGenerated by tools/gen (`make docs`) from `cargo metadata` and the license files\n\
         of each crate; a test fails when it is out of date. Do not edit.\n\n\
         libylokh itself is licensed under MIT OR Apache-2.0 (LICENSE-MIT, LICENSE-APACHE).\n\
         Its binaries (libylokh.so, libylokh.a, ylokh.dll) also contain the Rust standard\n\
         library (MIT OR Apache-2.0, used under MIT; copyright the Rust Project\n\
         Contributors; its text is the MIT text below, with that copyright line) and the\n\
         crates listed here, each used under the license named in brackets, for the targets\n",
    );
    let _ = writeln!(out, "{}.\n", TARGETS.join(" and "));
    for c in &crates {
        let _ = writeln!(
            out,
            "  {} {}: {} [{}]",
            c.name,
            c.version,
            c.expression,
            c.chosen.join(" AND ")
        );
    }
    for (text, users) in &texts {
        out.push_str("\n\n");
        out.push_str(&"=".repeat(78));
        out.push('\n');
        let _ = writeln!(out, "Applies to: {}", users.join(", "));
        out.push_str(&"=".repeat(78));
        out.push_str("\n\n");
        out.push_str(text);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_take_the_preferred_license_and_conjunctions_take_all() {
        assert_eq!(choose("MIT OR Apache-2.0").unwrap(), ["MIT"]);
        assert_eq!(choose("Apache-2.0 OR ISC OR MIT").unwrap(), ["MIT"]);
        assert_eq!(choose("Unlicense OR MIT").unwrap(), ["MIT"]);
        assert_eq!(choose("Apache-2.0 AND ISC").unwrap(), ["Apache-2.0", "ISC"]);
        assert_eq!(
            choose("(MIT OR Apache-2.0) AND Unicode-3.0").unwrap(),
            ["MIT", "Unicode-3.0"]
        );
        assert_eq!(choose("MIT/Apache-2.0").unwrap(), ["MIT"]);
        // rustix and linux-raw-sys.
        assert_eq!(
            choose("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT").unwrap(),
            ["MIT"]
        );
        assert!(choose("Apache-2.0 WITH LLVM-exception").is_err());
        assert!(choose("MIT OR A B").is_err());
        assert!(choose("GPL-3.0-only").is_err());
        assert!(choose("MIT AND GPL-3.0-only").is_err());
    }

    #[test]
    fn license_files_are_recognised_by_name() {
        assert_eq!(license_of_file("LICENSE-MIT"), Some("MIT"));
        assert_eq!(license_of_file("license-apache-2.0"), Some("Apache-2.0"));
        assert_eq!(license_of_file("LICENSE-MIT.txt"), Some("MIT"));
        assert_eq!(license_of_file("LICENSE-UNICODE"), Some("Unicode-3.0"));
        assert_eq!(license_of_file("LICENSE"), None);
        assert_eq!(license_of_file("LICENSE-BoringSSL"), None);
        assert_eq!(license_of_file("COPYING"), None);
        assert!(is_license_file("LICENSE.md") && !is_license_file("README.md"));
    }
}
