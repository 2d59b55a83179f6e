//! All integration tests build as one binary (faster to link on 2 cores).
mod cases;
mod common;
