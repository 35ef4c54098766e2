//! Raw calls: an HTTP request as a caller sent it, to any path under the server's base URL,
//! with the client's key and headers, its body and its answer streamed (a gateway's pass-through
//! of `/v1/files`, `/v1/audio/…`, `/v1/images/…`).

use http::{HeaderMap, Method, StatusCode};
use tollgate_core::{ErrorKind, LlmError};

use super::OpenAiCompatible;
use crate::transport::transport_error;

impl OpenAiCompatible {
    /// Sends `method {base_url}/{path}` (`path` after the base URL, with its query: `files`,
    /// `files/file-1/content`, `batches?limit=2`) with `headers` and `body`, and returns the
    /// answer as it came, its body unread, whatever its status.
    ///
    /// The client's own headers (its key, `headers` of its configuration) go with it; the
    /// caller's `headers` are sent as they are, so drop the caller's credentials and hop-by-hop
    /// headers first. The client's timeout bounds the whole call, body and answer included.
    ///
    /// ```no_run
    /// use tollgate_providers::OpenAiCompatible;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let openai = OpenAiCompatible::builder("https://api.openai.com/v1")
    ///     .api_key(std::env::var("OPENAI_API_KEY")?)
    ///     .build()?;
    /// let files = openai
    ///     .forward(http::Method::GET, "files?purpose=batch", Default::default(), reqwest::Body::from(""))
    ///     .await?;
    /// println!("{}", files.text().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for an Azure client (its URLs are per deployment: it has no base URL
    /// these paths go under); `Connect` or `Timeout` when the server cannot be reached or does
    /// not answer in time.
    pub async fn forward(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, LlmError> {
        let inner = &self.inner;
        let Some(base) = &inner.raw_base else {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{}: an Azure OpenAI client has no base URL to pass calls through to",
                    inner.name
                ),
            ));
        };
        let url = format!("{base}/{}", path.trim_start_matches('/'));
        inner
            .http
            .request(method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(e, &inner.name))
    }

    /// The error a passed-through call's non-success answer is (its `status`, `headers` and
    /// `body`), in tollgate's words as for any call to this server: its kind from the status,
    /// `Retry-After` and the rate-limit headers read, what the server said kept apart as an
    /// [`UpstreamError`](tollgate_core::UpstreamError), never shown whole to a caller.
    pub fn refusal(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> LlmError {
        crate::failure::refusal(status, headers, body, &self.inner.name)
    }
}
