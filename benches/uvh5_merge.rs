//! Criterion benchmark of the UVH5 subband merge (filled in below).
fn main() {}
