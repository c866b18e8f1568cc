//! The todo example (being built).

fn main() {}
