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
    config.after_includes = Some(format!(
        "\n#define YLOKH_VERSION \"{major}.{minor}.{patch}\"\n\
         #define YLOKH_VERSION_MAJOR {major}\n\
         #define YLOKH_VERSION_MINOR {minor}\n\
         #define YLOKH_VERSION_PATCH {patch}\n\
         /* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */\n\
         #define YLOKH_VERSION_NUMBER {}\n",
        major * 10000 + minor * 100 + patch
    ));
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(&out);
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
