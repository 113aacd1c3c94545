//! Tests against real mariadbd servers.
