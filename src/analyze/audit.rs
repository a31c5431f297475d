//! AWS Security Hub's controls, checked on a lab.
