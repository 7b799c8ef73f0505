//! Every NATS name pyoco uses, built in one place from [`Config`].

use crate::config::Config;

/// Stream, subject, consumer and bucket names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub work_stream: String,
    pub work_subject_prefix: String,
    pub consumer_prefix: String,
    pub dlq_stream: String,
    pub dlq_subject_prefix: String,
    pub runs_bucket: String,
    pub workers_bucket: String,
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
        }
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
    }
}
