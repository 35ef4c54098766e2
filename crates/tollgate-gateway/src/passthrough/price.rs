//! What a pass-through call costs, read where its answer says the quantity: the images an
//! `images/generations` answer holds, the seconds a transcription's answer reports
//! (`usage: {type: "duration", seconds}`, or `duration` in `verbose_json`), the model a
//! moderation answer names (priced 0 in the catalog). The model and the image's quality and size
//! come from the answer when it says them, else from the start of the request body that was
//! kept as it streamed up: a JSON body, or a multipart form's fields before its file.

use http::HeaderMap;
use serde_json::Value;
use tollgate::{MicroUsd, PricingTable, Usage};

/// What a pass-through call is billed.
pub(super) struct Bill {
    pub(super) model: Option<String>,
    pub(super) usage: Usage,
    /// `None`: unpriced (no price listed, or the answer did not say the quantity).
    pub(super) cost: Option<MicroUsd>,
}

/// The most an `images/generations` call `asked` (its JSON body) may cost: `n` images (1 when
/// unsaid) at the model's price for the quality and size asked, or where the request leaves
/// either to the provider, at the dearest image the model lists. Held against cost quotas
/// before the call goes, so a budget without room for it refuses it. Zero when unpriced.
pub(super) fn images_hold(prices: &PricingTable, asked: &[u8]) -> MicroUsd {
    let asked: Value = serde_json::from_slice(asked).unwrap_or(Value::Null);
    let model = text(&asked, "model").unwrap_or_else(|| DEFAULT_IMAGE_MODEL.to_owned());
    let Some(media) = prices.media(&model) else {
        return MicroUsd::ZERO;
    };
    let (quality, size) = (text(&asked, "quality"), text(&asked, "size"));
    let each = match (&quality, &size) {
        (Some(_), Some(_)) => media.image(quality.as_deref(), size.as_deref()),
        _ => None,
    }
    .or_else(|| media.per_image.values().copied().max())
    .unwrap_or(MicroUsd::ZERO);
    let n = asked.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    MicroUsd(each.0.saturating_mul(n))
}

/// The model `images/generations` uses when a request names none (OpenAI's default).
const DEFAULT_IMAGE_MODEL: &str = "dall-e-2";

/// What is kept of a request body as it streams up, to price its call: its start and its end
/// (a form may put its `model` after its file), each up to [`KEPT_BYTES`].
#[derive(Default)]
pub(super) struct Kept {
    pub(super) head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
}

/// How much of each end of a body is kept.
pub(super) const KEPT_BYTES: usize = 64 << 10;

impl Kept {
    /// A body read whole (small: an images call's JSON).
    pub(super) fn whole(body: &[u8]) -> Self {
        Self {
            head: body.to_vec(),
            tail: Default::default(),
        }
    }

    /// The next piece of the body.
    pub(super) fn add(&mut self, bytes: &[u8]) {
        let room = KEPT_BYTES.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..room]);
        let rest = &bytes[room..];
        // Only what the head did not keep: the two never overlap.
        let last = &rest[rest.len().saturating_sub(KEPT_BYTES)..];
        self.tail.extend(last);
        let over = self.tail.len().saturating_sub(KEPT_BYTES);
        self.tail.drain(..over);
    }
}

/// The bill for a priced operation's answer `body`, with the request's headers and what was
/// kept of its body.
pub(super) fn bill(
    prices: &PricingTable,
    provider: &str,
    operation: &str,
    (headers, kept): (&HeaderMap, &Kept),
    body: &[u8],
) -> Bill {
    let sniffed = &kept.head[..];
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let unpriced = |model: Option<String>| Bill {
        model,
        usage: Usage::default(),
        cost: None,
    };
    match operation {
        "images.generations" => {
            let asked: Value = serde_json::from_slice(sniffed).unwrap_or(Value::Null);
            let model = text(&asked, "model").unwrap_or_else(|| DEFAULT_IMAGE_MODEL.to_owned());
            let said = |field: &str| text(&answer, field).or_else(|| text(&asked, field));
            let (quality, size) = (said("quality"), said("size"));
            let Some(images) = answer.get("data").and_then(Value::as_array) else {
                return unpriced(Some(model));
            };
            let each = prices
                .media(&model)
                .and_then(|media| media.image(quality.as_deref(), size.as_deref()));
            let cost = each.map(|each| MicroUsd(each.0.saturating_mul(images.len() as u64)));
            if cost.is_none() {
                tracing::warn!(%model, ?quality, ?size, "no per-image price: the call is logged as unpriced");
            }
            Bill {
                model: Some(model),
                usage: Usage::default(),
                cost,
            }
        }
        "audio.transcriptions" => {
            let model = form_field(headers, sniffed, "model").or_else(|| {
                let (front, back) = kept.tail.as_slices();
                form_field(headers, &[front, back].concat(), "model")
            });
            let Some(model) = model else {
                return unpriced(None);
            };
            let usage = answer.get("usage");
            if usage.and_then(|u| text(u, "type")).as_deref() == Some("tokens") {
                let tokens = |field: &str| {
                    usage
                        .and_then(|u| u.get(field))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                let usage = Usage::new(tokens("input_tokens"), tokens("output_tokens"));
                let cost = prices
                    .get_for(Some(provider), &model)
                    .map(|price| price.cost(usage));
                return Bill {
                    model: Some(model),
                    usage,
                    cost,
                };
            }
            let seconds = usage
                .filter(|u| text(u, "type").as_deref() == Some("duration"))
                .and_then(|u| u.get("seconds"))
                .or_else(|| answer.get("duration"))
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0);
            let cost = seconds.and_then(|seconds| {
                // Whole milliseconds, rounded up: the price rounds up once more.
                let millis = (seconds * 1_000.0).ceil() as u64;
                prices.media(&model)?.audio(millis)
            });
            if cost.is_none() {
                tracing::warn!(%model, ?seconds, "a transcription without a price or a duration: logged as unpriced");
            }
            Bill {
                model: Some(model),
                usage: Usage::default(),
                cost,
            }
        }
        // Moderations: the answer names its model, which the catalog prices at 0.
        _ => {
            let model = text(&answer, "model");
            let cost = model
                .as_deref()
                .and_then(|model| prices.get_for(Some(provider), model))
                .map(|price| price.cost(Usage::default()));
            Bill {
                model,
                usage: Usage::default(),
                cost,
            }
        }
    }
}

fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field)?.as_str().map(str::to_owned)
}

/// The value of the form field `name` in `kept`, a stretch of a `multipart/form-data` body (its
/// start, or its end): read from its first part boundary on, past any file, as far as it goes.
/// The whole body is never parsed: it streamed up untouched.
fn form_field(headers: &HeaderMap, kept: &[u8], name: &str) -> Option<String> {
    use futures_util::FutureExt as _;
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = multer::parse_boundary(content_type).ok()?;
    let delimiter = format!("--{boundary}\r\n");
    let from = kept
        .windows(delimiter.len())
        .position(|window| window == delimiter.as_bytes())?;
    let start = bytes::Bytes::copy_from_slice(&kept[from..]);
    let start = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(start) });
    let mut form = multer::Multipart::new(start, boundary);
    let find = async move {
        while let Some(field) = form.next_field().await.ok()? {
            if field.file_name().is_none() && field.name() == Some(name) {
                return field.text().await.ok();
            }
        }
        None
    };
    // What was kept is in memory: every step is ready at once, and a form cut short is an
    // error.
    find.now_or_never().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(fields: &[(&str, &str)]) -> (HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=xyz".parse().unwrap(),
        );
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--xyz\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF",
        );
        (headers, body)
    }

    #[test]
    fn an_images_call_holds_what_its_images_may_cost() {
        let prices = tollgate::PriceCatalog::shipped().table([]);
        let asked =
            br#"{"model":"dall-e-3","prompt":"a cat","n":2,"size":"1024x1792","quality":"hd"}"#;
        assert_eq!(images_hold(&prices, asked), MicroUsd(240_000));
        // Quality left to the provider: the dearest image the model lists, per image.
        let unsaid = br#"{"model":"dall-e-3","prompt":"a cat","n":3}"#;
        assert_eq!(images_hold(&prices, unsaid), MicroUsd(3 * 120_000));
        assert_eq!(
            images_hold(&prices, br#"{"model":"unlisted","prompt":"x"}"#),
            MicroUsd::ZERO
        );
    }

    #[test]
    fn a_model_after_a_large_file_is_found_in_the_bodys_end() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=xyz".parse().unwrap(),
        );
        let mut body =
            b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
                .to_vec();
        body.extend(std::iter::repeat_n(b'R', 3 * KEPT_BYTES));
        body.extend_from_slice(
            b"\r\n--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--xyz--\r\n",
        );
        // As it streams up, in pieces.
        let mut kept = Kept::default();
        for piece in body.chunks(16 << 10) {
            kept.add(piece);
        }
        assert_eq!(kept.head.len(), KEPT_BYTES);
        assert_eq!(kept.tail.len(), KEPT_BYTES);
        let prices = tollgate::PriceCatalog::shipped().table([]);
        let answer = br#"{"text":"hi","usage":{"type":"duration","seconds":10}}"#;
        let bill = bill(
            &prices,
            "openai",
            "audio.transcriptions",
            (&headers, &kept),
            answer,
        );
        assert_eq!(bill.model.as_deref(), Some("whisper-1"));
        assert_eq!(bill.cost, Some(MicroUsd(1_000)));
    }

    #[test]
    fn a_form_field_before_the_file_is_found_and_none_after() {
        let (headers, body) = multipart(&[("response_format", "json"), ("model", "whisper-1")]);
        assert_eq!(
            form_field(&headers, &body, "model").as_deref(),
            Some("whisper-1")
        );
        assert_eq!(form_field(&headers, &body, "language"), None);
    }

    #[test]
    fn transcription_seconds_and_images_are_priced_from_the_catalog() {
        let prices = tollgate::PriceCatalog::shipped().table([]);
        let (headers, body) = multipart(&[("model", "whisper-1")]);
        let answer = br#"{"text":"hi","usage":{"type":"duration","seconds":42}}"#;
        let bill = bill(
            &prices,
            "openai",
            "audio.transcriptions",
            (&headers, &Kept::whole(&body)),
            answer,
        );
        // 42 s at $0.0001 a second.
        assert_eq!(bill.cost, Some(MicroUsd(4_200)));
        let verbose = br#"{"text":"hi","duration":1.5}"#;
        let bill = super::bill(
            &prices,
            "openai",
            "audio.transcriptions",
            (&headers, &Kept::whole(&body)),
            verbose,
        );
        assert_eq!(bill.cost, Some(MicroUsd(150)));

        let asked =
            br#"{"model":"dall-e-3","prompt":"a cat","n":1,"size":"1024x1792","quality":"hd"}"#;
        let answer =
            br#"{"created":1,"data":[{"url":"https://x/1.png"},{"url":"https://x/2.png"}]}"#;
        let bill = super::bill(
            &prices,
            "openai",
            "images.generations",
            (&HeaderMap::new(), &Kept::whole(asked)),
            answer,
        );
        assert_eq!(bill.cost, Some(MicroUsd(240_000)));
        assert_eq!(bill.model.as_deref(), Some("dall-e-3"));
    }
}
