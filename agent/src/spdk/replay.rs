//! Answers SPDK RPC methods from a recording (`rpc.jsonl`: one `{"t_ns", "method", "result"}`
//! object a line, the per-sample methods repeated every second and the others once), so the SPDK
//! source runs offline exactly as it runs live.
//!
//! A round starts at each `framework_get_reactors`; [`ReplayRpc::begin_round`] moves to the next
//! one and [`ReplayRpc::recorded_ns`] gives its recorded time, which becomes the sample's time.
//! Methods recorded once are answered in every round.

use std::collections::HashMap;

use serde_json::Value;

use super::rpc::{RpcError, RpcTransport};

/// The method that opens a round in a recording.
pub const ROUND_START: &str = "framework_get_reactors";

#[derive(Clone, Debug, Default)]
struct Round {
    t_ns: u64,
    answers: HashMap<String, Result<Value, (i64, String)>>,
}

/// A recording of SPDK RPC answers.
#[derive(Clone, Debug)]
pub struct ReplayRpc {
    source: String,
    rounds: Vec<Round>,
    once: HashMap<String, Result<Value, (i64, String)>>,
    current: Option<usize>,
}

impl ReplayRpc {
    /// Parses `rpc.jsonl`; one line naming the first bad line on error.
    pub fn parse(source: &str, text: &str) -> Result<ReplayRpc, String> {
        let mut lines = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(l)
                .map_err(|e| format!("{source} line {}: not JSON ({e})", i + 1))?;
            let method = v
                .get("method")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{source} line {}: no \"method\"", i + 1))?
                .to_string();
            let t_ns = v.get("t_ns").and_then(Value::as_u64).unwrap_or(0);
            let answer = match (v.get("result"), v.get("error")) {
                (Some(r), _) => Ok(r.clone()),
                (None, Some(e)) => Err((
                    e.get("code").and_then(Value::as_i64).unwrap_or(0),
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )),
                (None, None) => {
                    return Err(format!(
                        "{source} line {}: neither \"result\" nor \"error\"",
                        i + 1
                    ))
                }
            };
            lines.push((t_ns, method, answer));
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, m, _) in &lines {
            *count.entry(m.as_str()).or_default() += 1;
        }
        let periodic: Vec<String> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(m, _)| m.to_string())
            .collect();
        let mut rounds: Vec<Round> = Vec::new();
        let mut once = HashMap::new();
        for (t_ns, method, answer) in lines {
            if !periodic.contains(&method) {
                once.insert(method, answer);
                continue;
            }
            if method == ROUND_START || rounds.is_empty() {
                rounds.push(Round {
                    t_ns,
                    answers: HashMap::new(),
                });
            }
            if let Some(r) = rounds.last_mut() {
                r.answers.insert(method, answer);
            }
        }
        if rounds.is_empty() {
            return Err(format!("{source}: no repeated methods, nothing to sample"));
        }
        Ok(ReplayRpc {
            source: source.to_string(),
            rounds,
            once,
            current: None,
        })
    }

    /// Recorded rounds (samples).
    pub fn rounds(&self) -> usize {
        self.rounds.len()
    }
}

impl RpcTransport for ReplayRpc {
    fn call(&mut self, method: &str, _params: Option<Value>) -> Result<Value, RpcError> {
        let round = self.rounds.get(self.current.unwrap_or(0));
        let answer = round
            .and_then(|r| r.answers.get(method))
            .or_else(|| self.once.get(method));
        match answer {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err((code, message))) => Err(RpcError::Method {
                method: method.to_string(),
                code: *code,
                message: message.clone(),
            }),
            None => Err(RpcError::NotRecorded {
                method: method.to_string(),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("replay of {} ({} samples)", self.source, self.rounds.len())
    }

    fn begin_round(&mut self) {
        self.current = Some(match self.current {
            None => 0,
            Some(i) => (i + 1).min(self.rounds.len() - 1),
        });
    }

    fn recorded_ns(&self) -> Option<u64> {
        self.rounds.get(self.current.unwrap_or(0)).map(|r| r.t_ns)
    }
}
