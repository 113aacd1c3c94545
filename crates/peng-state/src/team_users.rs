//! Which Unix user each team's instances run as. The user itself is made by `peng-sandbox`; this
//! is the record that keeps a team on the same ids.

use peng_core::{now_ns, TeamName};
use sqlx::Row;

use crate::store::insert_audit;
use crate::{NewAudit, State, StateError};

/// A team's recorded Unix user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamUserRow {
    pub team: TeamName,
    pub user_name: String,
    pub uid: u32,
    pub gid: u32,
    pub created_at: i64,
}

fn id(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<u32, StateError> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StateError::Corrupt(format!("{col} {v} is not a Unix id")))
}

impl State {
    /// The recorded user of `team`, if any.
    pub async fn team_user(&self, team: &TeamName) -> Result<Option<TeamUserRow>, StateError> {
        let row =
            sqlx::query("SELECT user_name, uid, gid, created_at FROM team_users WHERE team = ?")
                .bind(team.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(TeamUserRow {
                team: team.clone(),
                user_name: r.try_get("user_name")?,
                uid: id(&r, "uid")?,
                gid: id(&r, "gid")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Records (or corrects) the user of a team, with its audit entry.
    pub async fn put_team_user(
        &self,
        team: &TeamName,
        user_name: &str,
        uid: u32,
        gid: u32,
        audit: NewAudit,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO team_users (team, user_name, uid, gid, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (team) DO UPDATE SET user_name = excluded.user_name, uid = excluded.uid,
             gid = excluded.gid",
        )
        .bind(team.as_str())
        .bind(user_name)
        .bind(i64::from(uid))
        .bind(i64::from(gid))
        .bind(now_ns())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
