//! What several ops share, in one place (op files do not import from each
//! other): file helpers, param groups with the code that applies them, and
//! the results schema of `evaluate` and `report`.

pub mod files;
pub mod params;
pub mod results;
