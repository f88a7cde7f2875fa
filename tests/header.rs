//! The committed header must be exactly what build.rs generates from the sources.
//! `YLOKH_BLESS=1 cargo test --test header` (or `make header`) rewrites it. And it compiles
//! cleanly as C89, C99, C11, C17 and C++11 to C++20, warnings as errors.

mod common;

use common::process::{manifest_dir, run_bounded};
use std::process::Command;
use std::time::Duration;

#[test]
fn header_is_up_to_date() {
    let generated_path = env!("YLOKH_GENERATED_HEADER");
    let generated = std::fs::read_to_string(generated_path)
        .unwrap_or_else(|e| panic!("cbindgen did not produce {generated_path}: {e}"));
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/ylokh.h");
    if std::env::var_os("YLOKH_BLESS").is_some() {
        std::fs::write(committed_path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/ylokh.h is out of date with the Rust sources: run `make header` and commit it"
    );
}

#[test]
fn header_declares_the_contract() {
    let header = include_str!("../include/ylokh.h");
    for needle in [
        "typedef struct ylokh_client ylokh_client;",
        "typedef int (*ylokh_token_cb)(void *userdata, const char *token, size_t len);",
        "struct ylokh_client *ylokh_client_new(void);",
        "void ylokh_client_free(struct ylokh_client *client);",
        "ylokh_status ylokh_client_set_base_url(struct ylokh_client *client, const char *base_url);",
        "ylokh_status ylokh_client_set_api_key(struct ylokh_client *client, const char *api_key);",
        "ylokh_status ylokh_client_set_proxy(struct ylokh_client *client, const char *proxy_url);",
        "ylokh_status ylokh_client_set_timeout_ms(struct ylokh_client *client, uint64_t timeout_ms);",
        "const char *ylokh_last_error(void);",
        "const char *ylokh_status_str(ylokh_status status);",
        "const char *ylokh_version(void);",
        "#define YLOKH_OK 0",
        "#define YLOKH_E_INVALID_ARGUMENT 1",
        "#define YLOKH_E_ABORTED 2",
        "#define YLOKH_E_CONNECT 3",
        "#define YLOKH_E_TLS 4",
        "#define YLOKH_E_TIMEOUT 5",
        "#define YLOKH_E_HTTP_STATUS 6",
        "#define YLOKH_E_API 7",
        "#define YLOKH_E_PROTOCOL 8",
        "#define YLOKH_E_IO 9",
        "#define YLOKH_E_INTERNAL 10",
        "#ifndef YLOKH_H",
        "extern \"C\" {",
    ] {
        assert!(header.contains(needle), "header lacks {needle:?}");
    }
    for name in ["ylokh_chat(", "ylokh_client_set_header("] {
        assert!(header.contains(name), "header lacks {name}");
    }
}

/// Uses every type and macro of the header, so that each standard sees all of it.
const USES_THE_HEADER: &str = r#"
#include <ylokh.h>

static int on_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    (void)token;
    (void)len;
    return 0;
}

static int on_event(void *userdata, const ylokh_event *event) {
    (void)userdata;
    return YLOKH_HAS_FIELD(event, ylokh_event, total_tokens) && event->kind == YLOKH_EVENT_USAGE;
}

int use_the_header(void);
int use_the_header(void) {
    ylokh_request req;
    const ylokh_provider_info *info = ylokh_provider();
    ylokh_status st = YLOKH_OK;
    ylokh_token_cb t = on_token;
    ylokh_event_cb e = on_event;
    ylokh_log_cb l = NULL;
    ylokh_client *client = NULL;
    ylokh_conversation *conversation = NULL;
    ylokh_cancel *cancel = NULL;
    (void)t;
    (void)l;
    (void)client;
    (void)conversation;
    (void)cancel;
    req.struct_size = sizeof req;
    req.on_event = e;
#if YLOKH_VERSION_NUMBER < 100
#error "YLOKH_VERSION_NUMBER"
#endif
    return st + (ylokh_version_number() > 0u ? 1 : 0) +
           (YLOKH_HAS_FIELD(info, ylokh_provider_info, working) ? info->working : 0);
}
"#;

/// Compiles [`USES_THE_HEADER`] with `compiler` in `std`, warnings as errors.
fn compiles(compiler: &str, lang: &str, std: &str) {
    let dir = std::env::temp_dir().join(format!("ylokh-header-{}-{std}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ext = if lang == "c" { "c" } else { "cpp" };
    let source = dir.join(format!("use.{ext}"));
    std::fs::write(&source, USES_THE_HEADER).unwrap();
    let mut cmd = Command::new(compiler);
    cmd.arg(format!("-std={std}"))
        .args(["-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
        .arg(format!("-I{}", manifest_dir().join("include").display()))
        .arg(&source);
    if lang == "c++" {
        cmd.args(["-Wold-style-cast", "-Wzero-as-null-pointer-constant"]);
    }
    let out = run_bounded(cmd, None, Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.ok() && out.stderr.trim().is_empty(),
        "ylokh.h does not compile cleanly as {std}:\n{}",
        out.show()
    );
}

#[test]
fn header_compiles_as_c89_c99_c11_and_c17() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    for std in ["c89", "c99", "c11", "c17"] {
        compiles(&cc, "c", std);
    }
}

#[test]
fn header_compiles_as_cpp11_to_cpp20() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".to_owned());
    for std in ["c++11", "c++14", "c++17", "c++20"] {
        compiles(&cxx, "c++", std);
    }
}

#[test]
fn header_has_no_line_comments_and_no_stdbool() {
    let header = include_str!("../include/ylokh.h");
    // A `//` outside a block comment: C89 has none (URLs inside comments are fine).
    let mut in_block = false;
    for (n, line) in header.lines().enumerate() {
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let open = rest.find("/*");
                let line_comment = rest.find("//");
                match (open, line_comment) {
                    (_, Some(l)) if open.is_none_or(|o| l < o) => {
                        panic!("line {}: a // comment: {line}", n + 1)
                    }
                    (Some(o), _) => {
                        rest = &rest[o + 2..];
                        in_block = true;
                    }
                    _ => break,
                }
            }
        }
    }
    assert!(
        !header.contains("stdbool.h"),
        "ylokh.h includes <stdbool.h>"
    );
    assert!(!header.contains("bool "), "ylokh.h uses bool");
}
