//! A group's lifecycle state.

use serde::{Deserialize, Serialize};

/// The states of a group, with the original pipeline's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    Collecting,
    Pending,
    InProgress,
    Completed,
    Failed,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Collecting,
        GroupState::Pending,
        GroupState::InProgress,
        GroupState::Completed,
        GroupState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Collecting => "collecting",
            GroupState::Pending => "pending",
            GroupState::InProgress => "in_progress",
            GroupState::Completed => "completed",
            GroupState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
