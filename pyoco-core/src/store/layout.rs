//! Every NATS name pyoco uses, built in one place from [`Config`].

use crate::config::Config;

/// Stream, subject, consumer and bucket names. The only reader of the name fields of
/// [`Config`]: everything else asks the layout, so a prefixed deployment (or a test) changes
/// every name in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub work_stream: String,
    pub work_subject_prefix: String,
    pub consumer_prefix: String,
    pub dlq_stream: String,
    pub dlq_subject_prefix: String,
    pub runs_bucket: String,
    pub workers_bucket: String,
    pub auth_bucket: String,
    pub schedules_bucket: String,
    /// Slot claims of the schedule dispatcher (pyoco only): `<schedules bucket>_claims`.
    pub schedule_claims_bucket: String,
    pub bundles_bucket: String,
    /// Checkpoints of the gateway's run index (pyoco only): `<runs bucket>_index`.
    pub index_checkpoints_bucket: String,
    pub run_relations_bucket: String,
    pub wheel_history_bucket: String,
    pub task_cache_bucket: String,
    pub circuit_breakers_bucket: String,
    /// The wheel registry's object store.
    pub wheels_bucket: String,
    /// Used HMAC nonces (pyoco only).
    pub nonces_bucket: String,
    /// `Idempotency-Key` reservations (pyoco only).
    pub idempotency_bucket: String,
    /// The flow registry (pyoco only).
    pub flows_bucket: String,
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        Layout {
            work_stream: config.work_stream.clone(),
            work_subject_prefix: config.work_subject_prefix.clone(),
            consumer_prefix: config.consumer_prefix.clone(),
            dlq_stream: config.dlq_stream.clone(),
            dlq_subject_prefix: config.dlq_subject_prefix.clone(),
            runs_bucket: config.runs_kv_bucket.clone(),
            workers_bucket: config.workers_kv_bucket.clone(),
            auth_bucket: config.auth_kv_bucket.clone(),
            schedules_bucket: config.yaml_schedules_kv_bucket.clone(),
            schedule_claims_bucket: format!("{}_claims", config.yaml_schedules_kv_bucket),
            bundles_bucket: config.workflow_bundles_kv_bucket.clone(),
            index_checkpoints_bucket: format!("{}_index", config.runs_kv_bucket),
            run_relations_bucket: config.run_relations_kv_bucket.clone(),
            wheel_history_bucket: config.wheel_history_kv_bucket.clone(),
            task_cache_bucket: config.task_cache_kv_bucket.clone(),
            circuit_breakers_bucket: config.circuit_breakers_kv_bucket.clone(),
            wheels_bucket: config.wheel_object_store_bucket.clone(),
            nonces_bucket: config.http_nonces_kv_bucket.clone(),
            idempotency_bucket: config.idempotency_kv_bucket.clone(),
            flows_bucket: config.flows_kv_bucket.clone(),
        }
    }

    /// `pyoco.work.` — what a work subject starts with, before its tag.
    pub fn work_subject_tag<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.work_subject_prefix.as_str())?
            .strip_prefix('.')
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.PYOCO_WORK.pyoco_workers_<tag>`: the
    /// server's notice that a job of `tag` reached its delivery limit.
    pub fn max_deliveries_advisory(&self, tag: &str) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.work_stream,
            self.consumer_name(tag)
        )
    }

    /// `pyoco_workers_max_deliveries`: the queue group that lets one live worker handle each
    /// advisory.
    pub fn max_deliveries_group(&self) -> String {
        format!("{}_max_deliveries", self.consumer_prefix)
    }

    /// `$O.<bucket>.M.<encoded name>`: a wheel's metadata subject in the object store.
    pub fn wheel_meta_subject(&self, encoded_name: &str) -> String {
        format!("$O.{}.M.{encoded_name}", self.wheels_bucket)
    }

    /// `$O.<bucket>.M.>`: every wheel's metadata.
    pub fn wheel_meta_subjects(&self) -> String {
        format!("$O.{}.M.>", self.wheels_bucket)
    }

    /// `OBJ_<bucket>`: the stream behind the wheel object store.
    pub fn wheel_stream(&self) -> String {
        format!("OBJ_{}", self.wheels_bucket)
    }

    /// `$O.<bucket>.C.<nuid>`: a wheel's chunk subject in the object store.
    pub fn wheel_chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.wheels_bucket)
    }

    /// `pyoco.work.<tag>`
    pub fn work_subject(&self, tag: &str) -> String {
        format!("{}.{tag}", self.work_subject_prefix)
    }

    /// `pyoco.work.>`
    pub fn work_subjects(&self) -> String {
        format!("{}.>", self.work_subject_prefix)
    }

    /// `pyoco_workers_<tag>`: every worker serving a tag shares this durable consumer.
    pub fn consumer_name(&self, tag: &str) -> String {
        format!("{}_{tag}", self.consumer_prefix)
    }

    /// `pyoco.dlq.<tag>`
    pub fn dlq_subject(&self, tag: &str) -> String {
        format!("{}.{tag}", self.dlq_subject_prefix)
    }

    /// `pyoco.dlq.>`
    pub fn dlq_subjects(&self) -> String {
        format!("{}.>", self.dlq_subject_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_original() {
        let l = Layout::new(&Config::default());
        assert_eq!(l.work_subject("gpu"), "pyoco.work.gpu");
        assert_eq!(l.work_subjects(), "pyoco.work.>");
        assert_eq!(l.consumer_name("gpu"), "pyoco_workers_gpu");
        assert_eq!(l.dlq_subject("gpu"), "pyoco.dlq.gpu");
        assert_eq!(l.work_stream, "PYOCO_WORK");
        assert_eq!(l.work_subject_tag("pyoco.work.gpu"), Some("gpu"));
        assert_eq!(l.work_subject_tag("pyoco.workx.gpu"), None);
        assert_eq!(
            l.max_deliveries_advisory("gpu"),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.PYOCO_WORK.pyoco_workers_gpu"
        );
        assert_eq!(l.max_deliveries_group(), "pyoco_workers_max_deliveries");
        assert_eq!(l.runs_bucket, "pyoco_runs");
        assert_eq!(l.workers_bucket, "pyoco_workers");
        assert_eq!(l.schedule_claims_bucket, "pyoco_yaml_schedules_claims");
        assert_eq!(l.index_checkpoints_bucket, "pyoco_runs_index");
    }
}
