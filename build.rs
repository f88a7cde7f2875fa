//! Generates the C header with cbindgen into OUT_DIR (writing into the source tree would
//! break `cargo publish`). `include/ylokh.h` is the committed copy; the test
//! `header_is_up_to_date` fails when the two differ, and `YLOKH_BLESS=1 cargo test` (or
//! `make header`) updates it.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("ylokh.h");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    // Version macros come from Cargo.toml so they cannot drift from ylokh_version().
    let major: u32 = env::var("CARGO_PKG_VERSION_MAJOR")
        .unwrap()
        .parse()
        .unwrap();
    let minor: u32 = env::var("CARGO_PKG_VERSION_MINOR")
        .unwrap()
        .parse()
        .unwrap();
    let patch: u32 = env::var("CARGO_PKG_VERSION_PATCH")
        .unwrap()
        .parse()
        .unwrap();
    let number = major * 10000 + minor * 100 + patch;
    let version_macros = [
        String::new(),
        format!("#define YLOKH_VERSION \"{major}.{minor}.{patch}\""),
        format!("#define YLOKH_VERSION_MAJOR {major}"),
        format!("#define YLOKH_VERSION_MINOR {minor}"),
        format!("#define YLOKH_VERSION_PATCH {patch}"),
        "/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons; the library loaded".into(),
        " * says its own with ylokh_version_number(). */".into(),
        format!("#define YLOKH_VERSION_NUMBER {number}"),
        String::new(),
        "/* Whether the struct at `ptr` (a ylokh_event, ylokh_provider_info, ...) handed out by"
            .into(),
        " * the library loaded has `field`: its struct_size covers it. A program built with a"
            .into(),
        " * newer header than the library checks this before reading a newer field. */".into(),
        "#ifdef __cplusplus".into(),
        "#define YLOKH_HAS_FIELD(ptr, type, field) \\".into(),
        "  ((ptr)->struct_size >= offsetof(type, field) + sizeof(type::field))".into(),
        "#else".into(),
        "#define YLOKH_HAS_FIELD(ptr, type, field) \\".into(),
        "  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((const type *)0)->field))".into(),
        "#endif".into(),
        String::new(),
    ];
    config.after_includes = Some(version_macros.join("\n"));
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            let mut text = Vec::new();
            bindings.write(&mut text);
            let text = String::from_utf8(text).expect("cbindgen writes UTF-8");
            std::fs::write(&out, c89(&text)).expect("writing the header into OUT_DIR");
        }
        // A half-edited tree should still build for `cargo check`; the header test catches
        // a header that could not be generated.
        Err(e) => println!("cargo:warning=cbindgen could not generate the header: {e}"),
    }
    println!("cargo:rustc-env=YLOKH_GENERATED_HEADER={}", out.display());

    // The shared library's SONAME follows the ABI: libylokh.so.0.MINOR while the version is
    // 0.x (a 0.x minor release may break the ABI), libylokh.so.MAJOR from 1.0 on (the
    // README's "ABI policy"). For installed copies only: `make install` builds with
    // YLOKH_SONAME=1 in a target directory of its own. Not set by default, because a program
    // linked against a library with a SONAME asks the loader for that name, which only an
    // install creates: the test programs and examples linked against target/ with an rpath
    // would no longer start.
    println!("cargo:rerun-if-env-changed=YLOKH_SONAME");
    let soname_wanted = env::var("YLOKH_SONAME").is_ok_and(|v| !v.is_empty() && v != "0");
    if soname_wanted && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let abi = if major == 0 {
            format!("{major}.{minor}")
        } else {
            major.to_string()
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libylokh.so.{abi}");
    }
}

/// The header as C89 accepts it (`gcc -std=c89 -pedantic`): cbindgen writes its own
/// markers as `//` comments (`#endif  // __cplusplus`) and a comma after the last
/// enumerator, which C89 lacks. Documentation comments are already `/* */`
/// (`documentation_style = "c"` in cbindgen.toml).
fn c89(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let mut line = (*line).to_owned();
        let trimmed = line.trim_start();
        if let Some(comment) = trimmed.strip_prefix("//") {
            let indent = &line[..line.len() - trimmed.len()];
            line = format!("{indent}/* {} */", comment.trim());
        } else if let Some(at) = line.find(" //") {
            let code = line[..at].trim();
            if code.starts_with("#endif") || code.starts_with('}') {
                let comment = line[at + 3..].trim().to_owned();
                line = format!("{code}  /* {comment} */");
            }
        }
        // The last enumerator: a line ending in ',' followed by the closing '}'.
        let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty());
        if line.trim_end().ends_with(',') && next.is_some_and(|n| n.trim_start().starts_with('}')) {
            line = line.trim_end().trim_end_matches(',').to_owned();
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
