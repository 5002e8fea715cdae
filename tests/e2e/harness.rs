//! The helpers the e2e tests started with, under their first name: everything here lives in
//! [`crate::support`] now (`Gateway`, `Spec`, `Resp`, `client`, `sse_data`, `openai_config`,
//! `plugin`, `root`, ...).

pub use crate::support::*;
