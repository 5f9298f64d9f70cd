//! Stand-in for the libbpf-rs 0.26 items a libbpf-cargo skeleton and
//! Rezolus' `SkelExt`/`BpfBuilder` name: `Map<'obj>`, `Program<'obj>`,
//! `OpenObject`, `Error`/`Result` and the `skel` traits.

use std::fmt;
use std::marker::PhantomData;

#[derive(Debug)]
pub struct Error {
    errno: i32,
}

impl Error {
    pub fn from_raw_os_error(errno: i32) -> Self {
        Self { errno }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libbpf error {}", self.errno)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = core::result::Result<T, E>;

/// The storage a skeleton is opened into.
pub struct OpenObject {
    _private: (),
}

/// A loaded map. Covariant in `'obj`, like libbpf-rs' `MapImpl`, so
/// `&self.maps.x` is a `&Map<'_>` borrowed from `&self`.
pub struct Map<'obj> {
    name: &'static str,
    _object: PhantomData<&'obj OpenObject>,
}

impl Map<'_> {
    pub fn name(&self) -> &str {
        self.name
    }
}

/// A loaded program.
pub struct Program<'obj> {
    insns: usize,
    _object: PhantomData<&'obj OpenObject>,
}

impl Program<'_> {
    pub fn insn_cnt(&self) -> usize {
        self.insns
    }
}

pub mod skel {
    use super::{OpenObject, Result};
    use std::mem::MaybeUninit;

    pub trait SkelBuilder<'obj> {
        type Output: OpenSkel<'obj>;

        fn open(self, object: &'obj mut MaybeUninit<OpenObject>) -> Result<Self::Output>;
    }

    pub trait OpenSkel<'obj> {
        type Output: Skel<'obj>;

        fn load(self) -> Result<Self::Output>;
    }

    pub trait Skel<'obj> {
        fn attach(&mut self) -> Result<()>;
    }
}
