//! Finding subband files: name parsing, directory watching and scanning.

pub mod names;
pub mod watch;
