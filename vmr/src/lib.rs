//! Address spaces and VM regions (filled by a later issue).
