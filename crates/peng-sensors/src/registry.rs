//! How the list of kinds (`src/kinds/mod.rs`) becomes [`SensorKind`](crate::SensorKind), its
//! dispatch to each kind, and [`KINDS`](crate::KINDS); and what follows from the list as a
//! whole, such as which kind a misplaced condition needs.

/// `kinds! { http => Http, … }`: for each line, the module of the kind's folder and its
/// settings type, which implements [`Kind`](crate::Kind) and names the variant of
/// `SensorKind`.
macro_rules! kinds {
    ($($module:ident => $Kind:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// What a sensor probes: one kind, with that kind's settings.
        #[derive(Clone, PartialEq)]
        pub enum SensorKind {
            $($Kind($module::$Kind),)+
        }

        /// Every kind, in the order of the registry.
        pub const KINDS: &[$crate::KindInfo] = &[$($crate::KindInfo::of::<$module::$Kind>(),)+];

        impl SensorKind {
            /// Reads the entry of a kind in a sensor (the entry whose key is one of [`KINDS`]);
            /// `None` when it has problems, which are reported into `cx`.
            pub fn parse(
                cx: &mut ::peng_yaml::Cx,
                entry: &::peng_yaml::tree::Entry,
                sensor: &str,
                file: &$crate::Context,
            ) -> Option<SensorKind> {
                $(
                    if entry.key == <$module::$Kind as $crate::Kind>::KEY {
                        return <$module::$Kind as $crate::Kind>::parse(cx, entry, sensor, file)
                            .map(SensorKind::$Kind);
                    }
                )+
                None
            }

            /// The key that selects the kind: `http`.
            pub fn key(&self) -> &'static str {
                match self {
                    $(SensorKind::$Kind(_) => <$module::$Kind as $crate::Kind>::KEY,)+
                }
            }

            /// Whether a run needs a running instance of the stage to probe.
            pub fn needs_instance(&self) -> bool {
                match self {
                    $(SensorKind::$Kind(kind) => $crate::Kind::needs_instance(kind),)+
                }
            }

            /// The subjects a run observes.
            pub fn observes(&self) -> &'static [$crate::Subject] {
                match self {
                    $(SensorKind::$Kind(_) => <$module::$Kind as $crate::Kind>::OBSERVES,)+
                }
            }

            pub(crate) fn checks(&self) -> &'static str {
                match self {
                    $(SensorKind::$Kind(_) => <$module::$Kind as $crate::Kind>::CHECKS,)+
                }
            }

            /// One run of the kind; see [`Kind::probe`]($crate::Kind::probe).
            #[cfg(feature = "probe")]
            pub async fn probe(
                &self,
                clients: &$crate::Clients,
                run: &$crate::Run<'_>,
            ) -> Result<$crate::Observation, $crate::Failed> {
                match self {
                    $(SensorKind::$Kind(kind) => $crate::Kind::probe(kind, clients, run).await,)+
                }
            }
        }

        /// The kind's settings as they are, `Http { target: …, method: … }`: the variant
        /// would only repeat the name.
        impl ::std::fmt::Debug for SensorKind {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $(SensorKind::$Kind(kind) => ::std::fmt::Debug::fmt(kind, f),)+
                }
            }
        }

        /// The kind as a plan shows it: `http GET /books`.
        impl ::std::fmt::Display for SensorKind {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $(SensorKind::$Kind(kind) => ::std::fmt::Display::fmt(kind, f),)+
                }
            }
        }
    };
}

use crate::{SensorKind, Subject, KINDS};

impl SensorKind {
    /// Why a condition on `subject` cannot be checked by a sensor of this kind, if it cannot:
    /// `needs an http sensor; a tcp sensor can only check latency`.
    pub fn misfit(&self, subject: Subject) -> Option<String> {
        if self.observes().contains(&subject) {
            return None;
        }
        let observers: Vec<&str> = KINDS
            .iter()
            .filter(|k| k.observes.contains(&subject))
            .map(|k| k.a_sensor)
            .collect();
        Some(match observers.as_slice() {
            [] => format!("is observed by no kind of sensor; {}", self.checks()),
            _ => format!("needs {}; {}", observers.join(" or "), self.checks()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Http, HttpTarget};
    use crate::log::Log;
    use crate::sql::Sql;
    use crate::tcp::Tcp;

    #[test]
    fn the_registry_lists_every_kind_in_order() {
        let keys: Vec<&str> = KINDS.iter().map(|k| k.key).collect();
        assert_eq!(keys, ["http", "tcp", "sql", "log"]);
        for kind in KINDS {
            assert!(kind.observes.contains(&Subject::Latency), "{}", kind.key);
        }
    }

    #[test]
    fn a_condition_that_does_not_fit_names_the_kind_it_needs() {
        let http = SensorKind::Http(Http {
            target: HttpTarget::Path("/".into()),
            method: "GET".into(),
        });
        let tcp = SensorKind::Tcp(Tcp {
            host: None,
            port: None,
        });
        let sql = SensorKind::Sql(Sql {
            query: "SELECT 1".into(),
        });
        let log = SensorKind::Log(Log {
            query: "level:3".into(),
            window: peng_core::Duration::from_secs(60),
        });
        for kind in [&http, &tcp, &sql, &log] {
            assert_eq!(kind.misfit(Subject::Latency), None, "{kind}");
        }
        assert_eq!(http.misfit(Subject::Status), None);
        assert_eq!(http.misfit(Subject::Body), None);
        assert_eq!(sql.misfit(Subject::Value), None);
        assert_eq!(log.misfit(Subject::Value), None);
        let why = |kind: &SensorKind, subject| kind.misfit(subject).unwrap();
        assert_eq!(
            why(&tcp, Subject::Status),
            "needs an http sensor; a tcp sensor can only check latency"
        );
        assert_eq!(
            why(&sql, Subject::Body),
            "needs an http sensor; an sql sensor checks value and latency"
        );
        assert_eq!(
            why(&log, Subject::Status),
            "needs an http sensor; a log sensor checks value and latency"
        );
        assert_eq!(
            why(&http, Subject::Value),
            "needs an sql sensor or a log sensor; an http sensor checks status, latency and body"
        );
        assert_eq!(
            why(&tcp, Subject::Value),
            "needs an sql sensor or a log sensor; a tcp sensor can only check latency"
        );
    }
}
