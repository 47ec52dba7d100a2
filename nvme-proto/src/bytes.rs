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

#[inline]
pub(crate) fn u128_at(b: &[u8], off: usize) -> u128 {
    u128::from_le_bytes(arr(b, off))
}

#[inline]
pub(crate) fn put_u128(b: &mut [u8], off: usize, v: u128) {
    put(b, off, &v.to_le_bytes());
}

/// Read a fixed-width text field (serial number, model, firmware, transport address): the
/// bytes up to the first NUL, with trailing spaces removed. Must be UTF-8.
pub(crate) fn text_field(
    b: &[u8],
    off: usize,
    len: usize,
    field: &'static str,
) -> Result<String, crate::ProtoError> {
    let raw = off
        .checked_add(len)
        .and_then(|end| b.get(off..end))
        .unwrap_or_default();
    let raw = raw
        .iter()
        .position(|&c| c == 0)
        .and_then(|p| raw.get(..p))
        .unwrap_or(raw);
    let s = std::str::from_utf8(raw).map_err(|_| crate::ProtoError::InvalidField {
        field,
        offset: off,
        reason: "not utf-8",
    })?;
    Ok(s.trim_end_matches(' ').to_owned())
}

/// Write a fixed-width text field padded with `pad` (b' ' for Identify strings, 0 for
/// NUL-terminated fields). Errors when the text does not fit (NUL-padded fields keep one NUL).
pub(crate) fn put_text(
    b: &mut [u8],
    off: usize,
    len: usize,
    s: &str,
    pad: u8,
    field: &'static str,
) -> Result<(), crate::ProtoError> {
    let room = if pad == 0 { len.saturating_sub(1) } else { len };
    if s.len() > room || s.as_bytes().contains(&0) {
        return Err(crate::ProtoError::OutOfRange {
            field,
            value: s.len() as u64,
        });
    }
    let Some(dst) = off.checked_add(len).and_then(|end| b.get_mut(off..end)) else {
        return Err(crate::ProtoError::short(
            field,
            off.saturating_add(len),
            b.len(),
        ));
    };
    dst.fill(pad);
    put(dst, 0, s.as_bytes());
    Ok(())
}
