//! The committed header must be exactly what build.rs generates from the sources.
//! `YLOKH_BLESS=1 cargo test --test header` (or `make header`) rewrites it.

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
