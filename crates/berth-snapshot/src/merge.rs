//! Merging an overlay-form upper directory into a full tree (the native snapshotter's commit).

use std::path::Path;

use crate::Result;

/// Apply the changes in `upper` (overlay form) onto the full tree `lower`.
pub(crate) fn apply_upper(_upper: &Path, _lower: &Path) -> Result<()> {
    Ok(())
}
