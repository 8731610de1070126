//! The API families, one folder each (routes, bodies, errors), each speaking its seed's
//! dialect over the same commands and read model.

pub mod ai_llm;
pub mod ai_model_config;
pub mod api_keys;
pub mod settings;
pub mod shared;
pub mod user_api_keys;
