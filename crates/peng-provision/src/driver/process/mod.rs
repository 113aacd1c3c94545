//! Supervised local child processes.
