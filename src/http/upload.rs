//! Helpers of the image upload routes (avatars, course covers): the type comes from the bytes
//! (magic numbers), never from the client's `Content-Type`, and the body is read up to a cap.

use axum::body::Body;

use super::error::ApiError;

/// `(content type, file extension)` of a PNG, JPEG or WebP image, judged by its first bytes.
pub fn sniff_image(body: &[u8]) -> Option<(&'static str, &'static str)> {
    if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if body.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(("image/jpeg", "jpg"))
    } else if body.len() > 12 && &body[0..4] == b"RIFF" && &body[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

/// Read a request body of at most `max` bytes (413 `payload_too_large` beyond, also when a
/// `Content-Length` announces more), whatever the router's default body limit is.
pub async fn read_capped(
    headers: &axum::http::HeaderMap,
    body: Body,
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge;
            }
            source = err.source();
        }
        ApiError::BadRequest(format!("could not read the body: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::sniff_image;

    #[test]
    fn images_are_recognised_by_their_magic_bytes() {
        assert_eq!(
            sniff_image(b"\x89PNG\r\n\x1a\n....").map(|t| t.0),
            Some("image/png")
        );
        assert_eq!(
            sniff_image(&[0xff, 0xd8, 0xff, 0xe0]).map(|t| t.0),
            Some("image/jpeg")
        );
        assert_eq!(
            sniff_image(b"RIFF\0\0\0\0WEBPVP8 ").map(|t| t.0),
            Some("image/webp")
        );
        assert_eq!(sniff_image(b"<svg xmlns=...>"), None);
        assert_eq!(sniff_image(b"GIF89a"), None);
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVE"), None);
    }
}
