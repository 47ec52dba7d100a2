//! Recordings: a session's inputs as JSON lines, so `ringside report` and the fixture tests
//! replay exactly what a live session saw.
//!
//! Format (one JSON value per line): first `{"recording":{"version":1,"info":…,"topology":…}}`,
//! then `{"sample":…}` per tick. Readers refuse another major version with a clear error.

use serde::{Deserialize, Serialize};

use crate::sample::{Sample, TargetInfo};
use crate::topology::Topology;

/// Recording format version.
pub const RECORDING_VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Format version.
    pub version: u32,
    /// What the target was.
    pub info: TargetInfo,
    /// The machine.
    pub topology: Topology,
}

/// One line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// The header (first line).
    Recording(RecordingHeader),
    /// A sample.
    Sample(Sample),
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// A line is not valid JSON of the expected shape.
    #[error("line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The first line is not a header.
    #[error("line 1: not a ringside recording (expected a {{\"recording\":…}} header)")]
    NoHeader,
    /// Another version.
    #[error("recording format version {found}, this ringside reads version {RECORDING_VERSION}")]
    Version {
        /// Version in the file.
        found: u32,
    },
    /// A second header.
    #[error("line {line}: a second recording header")]
    SecondHeader {
        /// 1-based line number.
        line: usize,
    },
}

/// A parsed recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// Header.
    pub header: RecordingHeader,
    /// Samples in order.
    pub samples: Vec<Sample>,
}

impl Recording {
    /// Parses a recording from its text. Blank lines are skipped.
    pub fn parse(text: &str) -> Result<Recording, RecordingError> {
        let mut header = None;
        let mut samples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line =
                serde_json::from_str(line).map_err(|source| RecordingError::Parse {
                    line: i + 1,
                    source,
                })?;
            match parsed {
                Line::Recording(h) => {
                    if header.is_some() {
                        return Err(RecordingError::SecondHeader { line: i + 1 });
                    }
                    if h.version != RECORDING_VERSION {
                        return Err(RecordingError::Version { found: h.version });
                    }
                    header = Some(h);
                }
                Line::Sample(s) => {
                    if header.is_none() {
                        return Err(RecordingError::NoHeader);
                    }
                    samples.push(s);
                }
            }
        }
        Ok(Recording {
            header: header.ok_or(RecordingError::NoHeader)?,
            samples,
        })
    }

    /// The header line.
    pub fn header_line(info: &TargetInfo, topology: &Topology) -> String {
        let line = Line::Recording(RecordingHeader {
            version: RECORDING_VERSION,
            info: info.clone(),
            topology: topology.clone(),
        });
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// A sample line.
    pub fn sample_line(sample: &Sample) -> String {
        serde_json::to_string(&Line::Sample(sample.clone())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear_errors() {
        let info = TargetInfo {
            name: "x".into(),
            ..TargetInfo::default()
        };
        let topo = Topology::default();
        let s = Sample {
            t_ns: 5,
            ..Sample::default()
        };
        let text = format!(
            "{}\n{}\n\n",
            Recording::header_line(&info, &topo),
            Recording::sample_line(&s)
        );
        let r = Recording::parse(&text).expect("parse");
        assert_eq!(r.header.info.name, "x");
        assert_eq!(r.samples, vec![s.clone()]);

        let err = Recording::parse(&Recording::sample_line(&s)).expect_err("no header");
        assert!(
            err.to_string().contains("not a ringside recording"),
            "{err}"
        );
        let other = text.replace("\"version\":1", "\"version\":7");
        let err = Recording::parse(&other).expect_err("version");
        assert!(err.to_string().contains("version 7"), "{err}");
        let err = Recording::parse("{\"sample\": 3}").expect_err("garbage");
        assert!(err.to_string().starts_with("line 1:"), "{err}");
    }
}
