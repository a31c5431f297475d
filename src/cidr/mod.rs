//! CIDR arithmetic for `vpclab cidr` (the seed's section 2).
