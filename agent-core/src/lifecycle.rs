//! The lifecycle of an attached target, as every live sink shows it: one explicit state and one
//! transition function ([`TargetStatus::apply`]), pure (time is a parameter, no I/O).
//!
//! ```text
//!            appeared                 vanished                 appeared
//!  Waiting ───────────▶ Attached ───────────────▶ Gone ───────────────────▶ Reattached
//!     ▲  vanished            │ appeared (another instance)  ▲     vanished       │
//!     └──────┘               └────────────────▶ Reattached ─┴────────────────────┘
//! ```
//!
//! `Waiting`: no instance of that name yet (the session started before its target).
//! `Attached`: reading the first instance seen. `Gone`: the instance exited, was killed,
//! truncated or replaced; nothing it reported is served as live. `Reattached`: reading a later
//! instance with the same name (its counters start again from zero).

use serde::{Deserialize, Serialize};

/// Where a session stands with its target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// No instance yet.
    #[default]
    Waiting,
    /// Reading the first instance.
    Attached,
    /// The instance went away; waiting for the next one.
    Gone,
    /// Reading a later instance of the same name.
    Reattached,
}

impl TargetState {
    /// Lowercase name (`waiting`, `attached`, `gone`, `reattached`): the label value and the
    /// word the TUI header shows.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Waiting => "waiting",
            TargetState::Attached => "attached",
            TargetState::Gone => "gone",
            TargetState::Reattached => "reattached",
        }
    }

    /// An instance is being read (attached or reattached).
    pub fn is_live(self) -> bool {
        matches!(self, TargetState::Attached | TargetState::Reattached)
    }
}

/// Which instance: what tells two instances of the same name apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceId {
    /// The producer's pid.
    pub pid: u32,
    /// The trace file's inode.
    pub inode: u64,
    /// The instance's start time (CLOCK_REALTIME ns, from the trace file header).
    pub start_realtime_ns: u64,
}

/// What the agent observed about its target since the last tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifeEvent {
    /// An instance is readable (the same one as before, or a new one).
    Appeared(InstanceId),
    /// The instance (or its absence) is not readable; why, in a few lowercase words.
    Vanished(String),
}

/// One target's lifecycle: the state, since when, why, and which instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// Instance name followed.
    pub name: String,
    /// The state.
    pub state: TargetState,
    /// The instance read now, or the last one read while gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceId>,
    /// CLOCK_MONOTONIC ns of the last state change.
    pub since_ns: u64,
    /// Why it is waiting or gone (empty while live).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Instances attached so far (1 after the first attach; each restart adds one).
    pub attachments: u32,
}

impl TargetStatus {
    /// A status waiting for instance `name`.
    pub fn waiting(name: &str, now_ns: u64, reason: &str) -> TargetStatus {
        TargetStatus {
            name: name.to_string(),
            since_ns: now_ns,
            reason: reason.to_string(),
            ..TargetStatus::default()
        }
    }

    /// The one transition function. Returns true when the state changed or a new instance was
    /// attached (the caller then rebuilds what it derived from the old instance: windows,
    /// counters, placement).
    pub fn apply(&mut self, ev: LifeEvent, now_ns: u64) -> bool {
        use TargetState::*;
        let next = match (&ev, self.state) {
            (LifeEvent::Appeared(id), Attached | Reattached)
                if self.instance.as_ref() == Some(id) =>
            {
                return false
            }
            (LifeEvent::Appeared(_), Waiting) => Attached,
            // A new instance while gone, or one replacing the file before we saw it vanish.
            (LifeEvent::Appeared(_), Attached | Reattached | Gone) => Reattached,
            (LifeEvent::Vanished(_), Attached | Reattached | Gone) => Gone,
            (LifeEvent::Vanished(_), Waiting) => Waiting,
        };
        let changed = next != self.state;
        match ev {
            LifeEvent::Appeared(id) => {
                self.instance = Some(id);
                self.attachments += 1;
                self.reason.clear();
                self.state = next;
                self.since_ns = now_ns;
                true
            }
            LifeEvent::Vanished(why) => {
                if changed {
                    self.since_ns = now_ns;
                }
                self.state = next;
                self.reason = why;
                changed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: u32) -> InstanceId {
        InstanceId {
            pid,
            inode: u64::from(pid) * 7,
            start_realtime_ns: u64::from(pid) * 1000,
        }
    }

    #[test]
    fn waits_attaches_goes_and_reattaches() {
        let mut s = TargetStatus::waiting("rst", 1, "no instance named rst");
        assert_eq!(s.state, TargetState::Waiting);
        assert!(!s.apply(LifeEvent::Vanished("still none".into()), 2));
        assert_eq!((s.state, s.since_ns), (TargetState::Waiting, 1));
        assert!(s.apply(LifeEvent::Appeared(id(10)), 3));
        assert_eq!((s.state, s.attachments), (TargetState::Attached, 1));
        assert!(s.reason.is_empty());
        assert!(!s.apply(LifeEvent::Appeared(id(10)), 4), "same instance");
        assert!(s.apply(LifeEvent::Vanished("process 10 exited".into()), 5));
        assert_eq!((s.state, s.since_ns), (TargetState::Gone, 5));
        assert_eq!(s.instance, Some(id(10)), "the last instance stays named");
        assert!(!s.apply(LifeEvent::Vanished("no instance".into()), 6));
        assert_eq!(s.reason, "no instance");
        assert!(s.apply(LifeEvent::Appeared(id(11)), 7));
        assert_eq!(
            (s.state, s.attachments, s.since_ns),
            (TargetState::Reattached, 2, 7)
        );
    }

    #[test]
    fn a_replacement_seen_before_the_loss_is_a_reattach() {
        let mut s = TargetStatus::waiting("rst", 0, "");
        s.apply(LifeEvent::Appeared(id(10)), 1);
        assert!(s.apply(LifeEvent::Appeared(id(12)), 2));
        assert_eq!(s.state, TargetState::Reattached);
        assert_eq!(s.instance, Some(id(12)));
        assert!(s.state.is_live());
        assert!(!TargetState::Gone.is_live() && !TargetState::Waiting.is_live());
    }

    #[test]
    fn json_names_the_state_in_lowercase() {
        let s = TargetStatus::waiting("a", 0, "why");
        let j = serde_json::to_string(&s).expect("json");
        assert!(j.contains("\"state\":\"waiting\""), "{j}");
        let back: TargetStatus = serde_json::from_str(&j).expect("parse");
        assert_eq!(back, s);
    }
}
