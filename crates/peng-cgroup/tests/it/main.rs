//! Groups made for real in this machine's cgroups (`real`), and the files written into plain
//! directory trees laid out like cgroupfs (`tree_v1`, `tree_v2`).

mod common;
mod real;
mod tree_v1;
mod tree_v2;
