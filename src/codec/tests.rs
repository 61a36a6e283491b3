//! Table-driven decoder tests over recorded frames (being written).
