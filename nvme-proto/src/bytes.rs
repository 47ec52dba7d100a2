//! Little-endian field access that cannot panic: reads past the end yield zero bytes and writes
//! past the end are dropped. Callers check buffer lengths up front (and return errors); these
//! helpers only guarantee that a wrong constant offset becomes a failing test, not a panic.

#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        out.copy_from_slice(s);
    }
    out
}

#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

#[inline]
pub(crate) fn put(b: &mut [u8], off: usize, src: &[u8]) {
    if let Some(d) = off
        .checked_add(src.len())
        .and_then(|end| b.get_mut(off..end))
    {
        d.copy_from_slice(src);
    }
}

#[inline]
pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    put(b, off, &v.to_le_bytes());
}

#[inline]
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}

#[inline]
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}

/// A fixed-width, NUL-padded ASCII/UTF-8 string field (NQNs, serial numbers, addresses).
/// Returns the bytes before the first NUL; `None` when the field has no NUL terminator.
pub(crate) fn nul_terminated(field: &[u8]) -> Option<&[u8]> {
    field
        .iter()
        .position(|&c| c == 0)
        .and_then(|p| field.get(..p))
}
