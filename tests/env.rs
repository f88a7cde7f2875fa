//! Environment variables read by `ylokh_client_new`. One test in its own binary, because
//! the environment is process-wide.

mod common;

use common::capi::*;
use common::*;
use ylokh::ffi::*;

fn chat_with_new_client() -> Outcome {
    let client = CClient(ylokh_client_new());
    // SAFETY: live client.
    unsafe { ylokh_client_set_retry_delay_ms(client.0, 1) };
    client.chat(None)
}

#[test]
fn base_url_and_api_key_come_from_the_environment() {
    let ylokh = Server::always(Script::sse(&sse_stream(&["y"]), Framing::ContentLength));
    let openai = Server::always(Script::sse(&sse_stream(&["o"]), Framing::ContentLength));
    for var in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "https_proxy",
        "http_proxy",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("OPENAI_BASE_URL", openai.base_url());
    std::env::set_var("OPENAI_API_KEY", "sk-openai");
    assert_eq!(
        chat_with_new_client().ok().text(),
        "o",
        "OPENAI_* are the fallbacks"
    );
    assert_eq!(
        openai.requests()[0].header("Authorization"),
        Some("Bearer sk-openai")
    );

    std::env::set_var("YLOKH_BASE_URL", ylokh.base_url());
    std::env::set_var("YLOKH_API_KEY", "sk-ylokh");
    assert_eq!(
        chat_with_new_client().ok().text(),
        "y",
        "YLOKH_* take precedence"
    );
    assert_eq!(
        ylokh.requests()[0].header("Authorization"),
        Some("Bearer sk-ylokh")
    );

    // An unusable YLOKH_BASE_URL is ignored rather than breaking every call.
    std::env::set_var("YLOKH_BASE_URL", "not a url");
    assert_eq!(chat_with_new_client().ok().text(), "o");
}
