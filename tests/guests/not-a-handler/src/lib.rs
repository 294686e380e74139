//! A valid component that exports no handler: loading it must fail with a
//! message that says what is missing.

/// Exported as a core function only; the component exports no interface.
pub fn nothing() {}
