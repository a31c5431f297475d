//! Where in the lab file.
