//! Every source against every destination.
