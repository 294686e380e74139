//! Static files on paths that are not WebSocket routes (`[[static]]`): a web
//! page and its scripts beside the handlers that serve its sockets.
//!
//! tower-http's `ServeDir` does the file serving: content types, `HEAD`,
//! ranges, `index.html` for directories, `404`, and no way out of the
//! directory (`..` and absolute paths are refused).

use super::Body;
use super::upgrade::{UNKNOWN_RESOURCE, text_response};
use crate::config::StaticDir;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// The static directories, most specific prefix first.
pub struct StaticFiles {
    mounts: Vec<(String, ServeDir)>,
}

impl StaticFiles {
    /// Serves each of `dirs` under its prefix.
    pub fn new(dirs: &[StaticDir]) -> Self {
        let mut mounts: Vec<_> = dirs
            .iter()
            .map(|served| (served.path.trim_end_matches('/').to_owned(), ServeDir::new(&served.dir)))
            .collect();
        mounts.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self { mounts }
    }

    /// The answer to `request` from the directory whose prefix covers its
    /// path (a file, a redirect, `404`), or `None` if none does.
    pub async fn serve<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        let path = request.uri().path();
        let (prefix, dir) = self.mounts.iter().find(|(prefix, _)| {
            path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })?;
        // The directory sees the path below its prefix.
        let rest = &path[prefix.len()..];
        let rest = if rest.is_empty() { "/" } else { rest };
        let uri = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let mut inner = Request::new(());
        *inner.method_mut() = request.method().clone();
        *inner.uri_mut() = uri.parse::<Uri>().ok()?;
        *inner.headers_mut() = request.headers().clone();
        let mut response = match dir.clone().oneshot(inner).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // The same answer as for any other unknown path (ServeDir's is empty).
        if response.status() == StatusCode::NOT_FOUND {
            return Some(text_response(StatusCode::NOT_FOUND, UNKNOWN_RESOURCE));
        }
        // A directory's redirect (to its path with a `/`) is relative to the
        // directory; the client needs the prefix in front.
        if let Some(location) = response.headers().get(header::LOCATION).and_then(|value| value.to_str().ok())
            && location.starts_with('/')
            && let Ok(prefixed) = HeaderValue::from_str(&format!("{prefix}{location}"))
        {
            response.headers_mut().insert(header::LOCATION, prefixed);
        }
        Some(response.map(|body| body.boxed_unsync()))
    }
}
