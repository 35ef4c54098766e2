//! [`MediaPrice`]: what a model costs per unit that is not a token: an image generated, a second
//! of audio transcribed.

use std::collections::BTreeMap;

use super::MicroUsd;

/// A model's prices per image and per second of audio, for the endpoints whose answers count
/// those rather than tokens (`/v1/images/generations`, `/v1/audio/transcriptions`).
///
/// Image prices are keyed by what the answer (or the request) says of the image:
/// `"{quality}/{size}"` (`"hd/1024x1792"`), then `"{size}"`, then `"{quality}"`, then `"*"`,
/// the most specific that is listed winning. Audio is priced per second, to the millisecond,
/// rounded up once per call.
///
/// ```
/// use tollgate_core::{MediaPrice, MicroUsd};
///
/// let dalle = MediaPrice::default()
///     .with_image("*", "0.04".parse().unwrap())
///     .with_image("hd/1024x1792", "0.12".parse().unwrap());
/// assert_eq!(dalle.image(Some("hd"), Some("1024x1792")), Some(MicroUsd(120_000)));
/// assert_eq!(dalle.image(None, None), Some(MicroUsd(40_000)));
///
/// let whisper = MediaPrice::default().with_audio_second("0.0001".parse().unwrap());
/// // 7.5 s at $0.0001 a second.
/// assert_eq!(whisper.audio(7_500), Some(MicroUsd(750)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaPrice {
    /// The price of one image, by `"{quality}/{size}"`, `"{size}"`, `"{quality}"` or `"*"`.
    pub per_image: BTreeMap<String, MicroUsd>,
    /// The price of one second of audio.
    pub per_audio_second: Option<MicroUsd>,
}

impl MediaPrice {
    /// With `price` for one image of `kind` (`"{quality}/{size}"`, `"{size}"`, `"{quality}"`
    /// or `"*"`).
    #[must_use]
    pub fn with_image(mut self, kind: impl Into<String>, price: MicroUsd) -> Self {
        self.per_image.insert(kind.into(), price);
        self
    }

    /// With `price` for one second of audio.
    #[must_use]
    pub const fn with_audio_second(mut self, price: MicroUsd) -> Self {
        self.per_audio_second = Some(price);
        self
    }

    /// Whether it prices anything.
    pub fn is_empty(&self) -> bool {
        self.per_image.is_empty() && self.per_audio_second.is_none()
    }

    /// The price of one image of `quality` and `size`: the most specific key listed, or `None`.
    pub fn image(&self, quality: Option<&str>, size: Option<&str>) -> Option<MicroUsd> {
        let both = quality.zip(size).map(|(q, s)| format!("{q}/{s}"));
        [both.as_deref(), size, quality, Some("*")]
            .into_iter()
            .flatten()
            .find_map(|kind| self.per_image.get(kind).copied())
    }

    /// The price of `millis` milliseconds of audio, rounded up to a whole micro-dollar.
    pub fn audio(&self, millis: u64) -> Option<MicroUsd> {
        let per_second = self.per_audio_second?;
        let nano = u128::from(millis) * u128::from(per_second.0);
        Some(MicroUsd(
            u64::try_from(nano.div_ceil(1_000)).unwrap_or(u64::MAX),
        ))
    }
}
