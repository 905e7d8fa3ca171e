//! The watcher daemon (SPEC §3): turns edits in an on-disk checkout into patches for that
//! checkout's working SWS.
//!
//! Not built yet: it lands with the watcher issue, on top of the kernel's Shadow Working Sets.
