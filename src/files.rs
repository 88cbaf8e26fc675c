//! Files only their owner may read: the directories and files that hold credentials (the staff list, the local
//! credential) or tickets with internal notes (the ticket store).

use std::path::Path;

use anyhow::Context as _;

/// Creates `dir` if needed, readable by its owner only: it holds credentials, or tickets with internal notes.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// Makes `file` readable and writable by its owner only.
pub fn private_file(file: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", file.display()))?;
    }
    Ok(())
}
