//! The small vocabularies that cross crates and are stored: a database's mode, an alert's
//! severity and state, an alert's transitions. Each is an enum with one spelling per value,
//! written by `as_str` and read back by `parse`; an unknown spelling is an error, never a
//! default. Crates that store them parse at their storage boundary.

use std::fmt;

/// A spelling that names no value of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a {}; expected {}",
            self.value,
            self.what,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// Declares a fieldless enum with its one spelling per variant: `as_str`, `parse`, `ALL`,
/// `Display` and `FromStr`.
#[macro_export]
macro_rules! vocabulary {
    (
        $(#[$doc:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one spelling of this value (stored, shown, sent).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value spelled `text`; anything else is an error naming what was expected.
            pub fn parse(text: &str) -> Result<Self, $crate::states::UnknownValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::states::UnknownValue {
                        what: $what,
                        value: text.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::states::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

vocabulary! {
    /// Where a service's database lives.
    pub enum DbMode ("database mode") {
        /// A `mariadbd` of its own per stage (and a replica when asked).
        Dedicated = "dedicated",
        /// A database on a server the platform team registered in the platform file.
        Shared = "shared",
    }
}

vocabulary! {
    /// How urgent an alert is.
    pub enum Severity ("severity") {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

vocabulary! {
    /// Where an alert is in its life.
    pub enum AlertState ("alert state") {
        /// The condition does not hold.
        Ok = "ok",
        /// The condition holds, not yet for its `for` duration.
        Pending = "pending",
        /// The condition has held for its `for` duration; the action plan was notified.
        Firing = "firing",
        /// It was firing and the condition stopped holding.
        Resolved = "resolved",
    }
}

vocabulary! {
    /// A change of an alert that its action plan hears of.
    pub enum Transition ("alert transition") {
        Firing = "firing",
        Resolved = "resolved",
        Escalated = "escalated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_and_nothing_else_does() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Ok(*s));
        }
        for s in AlertState::ALL {
            assert_eq!(s.as_str().parse::<AlertState>(), Ok(*s));
        }
        assert_eq!(DbMode::Shared.to_string(), "shared");
        let e = Severity::parse("Critical").expect_err("case matters");
        assert_eq!(
            e.to_string(),
            "'Critical' is not a severity; expected info, warning, critical"
        );
        assert!(Transition::parse("").is_err());
    }
}
