//! Creating a tape's directory and files so that nobody else can read them, and so
//! that a name planted in the directory (a symlink to a file the user owns, an
//! existing file) is never written through: tapes hold request bodies and upstream
//! data.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parent with mode 0700 (less the umask). A directory
/// that exists is left as it is: it is the operator's; the files in it are private
/// whatever its mode.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the file `path` for writing with mode 0600 (less the umask), failing with
/// `AlreadyExists` if anything is at `path` already (`O_EXCL`: a symlink included,
/// which is not followed, `O_NOFOLLOW`).
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
