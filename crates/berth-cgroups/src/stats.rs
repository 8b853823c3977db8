//! Resource usage, shaped like runc's `events --stats` data.

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::Manager;

/// Resource usage of a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {}

pub(crate) fn collect(_m: &Manager) -> Result<Stats, CgroupError> {
    Ok(Stats::default())
}
