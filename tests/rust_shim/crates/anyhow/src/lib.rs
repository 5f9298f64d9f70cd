//! Stand-in for `anyhow::{Error, Result}`: any `std::error::Error + Send +
//! Sync + 'static` converts into `Error` through `?`, as with anyhow.

use std::fmt;

pub struct Error {
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Self {
            inner: Box::new(error),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

pub type Result<T, E = Error> = core::result::Result<T, E>;
