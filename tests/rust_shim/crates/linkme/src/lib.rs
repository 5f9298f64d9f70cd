//! Stand-in for linkme 0.3: `#[distributed_slice]` declarations become a
//! `DistributedSlice<[T]>` (always empty here: nothing is linked), elements
//! are type-checked against the slice they name.

use std::marker::PhantomData;

pub use shim_macros::distributed_slice;

pub struct DistributedSlice<T: ?Sized> {
    _marker: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> Clone for DistributedSlice<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for DistributedSlice<T> {}

impl<T: 'static> DistributedSlice<[T]> {
    #[doc(hidden)]
    pub const fn __private_new() -> Self {
        Self {
            _marker: PhantomData,
        }
    }

    pub fn static_slice(self) -> &'static [T] {
        &[]
    }
}

impl<T: 'static> std::ops::Deref for DistributedSlice<[T]> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.static_slice()
    }
}

impl<T: 'static> IntoIterator for DistributedSlice<[T]> {
    type Item = &'static T;
    type IntoIter = std::slice::Iter<'static, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.static_slice().iter()
    }
}

#[doc(hidden)]
pub mod __private {
    /// Emitted by `#[distributed_slice(PATH)]`: `T` is the element static's
    /// declared type, so `PATH` must be a slice of exactly `T`.
    pub fn typecheck<T: 'static>(_slice: super::DistributedSlice<[T]>, _element: &T) {}
}
