//! The JSON Schema (draft 2020-12) of the service file, published for editors (`peng schema`).
//!
//! It describes the same keys as the parser, with `additionalProperties: false` everywhere, so
//! an editor flags an unknown key as peng would. Rules that need the whole file (references
//! between alerts, sensors and plans; timeouts shorter than intervals) are the parser's alone.
//! The tests below check that the schema and the parser know exactly the same keys.

use peng_sensors::KINDS;
use serde_json::{json, Value};

use crate::limits::*;
use crate::model::API_VERSION;
use crate::parse::kinds_listed;

const DURATION_PATTERN: &str = "^([0-9]+(ns|us|ms|s|m|h|d|w))+$";
const SIZE_PATTERN: &str = "^[0-9]+(B|Ki|Mi|Gi|Ti|KiB|MiB|GiB|TiB|k|K|KB|M|MB|G|GB|T|TB)?$";
const OFFERING_PATTERN: &str = "^[a-z0-9-]{1,32}$";
const VERSION_PATTERN: &str = "^[0-9]{1,4}\\.[0-9]{1,4}$";
const NAME_PATTERN: &str = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";
/// A string without NUL bytes (which no argument, variable or path can hold).
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";
/// Relative (not starting with '/') and without NUL bytes; whether `..` leaves the service's
/// directory is the parser's to say.
const RELATIVE_DIR_PATTERN: &str = "^[^/\\u0000][^\\u0000]*$";
const CONDITION_PATTERN: &str = "^\\s*(value\\s*(==|!=|<=|>=|<|>)\\s*[-+]?[0-9.eE+-]+|status\\s*(==|!=|<=|>=|<|>)\\s*[1-5][0-9][0-9]|latency\\s*(==|!=|<=|>=|<|>)\\s*([0-9]+(ns|us|ms|s|m|h|d|w))+|body\\s+(not\\s+)?contains\\s+('.+'|\".+\"))\\s*$";
const WHEN_PATTERN: &str = "^\\s*(failing|value\\s*(==|!=|<=|>=|<|>)\\s*[-+]?[0-9.eE+-]+)(\\s+for\\s+([0-9]+(ns|us|ms|s|m|h|d|w))+)?\\s*$";

