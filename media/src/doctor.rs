//! Environment checks for `wemaster doctor` and `/readyz`: is GStreamer usable, and is every
//! element our pipeline templates name installed? When one is missing, say which Debian package
//! brings it, because "no element flvdemux" is not something an operator can act on.

use std::collections::BTreeSet;

/// One element that GStreamer cannot create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingElement {
    pub element: String,
    /// The Debian package that ships it, when known.
    pub package: Option<&'static str>,
}

/// Debian 12 package of the elements WeMaster uses (read off `dpkg -S` of each plugin).
pub fn debian_package_of(element: &str) -> Option<&'static str> {
    Some(match element {
        "queue" | "queue2" | "tee" | "fakesink" | "fakesrc" | "filesink" | "filesrc"
        | "identity" | "capsfilter" | "multiqueue" | "valve" => "libgstreamer1.0-0",
        "appsrc" | "appsink" | "videoconvert" | "videoscale" | "videorate" | "audioconvert"
        | "audioresample" | "opusdec" | "opusenc" | "decodebin" | "uridecodebin" | "playbin"
        | "videotestsrc" | "audiotestsrc" => "gstreamer1.0-plugins-base",
        "flvdemux" | "flvmux" | "aacparse" | "mpegaudioparse" | "splitmuxsink" | "splitmuxsrc"
        | "multifilesink" | "mp4mux" | "qtmux" | "qtdemux" | "jpegenc" | "rtph264depay"
        | "rtpopusdepay" | "rtpvp8depay" | "vp8enc" | "vp8dec" => "gstreamer1.0-plugins-good",
        "h264parse" | "h265parse" | "av1parse" | "mpegtsmux" | "tsdemux" | "hlssink2"
        | "hlssink" | "webrtcbin" | "fdkaacenc" | "voaacenc" => "gstreamer1.0-plugins-bad",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        e if e.starts_with("avdec_") || e.starts_with("avenc_") => "gstreamer1.0-libav",
        _ => return None,
    })
}

/// Which of `elements` GStreamer cannot find. Call [`crate::init`] first.
pub fn missing_elements<'a>(elements: impl IntoIterator<Item = &'a str>) -> Vec<MissingElement> {
    let wanted: BTreeSet<&str> = elements.into_iter().collect();
    wanted
        .into_iter()
        .filter(|e| gstreamer::ElementFactory::find(e).is_none())
        .map(|e| MissingElement {
            element: e.to_string(),
            package: debian_package_of(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_installed_and_reports_missing_elements() {
        crate::init().unwrap();
        let missing = missing_elements(["queue", "appsrc", "no-such-element-xyz"]);
        assert_eq!(
            missing,
            vec![MissingElement {
                element: "no-such-element-xyz".into(),
                package: None
            }]
        );
    }

    #[test]
    fn knows_where_media_elements_come_from() {
        assert_eq!(
            debian_package_of("h264parse"),
            Some("gstreamer1.0-plugins-bad")
        );
        assert_eq!(debian_package_of("avdec_h264"), Some("gstreamer1.0-libav"));
    }
}
