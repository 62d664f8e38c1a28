//! GStreamer pipelines: their templates (here) and running them ([`appsrc`]).
//!
//! Pipeline templates are GStreamer launch descriptions: the files of `pipelines/`, compiled
//! into the binary ([`TemplateSet::builtin`]) so it runs from any folder, and replaceable one
//! file at a time from a configured directory ([`TemplateSet::overlay_dir`]) so ops can tune a
//! pipeline without a rebuild. A template is `gst-launch-1.0` syntax with `{placeholder}`s
//! filled in per session. Lines starting with `#` are comments. The template set is loaded once
//! at start and checked by `wemaster doctor` (every element it names must be installed).
//!
//! - [`appsrc`]: a running `appsrc ! … ! appsink` pipeline (WHIP's transcoders).
//! - [`crate::vod`] runs the one-shot jobs on finished recordings (MP4, poster).

pub mod appsrc;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read pipeline templates in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pipeline template {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("pipeline template {name}: placeholder {{{placeholder}}} has no value")]
    MissingValue { name: String, placeholder: String },
    #[error("no pipeline template named {0}")]
    Unknown(String),
}

/// One template: its name (file stem) and its launch description with comments removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub description: String,
}

impl Template {
    /// Parse a template's text; comments and blank lines are dropped, lines are joined.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let description = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        if description.is_empty() {
            return Err(TemplateError::Invalid {
                name: name.into(),
                reason: "empty".into(),
            });
        }
        let t = Template {
            name: name.into(),
            description,
        };
        // Unbalanced braces would make rendering ambiguous: refuse them at load time.
        t.placeholders()?;
        Ok(t)
    }

    /// Names of the `{placeholder}`s, in order of first appearance.
    pub fn placeholders(&self) -> Result<Vec<String>, TemplateError> {
        let mut out = Vec::new();
        let mut rest = self.description.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| TemplateError::Invalid {
                name: self.name.clone(),
                reason: "unclosed '{'".into(),
            })?;
            let ph = &after[..close];
            if ph.is_empty() || !ph.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(TemplateError::Invalid {
                    name: self.name.clone(),
                    reason: format!("bad placeholder {{{ph}}}"),
                });
            }
            if !out.iter().any(|p| p == ph) {
                out.push(ph.to_string());
            }
            rest = &after[close + 1..];
        }
        Ok(out)
    }

    /// GStreamer element factory names the template uses (`flvdemux`, `h264parse`, ...).
    ///
    /// Tokens that are properties (`a=b`), pad references (`mux.` / `demux.video`), caps
    /// (`video/x-h264,...`) or links (`!`) are not elements; whatever else stands as a token is.
    pub fn elements(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for token in tokens(&self.description) {
            let is_name = token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if is_name
                && token
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
            {
                out.insert(token.to_string());
            }
        }
        out
    }

    /// Fill in every placeholder; a missing value is an error rather than a broken pipeline.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
        let mut out = self.description.clone();
        for ph in self.placeholders()? {
            let v = values
                .get(ph.as_str())
                .ok_or_else(|| TemplateError::MissingValue {
                    name: self.name.clone(),
                    placeholder: ph.clone(),
                })?;
            out = out.replace(&format!("{{{ph}}}"), v);
        }
        Ok(out)
    }
}

