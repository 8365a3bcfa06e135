//! End-to-end tests of the whole release and update loop, driving the real binaries of the
//! workspace (`image-builder`, `pubsys`, `tuftool`, `updog`, `signpost`).
//!
//! The library is empty on purpose: the tests live in `tests/` and the guest-side pieces
//! (kernel download, initramfs, guest init) in `scripts/`. See `README.md`.
#![deny(missing_docs)]
