//! Shared helpers for the integration tests.
//!
//! Each test binary uses only part of this module, so unused items are expected.
#![allow(dead_code)]

pub mod drive;
pub mod outbox_contract;
pub mod robots;
pub mod smtp;
pub mod webhook_sink;
