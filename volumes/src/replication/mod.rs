//! Synchronous replication from the primary's image to the standby's.
