//! temp
#![allow(dead_code)]
pub(crate) mod fmt;
pub(crate) mod market;
