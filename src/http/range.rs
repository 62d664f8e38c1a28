//! HTTP `Range: bytes=...` parsing (RFC 9110 §14), shared by every route that serves objects
//! (local presigned downloads, replays, MP4 downloads).

use crate::storage::ByteRange;

/// Parse a `Range` header value. `Ok(None)`: serve the whole object (no header, another unit, or
/// several ranges — which the RFC lets a server ignore). `Err(())`: a bytes range that is
/// syntactically invalid, answered with 416.
pub fn parse_range(value: Option<&str>) -> Result<Option<ByteRange>, ()> {
    let Some(value) = value else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.trim().split_once('-').ok_or(())?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => Err(()),
        (true, false) => Ok(Some(ByteRange::Suffix(num(b)?))),
        (false, true) => Ok(Some(ByteRange::From(num(a)?))),
        (false, false) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                Err(())
            } else {
                Ok(Some(ByteRange::FromTo(a, b)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse_range(Some("bytes=0-99")),
            Ok(Some(ByteRange::FromTo(0, 99)))
        );
        assert_eq!(
            parse_range(Some("bytes=100-")),
            Ok(Some(ByteRange::From(100)))
        );
        assert_eq!(
            parse_range(Some("bytes=-500")),
            Ok(Some(ByteRange::Suffix(500)))
        );
    }

    #[test]
    fn ignores_what_it_may_and_refuses_garbage() {
        assert_eq!(parse_range(None), Ok(None));
        assert_eq!(parse_range(Some("items=0-1")), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-1,5-6")), Ok(None));
        assert_eq!(parse_range(Some("bytes=9-1")), Err(()));
        assert_eq!(parse_range(Some("bytes=-")), Err(()));
        assert_eq!(parse_range(Some("bytes=a-b")), Err(()));
    }
}
