//! `stages`: stage name → how many instances run there.

use std::collections::BTreeMap;

use peng_core::StageName;
use peng_yaml::tree::Entry;
use peng_yaml::{bounded_map, integer, section, Cx};

use crate::limits::{MAX_INSTANCES, MAX_STAGES};
use crate::model::StageSpec;

pub(crate) const STAGE_KEYS: &[&str] = &["instances"];

pub(super) fn stages(cx: &mut Cx, entry: &Entry) -> Option<BTreeMap<StageName, StageSpec>> {
    let map = bounded_map(
        cx,
        entry,
        "'stages'",
        "a mapping of stage name to { instances: N }",
        "stages declared",
        MAX_STAGES,
    )?;
    if map.entries.is_empty() {
        cx.err(entry.key_pos, "'stages' must declare at least one stage");
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for stage in &map.entries {
        let name = match StageName::parse(&stage.key) {
            Ok(name) => Some(name),
            Err(e) => {
                cx.err(stage.key_pos, e.to_string());
                None
            }
        };
        let what = format!("stage '{}'", stage.key);
        let instances = section(cx, stage, &what, STAGE_KEYS).and_then(|f| {
            let node = f.require(cx, "instances")?;
            integer(cx, node, &f.label("instances"), 0, u64::from(MAX_INSTANCES))
        });
        match (name, instances) {
            (Some(name), Some(instances)) => {
                let instances = u32::try_from(instances).unwrap_or(MAX_INSTANCES);
                out.insert(name, StageSpec { instances });
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}
