//! Proxy environment variables (`HTTPS_PROXY`, `NO_PROXY`, ...) and the opt-out. One test in
//! its own binary, because the environment is process-wide.

mod common;

use common::capi::*;
use common::proxy::Proxy;
use common::*;
use ylokh::ffi::*;

fn new_client(base_url: &str) -> CClient {
    let client = CClient(ylokh_client_new());
    assert_eq!(client.set_base_url(base_url), YLOKH_OK);
    client
}

#[test]
fn proxy_variables_are_honoured_unless_the_client_opts_out() {
    let server = Server::always(Script::sse(&sse_stream(&["ok"]), Framing::ContentLength));
    let proxy = Proxy::http_connect(None);
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port));

    new_client(&server.base_url()).chat(None).ok();
    assert_eq!(proxy.tunnels(), 1, "HTTPS_PROXY is used");

    let opted_out = new_client(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_proxy_from_env(opted_out.0, 0) },
        YLOKH_OK
    );
    opted_out.chat(None).ok();
    assert_eq!(proxy.tunnels(), 1, "the opt-out connects directly");

    std::env::set_var("NO_PROXY", "localhost,127.0.0.1");
    new_client(&server.base_url()).chat(None).ok();
    assert_eq!(proxy.tunnels(), 1, "NO_PROXY hosts connect directly");
    assert_eq!(server.requests().len(), 3);
}
