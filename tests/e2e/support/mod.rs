//! What the e2e tests share: the gateway binary ([`gateway`]), the mock upstream
//! ([`mock`]), HTTP calls and answers ([`http`]), the admin routes ([`admin`]), and config
//! builders that serialise the LiteLLM config shape ([`config`]).

pub mod admin;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod http;
pub mod mock;
pub mod postgres;
pub mod redis;

pub use config::{Config, Deployment, openai_config};
pub use gateway::{Gateway, Spec, plugin, root};
pub use http::{Resp, chunk_content, client, openai_chunks, sse_data};