/// Whitespace-separated tokens, keeping quoted strings whole (they are property values).
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(st) = start.take() {
                    out.push(&s[st..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// Every template of a directory (`*.gst`), by name.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: BTreeMap<String, Template>,
}

/// The templates compiled into the binary: `pipelines/*.gst` at build time.
const BUILTIN: &[(&str, &str)] = &[
    ("poster", include_str!("../../pipelines/poster.gst")),
    ("vod-mp4", include_str!("../../pipelines/vod-mp4.gst")),
    (
        "vod-mp4-resized",
        include_str!("../../pipelines/vod-mp4-resized.gst"),
    ),
    (
        "whip-vp8-h264",
        include_str!("../../pipelines/whip-vp8-h264.gst"),
    ),
];

impl TemplateSet {
    /// The templates compiled into the binary.
    pub fn builtin() -> TemplateSet {
        let templates = BUILTIN
            .iter()
            .map(|(name, text)| {
                let t = Template::parse(name, text).expect("built-in templates parse (tested)");
                (name.to_string(), t)
            })
            .collect();
        TemplateSet { templates }
    }

    /// Only the `*.gst` files of `dir`.
    pub fn load_dir(dir: &Path) -> Result<TemplateSet, TemplateError> {
        let mut set = TemplateSet::default();
        set.overlay_dir(dir)?;
        Ok(set)
    }

    /// Each `*.gst` file of `dir` replaces the template of its name (or adds one); returns the
    /// names read, sorted.
    pub fn overlay_dir(&mut self, dir: &Path) -> Result<Vec<String>, TemplateError> {
        let io = |source| TemplateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut read = Vec::new();
        let templates = &mut self.templates;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("gst") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Io {
                path: path.clone(),
                source,
            })?;
            templates.insert(name.to_string(), Template::parse(name, &text)?);
            read.push(name.to_string());
        }
        read.sort();
        Ok(read)
    }

    pub fn get(&self, name: &str) -> Result<&Template, TemplateError> {
        self.templates
            .get(name)
            .ok_or_else(|| TemplateError::Unknown(name.into()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.templates.values()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMUX: &str = r#"
        # comment naming notanelement
        appsrc name=src is-live=true format=time caps="video/x-flv"
          ! flvdemux name=demux
        demux.video ! queue ! h264parse ! video/x-h264,stream-format=byte-stream ! mux.video
        demux.audio ! queue max-size-time={queue_ns} ! aacparse ! mux.audio_0
        splitmuxsink name=mux muxer-factory=mpegtsmux max-size-time={segment_ns} location="{dir}/seg %05d.ts"
    "#;

    #[test]
    fn elements_are_the_factory_tokens_only() {
        let t = Template::parse("remux", REMUX).unwrap();
        let els: Vec<_> = t.elements().into_iter().collect();
        assert_eq!(
            els,
            [
                "aacparse",
                "appsrc",
                "flvdemux",
                "h264parse",
                "queue",
                "splitmuxsink"
            ]
        );
    }

    #[test]
    fn render_fills_every_placeholder_or_fails() {
        let t = Template::parse("remux", REMUX).unwrap();
        assert_eq!(t.placeholders().unwrap(), ["queue_ns", "segment_ns", "dir"]);
        let mut v = BTreeMap::new();
        v.insert("queue_ns", "1".to_string());
        v.insert("segment_ns", "2000000000".to_string());
        let err = t.render(&v).unwrap_err();
        assert!(
            matches!(err, TemplateError::MissingValue { ref placeholder, .. } if placeholder == "dir")
        );
        v.insert("dir", "/tmp/x".to_string());
        let s = t.render(&v).unwrap();
        assert!(s.contains("max-size-time=2000000000") && s.contains("/tmp/x/seg"));
        assert!(!s.contains('{'));
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("e", "# only a comment\n").is_err());
        assert!(Template::parse("b", "fakesrc ! {oops").is_err());
        assert!(Template::parse("c", "fakesrc num-buffers={a b} ! fakesink").is_err());
    }

    #[test]
    fn every_file_of_pipelines_is_built_in_as_it_is_on_disk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let on_disk = TemplateSet::load_dir(&dir).unwrap();
        let builtin = TemplateSet::builtin();
        let names = |s: &TemplateSet| s.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&builtin),
            names(&on_disk),
            "list a new file in BUILTIN"
        );
        for t in on_disk.iter() {
            assert_eq!(builtin.get(&t.name).unwrap(), t);
        }
    }

    #[test]
    fn a_directory_replaces_templates_one_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("poster.gst"),
            "filesrc location={input} ! fakesink\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a template").unwrap();
        let mut set = TemplateSet::builtin();
        let read = set.overlay_dir(dir.path()).unwrap();
        assert_eq!(read, ["poster"]);
        assert_eq!(
            set.get("poster").unwrap().description,
            "filesrc location={input} ! fakesink"
        );
        assert_eq!(set.len(), BUILTIN.len(), "the others stay built in");
        assert_eq!(
            set.get("vod-mp4").unwrap(),
            TemplateSet::builtin().get("vod-mp4").unwrap()
        );
        assert!(set.overlay_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_shipped_templates_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let set = TemplateSet::load_dir(&dir).unwrap();
        assert!(!set.is_empty());
        for t in set.iter() {
            assert!(!t.elements().is_empty(), "{} names no element", t.name);
        }
    }
}
