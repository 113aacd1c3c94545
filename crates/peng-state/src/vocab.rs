//! What the state stores as words: audit actions, a database's status and nodes, a backup's
//! kind. Each row is parsed at the SQLite boundary (parse, don't validate): a word the code does
//! not know is a `StateError::Corrupt`, never a silent default.

use peng_core::vocabulary;

vocabulary! {
    /// What an audit entry records.
    pub enum AuditAction ("audit action") {
        TeamCreate = "team.create",
        TeamTokenRotate = "team.token.rotate",
        TeamIngestRotate = "team.ingest.rotate",
        /// The Unix user a team's instances run as was made or corrected.
        TeamUser = "team.user",
        ServiceApply = "service.apply",
        ServiceDestroy = "service.destroy",
        /// An instance was killed for memory.
        InstanceOom = "instance.oom",
        AlertFiring = "alert.firing",
        AlertResolved = "alert.resolved",
        AlertEscalated = "alert.escalated",
        DatabaseCreate = "database.create",
        DatabaseCredentials = "database.credentials",
        DatabaseBackup = "database.backup",
        DatabaseRestore = "database.restore",
        DatabaseRotate = "database.rotate",
        DatabasePromote = "database.promote",
        DatabaseDestroy = "database.destroy",
        DatabaseDriftRepaired = "database.drift_repaired",
    }
}

impl AuditAction {
    /// The entry of an alert's transition.
    pub fn of_alert(t: peng_core::Transition) -> AuditAction {
        match t {
            peng_core::Transition::Firing => AuditAction::AlertFiring,
            peng_core::Transition::Resolved => AuditAction::AlertResolved,
            peng_core::Transition::Escalated => AuditAction::AlertEscalated,
        }
    }
}

vocabulary! {
    /// Where a database is in its life.
    pub enum DbStatus ("database status") {
        /// Declared (row and passwords committed), not yet completely made.
        Creating = "creating",
        /// Made and checked at least once.
        Ready = "ready",
        /// A password rotation moves the instances to the other application account; both
        /// accounts are open until it finishes.
        Rotating = "rotating",
        /// A promote is switching the primary away from the node `primary_node` names (which
        /// it keeps naming until the promote records the new one). One cut short is settled by
        /// the next converge or reconcile: undone while the old primary starts, finished when
        /// it does not.
        Promoting = "promoting",
    }
}

vocabulary! {
    /// One of the two servers of a dedicated database, or one of its two application accounts.
    pub enum DbNode ("database node") {
        A = "a",
        B = "b",
    }
}

impl DbNode {
    /// The other one.
    pub fn other(self) -> DbNode {
        match self {
            DbNode::A => DbNode::B,
            DbNode::B => DbNode::A,
        }
    }
}

vocabulary! {
    /// Why a backup was taken.
    pub enum BackupKind ("backup kind") {
        /// On the file's `backup.every`.
        Scheduled = "scheduled",
        /// `peng db backup`.
        Manual = "manual",
        /// Before a protected database was destroyed.
        Final = "final",
    }
}