/// The JSON Schema of `peng.yaml`.
pub fn service_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:peng:service-file:v1",
        "title": "peng service file",
        "description": "One service of one team: how it runs on each stage, its database, how long its logs are kept, its sensors, alerts and action plans.",
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "service", "team", "stages", "run"],
        "properties": {
            "apiVersion": {
                "description": "Version of this file format.",
                "const": API_VERSION
            },
            "service": {
                "description": "The service's name, unique within its team.",
                "$ref": "#/$defs/name"
            },
            "team": {
                "description": "The team that owns the service.",
                "$ref": "#/$defs/name"
            },
            "stages": {
                "description": "Stage name → how many instances run there. At least one stage.",
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_STAGES,
                "propertyNames": { "$ref": "#/$defs/name" },
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "description": "Number of instances on this stage; 0 declares the stage scaled to zero.",
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_INSTANCES
                        }
                    }
                }
            },
            "run": { "$ref": "#/$defs/run" },
            "logging": {
                "description": "The service's log stream.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "retention": {
                        "description": "How long log messages are kept. Default 7d, at most 365d.",
                        "$ref": "#/$defs/duration"
                    }
                }
            },
            "database": { "$ref": "#/$defs/database" },
            "sensors": {
                "description": "Checks peng runs on a schedule; each run yields a status, a latency and a value.",
                "type": "array",
                "maxItems": MAX_SENSORS,
                "items": { "$ref": "#/$defs/sensor" }
            },
            "alerts": {
                "description": "Rules over sensors; a firing alert runs its action plan.",
                "type": "array",
                "maxItems": MAX_ALERTS,
                "items": { "$ref": "#/$defs/alert" }
            },
            "action_plans": {
                "description": "Plan name → what happens when an alert fires.",
                "type": "object",
                "maxProperties": MAX_ACTION_PLANS,
                "propertyNames": { "$ref": "#/$defs/name" },
                "additionalProperties": { "$ref": "#/$defs/action_plan" }
            }
        },
        "$defs": {
            "name": {
                "description": "Lowercase letters, digits and '-', starting with a letter, at most 63 characters.",
                "type": "string",
                "pattern": NAME_PATTERN
            },
            "duration": {
                "description": "A duration like 500ms, 30s, 2m, 1h30m or 14d.",
                "type": "string",
                "pattern": DURATION_PATTERN
            },
            "size": {
                "description": "A size like 512Mi, 1Gi, 100MB or 4096 (bytes).",
                "type": ["string", "integer"],
                "pattern": SIZE_PATTERN
            },
            "relative_dir": {
                "description": "A directory inside the one holding this file, relative to it: not absolute, and never leaving it with '..'; '.' is that directory itself.",
                "type": "string",
                "minLength": 1,
                "pattern": RELATIVE_DIR_PATTERN
            },
            "url": {
                "description": "An absolute http:// or https:// URL.",
                "type": "string",
                "pattern": "^https?://[^/?#\\s]+[^\\s]*$",
                "maxLength": MAX_STRING_BYTES
            },
            "database": {
                "description": "A MariaDB database per stage, on an approved version and plan of the platform file, with backups.",
                "type": "object",
                "additionalProperties": false,
                "required": ["version"],
                "properties": {
                    "engine": {
                        "description": "Default mariadb.",
                        "enum": ["mariadb"]
                    },
                    "version": {
                        "description": "MAJOR.MINOR, like \"10.11\"; one of the platform's versions.",
                        "type": ["string", "number"],
                        "pattern": VERSION_PATTERN
                    },
                    "plan": {
                        "description": "A database plan of the platform file. Default small.",
                        "type": "string",
                        "pattern": OFFERING_PATTERN
                    },
                    "mode": {
                        "description": "dedicated (default): a server of its own per stage; shared: a database on a server registered in the platform file.",
                        "enum": ["dedicated", "shared"]
                    },
                    "server": {
                        "description": "With mode shared: the shared server; default the platform's default shared server.",
                        "type": "string",
                        "pattern": OFFERING_PATTERN
                    },
                    "replica": {
                        "description": "A replica next to each dedicated server. Default false.",
                        "type": "boolean"
                    },
                    "backup": {
                        "description": "How often backups are taken and how long they are kept.",
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "every": {
                                "description": "Default 24h, at least 1m.",
                                "$ref": "#/$defs/duration"
                            },
                            "retention": {
                                "description": "Default 7d, at least every, at most 3650d.",
                                "$ref": "#/$defs/duration"
                            }
                        }
                    },
                    "protect": {
                        "description": "Deletion protection: destroying needs --force and takes a final backup. Default on for the stage production, off elsewhere.",
                        "type": "boolean"
                    }
                }
            },
            "run": {
                "description": "How to start one instance of the service.",
                "type": "object",
                "additionalProperties": false,
                "required": ["command"],
                "properties": {
                    "command": {
                        "description": "argv of an instance; ${PORT} and other ${VAR} of its environment are expanded. One string is split on whitespace.",
                        "oneOf": [
                            {
                                "type": "array",
                                "minItems": 1,
                                "items": { "type": "string", "pattern": NO_NUL_PATTERN },
                                "prefixItems": [ { "type": "string", "pattern": "\\S" } ]
                            },
                            { "type": "string", "pattern": "\\S" }
                        ]
                    },
                    "env": {
                        "description": "Environment variables of each instance. PORT and PENG_* are set by peng and reserved.",
                        "type": "object",
                        "maxProperties": MAX_ENV,
                        "propertyNames": {
                            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                            "not": { "anyOf": [ { "const": "PORT" }, { "pattern": "^PENG_" } ] }
                        },
                        "additionalProperties": {
                            "type": ["string", "number", "boolean"],
                            "pattern": NO_NUL_PATTERN
                        }
                    },
                    "workdir": {
                        "description": "Working directory, inside the directory of this file and relative to it; default that directory itself.",
                        "$ref": "#/$defs/relative_dir"
                    },
                    "writable": {
                        "description": "Directories an instance may write to, inside the directory of this file and relative to it ('.' for all of it); the rest of that directory is read-only to the instance. Default none.",
                        "type": "array",
                        "maxItems": MAX_WRITABLE,
                        "items": { "$ref": "#/$defs/relative_dir" }
                    },
                    "health": {
                        "description": "The automatic health check of each instance, called 'health' in alerts. Default: tcp every 10s with a 2s timeout.",
                        "type": "object",
                        "additionalProperties": false,
                        "oneOf": [ { "required": ["http"] }, { "required": ["tcp"] } ],
                        "properties": {
                            "http": {
                                "description": "GET this path on the instance's port; healthy on 2xx.",
                                "type": "string",
                                "pattern": "^/"
                            },
                            "tcp": {
                                "description": "Healthy when the instance's port accepts a connection.",
                                "const": true
                            },
                            "every": {
                                "description": "Interval between checks. Default 10s, at least 1s.",
                                "$ref": "#/$defs/duration"
                            },
                            "timeout": {
                                "description": "Time allowed for one check; shorter than every. Default 2s (or half of every).",
                                "$ref": "#/$defs/duration"
                            }
                        }
                    },
                    "resources": {
                        "description": "What one instance may use.",
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "cpu": {
                                "description": "CPUs, like 0.5. Default 0.25.",
                                "type": "number",
                                "exclusiveMinimum": 0
                            },
                            "memory": {
                                "description": "Memory, like 512Mi. Default 256Mi.",
                                "$ref": "#/$defs/size"
                            },
                            "pids": {
                                "description": "The most processes and threads an instance may have at once. Default the platform's (isolation.pids).",
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_PIDS
                            }
                        }
                    }
                }
            },
            "sensor": sensor(),
            "alert": {
                "description": "A rule over one sensor.",
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "sensor", "when", "severity", "plan"],
                "properties": {
                    "name": {
                        "description": "Unique in this file.",
                        "$ref": "#/$defs/name"
                    },
                    "sensor": {
                        "description": "A sensor of this file, 'health' for the automatic health check, or (with a database) db.up, db.connections, db.queries, db.slow_queries, db.replica or db.size.",
                        "type": "string"
                    },
                    "when": {
                        "description": "'failing', 'failing for 2m', 'value < 5 for 10m', 'value >= 0.9'.",
                        "type": "string",
                        "pattern": WHEN_PATTERN
                    },
                    "severity": { "enum": ["info", "warning", "critical"] },
                    "plan": {
                        "description": "An action plan of this file.",
                        "type": "string"
                    }
                }
            },
            "action_plan": {
                "description": "What happens when an alert fires or resolves.",
                "type": "object",
                "additionalProperties": false,
                "required": ["notify"],
                "properties": {
                    "runbook": {
                        "description": "Where the person paged reads what to do.",
                        "$ref": "#/$defs/url"
                    },
                    "notify": {
                        "description": "Who is told, with a JSON payload POSTed to each webhook.",
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_NOTIFY,
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["webhook"],
                            "properties": {
                                "webhook": { "$ref": "#/$defs/url" }
                            }
                        }
                    },
                    "escalate": {
                        "description": "When the alert stays unresolved this long, another plan of this file is run too.",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["after", "to"],
                        "properties": {
                            "after": { "$ref": "#/$defs/duration" },
                            "to": {
                                "description": "Another action plan of this file.",
                                "$ref": "#/$defs/name"
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A sensor: its name, schedule and conditions, and one key per kind with the kind's own piece.
fn sensor() -> Value {
    let mut sensor = json!({
        "description": format!("A check run on a schedule: exactly one of {}.", kinds_listed("")),
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "oneOf": KINDS.iter().map(|k| json!({ "required": [k.key] })).collect::<Vec<_>>(),
        "properties": {
            "name": {
                "description": "Unique in this file; 'health' is reserved.",
                "allOf": [ { "$ref": "#/$defs/name" }, { "not": { "const": "health" } } ]
            },
            "every": {
                "description": "Interval between runs. Default 30s, at least 1s.",
                "$ref": "#/$defs/duration"
            },
            "timeout": {
                "description": "Time allowed for one run; shorter than every. Default 5s (or half of every).",
                "$ref": "#/$defs/duration"
            },
            "expect": {
                "description": "Conditions that must all hold: 'status == 200', 'latency < 500ms', \"body contains 'text'\", \"body not contains 'text'\", 'value > 0'. status and body need an http sensor, value an sql or log sensor.",
                "type": "array",
                "maxItems": MAX_CONDITIONS,
                "items": { "type": "string", "pattern": CONDITION_PATTERN }
            }
        }
    });
    for kind in KINDS {
        sensor["properties"][kind.key] = (kind.schema)();
    }
    sensor
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::parse::*;
    use peng_yaml::tree::{self, Node};

    /// Follows a `$ref` to `#/$defs/...`.
    fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                resolve(root, root.pointer(pointer).expect("a $ref that resolves"))
            }
            None => schema,
        }
    }

    /// Every mapping key of `node` is described by `schema`.
    fn check_described(
        root: &Value,
        schema: &Value,
        node: &Node,
        path: &str,
        missing: &mut Vec<String>,
    ) {
        let schema = resolve(root, schema);
        match node {
            Node::Map(map) => {
                for entry in &map.entries {
                    let here = format!("{path}.{}", entry.key);
                    let sub = schema
                        .get("properties")
                        .and_then(|p| p.get(&entry.key))
                        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                    match sub {
                        Some(sub) => check_described(root, sub, &entry.value, &here, missing),
                        None => missing.push(here),
                    }
                }
            }
            Node::Seq(seq) => {
                let items = schema.get("items").or_else(|| {
                    schema
                        .get("oneOf")
                        .and_then(Value::as_array)
                        .and_then(|branches| branches.iter().find_map(|b| b.get("items")))
                });
                for (i, item) in seq.items.iter().enumerate() {
                    match items {
                        Some(items) => {
                            check_described(root, items, item, &format!("{path}[{i}]"), missing)
                        }
                        None => missing.push(format!("{path}[{i}]")),
                    }
                }
            }
            Node::Scalar(_) => {}
        }
    }

    fn assert_described(text: &str) {
        let (node, problems) = tree::load(text);
        assert!(problems.is_empty(), "{problems:?}");
        let schema = service_schema();
        let mut missing = Vec::new();
        check_described(
            &schema,
            &schema,
            &node.expect("a document"),
            "",
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "keys the schema does not describe: {missing:?}"
        );
    }

    #[test]
    fn example_keys_are_all_described() {
        let example = include_str!("../../../examples/bookshelf/peng.yaml");
        assert!(crate::parse_service("peng.yaml", example).is_ok());
        assert_described(example);
        let full = include_str!("../tests/cases/valid-full.yaml");
        assert!(crate::parse_service("peng.yaml", full).is_ok());
        assert_described(full);
        let database = include_str!("../tests/cases/database-full.yaml");
        assert!(crate::parse_service("peng.yaml", database).is_ok());
        assert_described(database);
        let sandbox = include_str!("../tests/cases/run-sandbox.yaml");
        assert!(crate::parse_service("peng.yaml", sandbox).is_ok());
        assert_described(sandbox);
    }

    #[test]
    fn schema_and_parser_know_the_same_keys() {
        let schema = service_schema();
        let sections: &[(&str, &[&str])] = &[
            ("", TOP_KEYS),
            ("/properties/stages/additionalProperties", STAGE_KEYS),
            ("/$defs/run", RUN_KEYS),
            ("/$defs/run/properties/health", HEALTH_KEYS),
            ("/$defs/run/properties/resources", RESOURCES_KEYS),
            ("/properties/logging", LOGGING_KEYS),
            ("/$defs/database", DATABASE_KEYS),
            ("/$defs/database/properties/backup", BACKUP_KEYS),
            ("/$defs/sensor", &sensor_keys()),
            ("/$defs/alert", ALERT_KEYS),
            ("/$defs/action_plan", PLAN_KEYS),
            ("/$defs/action_plan/properties/notify/items", NOTIFY_KEYS),
            ("/$defs/action_plan/properties/escalate", ESCALATE_KEYS),
        ];
        // Each kind written as a mapping is read with the keys it names.
        let kinds: Vec<(String, &[&str])> = KINDS
            .iter()
            .filter(|k| !k.keys.is_empty())
            .map(|k| (format!("/$defs/sensor/properties/{}", k.key), k.keys))
            .collect();
        let sections = sections.iter().copied().chain(
            kinds
                .iter()
                .map(|(pointer, keys)| (pointer.as_str(), *keys)),
        );
        for (pointer, keys) in sections {
            let section = schema.pointer(pointer).expect(pointer);
            assert_eq!(section["additionalProperties"], json!(false), "{pointer}");
            let described: BTreeSet<&str> = section["properties"]
                .as_object()
                .expect(pointer)
                .keys()
                .map(String::as_str)
                .collect();
            let parsed: BTreeSet<&str> = keys.iter().copied().collect();
            assert_eq!(described, parsed, "{pointer}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(root: &Value, value: &Value, broken: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                        if root.pointer(reference.trim_start_matches('#')).is_none() {
                            broken.push(reference.to_string());
                        }
                    }
                    object.values().for_each(|v| walk(root, v, broken));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(root, v, broken)),
                _ => {}
            }
        }
        let schema = service_schema();
        let mut broken = Vec::new();
        walk(&schema, &schema, &mut broken);
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }

    #[test]
    fn every_property_has_a_description_or_a_reference() {
        fn walk(value: &Value, path: &str, bare: &mut Vec<String>) {
            if let Some(props) = value.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    let described = prop.get("description").is_some()
                        || prop.get("$ref").is_some()
                        || prop.get("enum").is_some()
                        || prop.get("type") == Some(&json!("integer"));
                    if !described {
                        bare.push(format!("{path}/{key}"));
                    }
                }
            }
            if let Some(object) = value.as_object() {
                for (key, child) in object {
                    walk(child, &format!("{path}/{key}"), bare);
                }
            }
        }
        let mut bare = Vec::new();
        walk(&service_schema(), "", &mut bare);
        assert!(bare.is_empty(), "{bare:?}");
    }
}
