//! Fault injection at the file seam: every operation in `file.rs` asks [`check`] first, so
//! tests (here and in the broker) can make a chosen write, fsync or read fail the way a disk
//! does (EIO, ENOSPC) and watch the log's reaction. Off unless an injector is installed;
//! the fast path is one relaxed atomic load.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The kinds of file operation an injector can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    Open,
    Write,
    Read,
    Truncate,
    Sync,
    SyncDir,
    Rename,
    Remove,
}

/// Decides, for one operation on one path, whether it fails and with which error.
pub type FaultInjector = dyn Fn(FileOp, &Path) -> Option<io::Error> + Send + Sync;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static INJECTOR: RwLock<Option<Arc<FaultInjector>>> = RwLock::new(None);

/// Installs (or with `None` removes) the process-wide injector. Injectors see every path,
/// so a test should only fail paths under its own directory.
pub fn set_injector(injector: Option<Arc<FaultInjector>>) {
    let mut slot = INJECTOR
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ACTIVE.store(injector.is_some(), Ordering::Release);
    *slot = injector;
}

/// `Err` when the installed injector fails this operation.
pub(crate) fn check(op: FileOp, path: &Path) -> io::Result<()> {
    if !ACTIVE.load(Ordering::Acquire) {
        return Ok(());
    }
    let slot = INJECTOR
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.as_ref().and_then(|f| f(op, path)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
