//! The HTTP origin: a GET of a URL template, whose body is the value.
//!
//! `{key}` in the template is replaced by the key without its namespace's prefix,
//! percent-encoded as a path segment. 2xx: the body is the value; 404 or 410: no such
//! key; anything else is an error naming the status. Bodies are read up to
//! [`MAX_BODY`]. Connections are pooled (hyper's client), at most `pool` requests at
//! once. HTTP origins are read-only: namespaces over them cannot write through or
//! behind (the configuration check refuses it).

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::sync::Semaphore;

use crate::origin::{Origin, OriginError};

/// Largest body read from an HTTP origin: Redis's largest value.
pub const MAX_BODY: usize = 512 << 20;

/// Bytes encoded in a key put into a URL path segment: everything but unreserved
/// characters (RFC 3986).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b':')
    .add(b'@')
    .add(b'&')
    .add(b'=')
    .add(b'+')
    .add(b'$')
    .add(b',')
    .add(b';')
    .add(b'!')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*');

/// An HTTP service behind a URL template.
pub struct Http {
    name: String,
    template: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    permits: Semaphore,
}

/// The placeholder a URL template must contain.
pub const KEY_PLACEHOLDER: &str = "{key}";

impl Http {
    /// The origin `name` at `template` (checked by [`crate::config::check`]: `http://`,
    /// with `{key}`), at most `pool` requests at once.
    pub fn new(name: &str, template: &str, pool: usize) -> Http {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .build_http();
        Http {
            name: name.to_owned(),
            template: template.to_owned(),
            client,
            permits: Semaphore::new(pool),
        }
    }

    /// The URL of `key`.
    fn url(&self, key: &[u8]) -> Result<Uri, OriginError> {
        let key = String::from_utf8_lossy(key);
        let url = self.template.replace(
            KEY_PLACEHOLDER,
            &utf8_percent_encode(&key, SEGMENT).to_string(),
        );
        url.parse::<Uri>()
            .map_err(|error| OriginError::Shape(format!("the key makes an invalid URL: {error}")))
    }

    fn unreachable(&self, reason: impl ToString) -> OriginError {
        OriginError::Unreachable {
            origin: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    async fn get(&self, uri: Uri) -> Result<(StatusCode, Bytes), OriginError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|error| self.unreachable(error))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|error| OriginError::Query(format!("reading the body: {error}")))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Checks an HTTP origin URL template; the reason when it cannot be used.
pub fn check_template(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Err(
            "https origins are not supported yet; use http:// (a local proxy can add TLS)".into(),
        );
    }
    if !url.contains(KEY_PLACEHOLDER) {
        return Err(format!(
            "an HTTP origin's URL needs {KEY_PLACEHOLDER} where the key goes"
        ));
    }
    url.replace(KEY_PLACEHOLDER, "k")
        .parse::<Uri>()
        .map_err(|error| format!("invalid URL: {error}"))
        .and_then(|uri| match uri.authority() {
            Some(_) => Ok(()),
            None => Err("the URL needs a host".into()),
        })
}

#[async_trait]
impl Origin for Http {
    async fn load(&self, _query: &str, key: &[u8]) -> Result<Option<Bytes>, OriginError> {
        let uri = self.url(key)?;
        let (status, body) = self.get(uri.clone()).await?;
        match status {
            status if status.is_success() => Ok(Some(body)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            status => Err(OriginError::Query(format!("{uri} answered HTTP {status}"))),
        }
    }

    async fn execute(&self, _statement: &str, _parameters: &[&[u8]]) -> Result<u64, OriginError> {
        Err(OriginError::Shape("HTTP origins are read-only".into()))
    }

    async fn check(&self) -> Result<(), OriginError> {
        // Any answer means the service is there; only a failed connection is down.
        self.get(self.url(b"")?).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked_and_keys_encoded() {
        assert!(check_template("http://127.0.0.1:8080/items/{key}").is_ok());
        assert!(check_template("https://svc/items/{key}").is_err());
        assert!(check_template("http://svc/items/").is_err());
        assert!(check_template("http:///{key}").is_err());
        let origin = Http::new("main", "http://svc:8080/items/{key}?full=1", 1);
        assert_eq!(
            origin.url(b"a b/c?d").unwrap().to_string(),
            "http://svc:8080/items/a%20b%2Fc%3Fd?full=1"
        );
    }
}
