//! The strings exec takes, built before the clone: C strings checked for
//! NUL, packed in one block, and the NULL-terminated pointer arrays into it.

use super::*;

pub(super) fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| contains_nul(s))
}

/// Why a string cannot go to exec.
pub(super) fn contains_nul(s: &OsStr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{s:?} contains a NUL byte"),
    )
}

/// NUL-terminated strings in one buffer (argv or envp): two allocations
/// however many strings, where a `CString` each cost one.
#[derive(Default)]
pub(super) struct StringBlock {
    pub(super) bytes: Vec<u8>,
    pub(super) starts: Vec<usize>,
}

impl StringBlock {
    /// Appends one string made of `parts`; none may contain a NUL byte.
    pub(super) fn push(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if let Some(part) = parts.iter().find(|p| p.contains(&0)) {
            return Err(contains_nul(OsStr::from_bytes(part)));
        }
        self.starts.push(self.bytes.len());
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.push(0);
        Ok(())
    }

    /// The null-terminated pointer array execve takes; it borrows the
    /// block, which must not change while the pointers are in use.
    pub(super) fn pointers(&self) -> Pointers<'_> {
        Pointers {
            array: self
                .starts
                .iter()
                .map(|&s| self.bytes[s..].as_ptr().cast::<libc::c_char>())
                .chain(std::iter::once(std::ptr::null()))
                .collect(),
            _block: std::marker::PhantomData,
        }
    }
}

/// Pointers into a [`StringBlock`], which outlives them.
pub(super) struct Pointers<'a> {
    pub(super) array: Vec<*const libc::c_char>,
    pub(super) _block: std::marker::PhantomData<&'a StringBlock>,
}

impl Pointers<'_> {
    pub(super) fn as_ptr(&self) -> *const *const libc::c_char {
        self.array.as_ptr()
    }
}
