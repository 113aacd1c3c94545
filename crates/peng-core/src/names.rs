//! Names of teams, services and stages: lowercase DNS-label-like words, so that they are safe
//! in file names, URLs, metric labels and SQL identifiers without quoting.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} '{value}' is longer than 63 characters")]
    TooLong { what: &'static str, value: String },
    #[error(
        "{what} '{value}' must start with a lowercase letter and contain only a-z, 0-9 and '-'"
    )]
    BadChars { what: &'static str, value: String },
    #[error("service id '{0}' must be written as TEAM/SERVICE")]
    BadServiceId(String),
}

fn check(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > 63 {
        return Err(NameError::TooLong {
            what,
            value: value.to_string(),
        });
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || value.ends_with('-') {
        return Err(NameError::BadChars {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Checks and wraps a name.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                check($what, value)?;
                Ok(Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A team: owns services, streams, sensors and costs.
    TeamName,
    "team name"
);
name_type!(
    /// A service's name, unique within its team.
    ServiceName,
    "service name"
);
name_type!(
    /// A stage such as `integration` or `production`.
    StageName,
    "stage name"
);

/// `team/service`: how a service is named everywhere outside its own file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId {
    pub team: TeamName,
    pub service: ServiceName,
}

impl ServiceId {
    pub fn new(team: TeamName, service: ServiceName) -> Self {
        Self { team, service }
    }

    /// Parses `team/service`.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let (team, service) = value
            .split_once('/')
            .ok_or_else(|| NameError::BadServiceId(value.to_string()))?;
        Ok(Self {
            team: TeamName::parse(team)?,
            service: ServiceName::parse(service)?,
        })
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.team, self.service)
    }
}

impl FromStr for ServiceId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_dns_labels_only() {
        assert!(TeamName::parse("checkout").is_ok());
        assert!(TeamName::parse("team-2").is_ok());
        assert!(TeamName::parse("").is_err());
        assert!(TeamName::parse("2team").is_err());
        assert!(TeamName::parse("Team").is_err());
        assert!(TeamName::parse("a-").is_err());
        assert!(TeamName::parse("a/b").is_err());
        assert!(TeamName::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn service_id_round_trips() {
        let id = ServiceId::parse("checkout/orders").unwrap();
        assert_eq!(id.to_string(), "checkout/orders");
        assert!(ServiceId::parse("checkout").is_err());
        assert!(ServiceId::parse("checkout/Orders").is_err());
    }
}
