//! Static files beside the WebSocket routes (`[[static]]`): content types,
//! `HEAD`, `404`, prefixes, and no way out of the directory.

use std::path::PathBuf;
use wsplug::{RouteConfig, StaticDir};
use wsplug_tests::{HttpResponse, TestServer, config_with, example, http_exchange};

/// A directory with a page, a stylesheet and a subdirectory, and a secret
/// beside it that must stay out of reach.
fn site() -> anyhow::Result<PathBuf> {
    let root = std::env::temp_dir().join(format!("wsplug-static-{}", std::process::id()));
    let web = root.join("web");
    std::fs::create_dir_all(web.join("docs"))?;
    std::fs::write(web.join("index.html"), "<h1>hello</h1>")?;
    std::fs::write(web.join("style.css"), "h1 { color: red }")?;
    std::fs::write(web.join("docs/index.html"), "docs")?;
    std::fs::write(root.join("secret.txt"), "secret")?;
    Ok(web)
}

async fn get(server: &TestServer, method: &str, path: &str) -> anyhow::Result<HttpResponse> {
    http_exchange(server.address, &format!("{method} {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")).await
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response.head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn files_are_served_beside_the_websocket_routes() -> anyhow::Result<()> {
    let web = site()?;
    let mut config = config_with([RouteConfig::new("/chat", example("chat"))]);
    config.static_dirs.push(StaticDir { path: "/".into(), dir: web.clone() });
    config.static_dirs.push(StaticDir { path: "/assets".into(), dir: web.clone() });
    let server = TestServer::start_with(config).await?;

    let page = get(&server, "GET", "/").await?;
    assert_eq!((page.status, page.body.as_str()), (200, "<h1>hello</h1>"));
    assert_eq!(header(&page, "content-type"), Some("text/html"));
    let css = get(&server, "GET", "/assets/style.css").await?;
    assert_eq!((css.status, header(&css, "content-type")), (200, Some("text/css")));
    let head = get(&server, "HEAD", "/style.css").await?;
    assert_eq!((head.status, head.body.as_str(), header(&head, "content-length")), (200, "", Some("17")));
    assert_eq!(get(&server, "GET", "/docs/").await?.body, "docs");
    let redirect = get(&server, "GET", "/assets/docs").await?;
    assert_eq!((redirect.status, header(&redirect, "location")), (307, Some("/assets/docs/")));

    let missing = get(&server, "GET", "/missing.html").await?;
    assert_eq!((missing.status, missing.body.as_str()), (404, "Unknown resource!"));
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2fsecret.txt", "//etc/passwd"] {
        let refused = get(&server, "GET", escape).await?;
        assert_ne!(refused.status, 200, "{escape}: {}", refused.body);
        assert!(!refused.body.contains("secret") && !refused.body.contains("root:"), "{escape}");
    }
    // The WebSocket route wins over the directory at `/`.
    let route = get(&server, "GET", "/chat").await?;
    assert_eq!((route.status, route.body.as_str()), (400, "Not a valid websocket request!"));
    std::fs::remove_dir_all(web.parent().unwrap())?;
    Ok(())
}
