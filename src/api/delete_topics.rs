//! DeleteTopics (v1–v6): by name, and from v6 by topic id. The request runs on the admin
//! thread: the removal of every topic it names is made durable by one metadata write
//! before their partition files are deleted (see `Broker::delete_topics`). The groups'
//! offsets of a deleted topic are then removed (see `GroupService::delete_topic_offsets`).
//! A deletion counts its partitions against the controller mutation quota (KIP-599): from
//! v5 a topic beyond it is refused with THROTTLING_QUOTA_EXCEEDED; older versions are
//! served and their answer is delayed by the throttle time.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;
use uuid::Uuid;

use super::Handled;
use crate::broker::mutation_quota::{throttle_ms, QuotaMode};
use crate::broker::{Broker, TopicError};
use crate::group::GroupService;

/// The first version held strictly to the mutation quota (Kafka's `strictSinceVersion`).
const STRICT_QUOTA_SINCE: i16 = 5;

/// Queues the request on the admin thread; the answer comes when it is done and the
/// deleted topics' group offsets are removed (for versions before v5, after the throttle
/// time too).
pub(crate) fn handle(
    request: DeleteTopicsRequest,
    version: i16,
    broker: &Broker,
    groups: &GroupService,
) -> Handled<DeleteTopicsResponse> {
    let quota = quota_mode(version);
    let asked: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        let topics = request.topics.iter();
        topics.map(|t| (t.name.clone(), t.topic_id)).collect()
    } else {
        let names = request.topic_names.iter();
        names
            .map(|name| (Some(name.clone()), Uuid::nil()))
            .collect()
    };
    let answer = broker.submit_admin(move |broker| respond(request, version, broker, quota));
    let groups = groups.clone();
    Handled::Deferred(Box::pin(async move {
        let Ok(response) = answer.await else {
            let error = TopicError::AdminUnavailable;
            let responses = asked
                .into_iter()
                .map(|(name, id)| {
                    DeletableTopicResult::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_error_code(error.error_code())
                        .with_error_message(Some(super::error_message(error.to_string())))
                })
                .collect();
            return DeleteTopicsResponse::default().with_responses(responses);
        };
        let response = forget_group_offsets(response, &groups).await;
        quota.delay_response(response.throttle_time_ms).await;
        response
    }))
}

fn quota_mode(version: i16) -> QuotaMode {
    QuotaMode::for_version(version, STRICT_QUOTA_SINCE)
}

/// One entry of the answer: decided by the request's own checks, or a topic to delete.
enum Target {
    Answered(DeletableTopicResult),
    Delete { name: String, id: Uuid },
}

/// The whole request; runs on the admin thread.
pub(crate) fn respond(
    request: DeleteTopicsRequest,
    version: i16,
    broker: &Broker,
    quota: QuotaMode,
) -> DeleteTopicsResponse {
    // v0–v5 name topics in `topic_names`; v6 uses `topics` (name or id).
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    // As Kafka's controller: a name (or id) given more than once is answered once with
    // INVALID_REQUEST, where it first appears, and is not deleted.
    let repeated = super::repeated(
        targets
            .iter()
            .filter_map(|(name, id)| TopicRef::of(name, *id)),
    );
    let mut answered = HashSet::new();
    let targets: Vec<Target> = targets
        .into_iter()
        .filter_map(|(name, id)| match TopicRef::of(&name, id) {
            Some(r) if repeated.contains(&r) => {
                let message = match r {
                    TopicRef::Name(_) => "Duplicate topic name.",
                    TopicRef::Id(_) => "Duplicate topic id.",
                };
                answered.insert(r).then(|| {
                    Target::Answered(
                        DeletableTopicResult::default()
                            .with_name(name)
                            .with_topic_id(id)
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(StrBytes::from_static_str(message))),
                    )
                })
            }
            _ => Some(resolve(broker, name, id)),
        })
        .collect();
    let names = targets
        .iter()
        .filter_map(|t| match t {
            Target::Delete { name, .. } => Some(name.clone()),
            Target::Answered(_) => None,
        })
        .collect();
    let mut deleted = broker.delete_topics(names, quota).into_iter();
    let responses = targets
        .into_iter()
        .map(|target| match target {
            Target::Answered(result) => result,
            Target::Delete { name, id } => {
                let outcome = deleted.next().unwrap_or(Err(TopicError::AdminUnavailable));
                let result = DeletableTopicResult::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))));
                match outcome {
                    Ok(topic) => result.with_topic_id(topic.id),
                    Err(e) => result
                        .with_topic_id(id)
                        .with_error_code(e.error_code())
                        .with_error_message(Some(super::error_message(e.to_string()))),
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default()
        .with_throttle_time_ms(throttle_ms(broker.mutation_throttle_time()))
        .with_responses(responses)
}

/// Removes the group offsets of every topic `response` reports deleted, then gives the
/// response back. As in Kafka, that cleanup does not change the answer: the topic is gone
/// either way, so a failure is logged, not returned.
async fn forget_group_offsets(
    response: DeleteTopicsResponse,
    groups: &GroupService,
) -> DeleteTopicsResponse {
    let removals: Vec<_> = response
        .responses
        .iter()
        .filter(|r| r.error_code == 0)
        .filter_map(|r| r.name.as_ref())
        .map(|name| {
            let topic = name.0.as_str().to_owned();
            (topic.clone(), groups.delete_topic_offsets(topic))
        })
        .collect();
    for (topic, removal) in removals {
        if let Err(e) = removal.await {
            warn!(%topic, error = ?e, "deleted topic: its group offsets were not removed");
        }
    }
    response
}

/// How a request names one topic: by name or by id (both or neither is refused by
/// `delete_one`, so it has no `TopicRef`).
#[derive(Debug, PartialEq, Eq, Hash)]
enum TopicRef {
    Name(String),
    Id(Uuid),
}

impl TopicRef {
    fn of(name: &Option<TopicName>, id: Uuid) -> Option<TopicRef> {
        match name {
            Some(name) if id.is_nil() => Some(TopicRef::Name(name.0.as_str().to_owned())),
            None if !id.is_nil() => Some(TopicRef::Id(id)),
            _ => None,
        }
    }
}

/// Resolves a topic named by name or by id to the name to delete, or answers it.
fn resolve(broker: &Broker, name: Option<TopicName>, id: Uuid) -> Target {
    let fail = |name: Option<TopicName>, id: Uuid, code: i16, message: String| {
        Target::Answered(
            DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id)
                .with_error_code(code)
                .with_error_message(Some(super::error_message(message))),
        )
    };
    match (&name, id.is_nil()) {
        (Some(_), false) => fail(
            name.clone(),
            id,
            ResponseError::InvalidRequest.code(),
            "You may not specify both topic name and topic id.".to_owned(),
        ),
        (Some(name), true) => Target::Delete {
            name: name.0.as_str().to_owned(),
            id,
        },
        (None, false) => match broker.topic_by_id(id) {
            Some(topic) => Target::Delete {
                name: topic.name.clone(),
                id,
            },
            None => fail(
                None,
                id,
                ResponseError::UnknownTopicId.code(),
                format!("Topic id {id} does not exist."),
            ),
        },
        (None, true) => fail(
            None,
            id,
            ResponseError::InvalidRequest.code(),
            "Neither topic name nor id were specified.".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    fn run(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let quota = quota_mode(version);
        broker
            .run_admin(move |broker| respond(request, version, broker, quota))
            .unwrap()
    }

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_owned()))
    }

    #[test]
    fn deletes_by_name_at_every_version_and_removes_files() {
        let t = TestBroker::open();
        for version in 1..=6i16 {
            let topic = format!("gone{version}");
            t.broker.create_topic(&topic, 2, BTreeMap::new()).unwrap();
            assert!(t.dir.path().join(format!("{topic}-1")).exists());
            let request = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(name(&topic)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
            };
            let response = round_trip(&run(&t.broker, request, version), version);
            assert_eq!(response.responses.len(), 1);
            assert_eq!(response.responses[0].error_code, 0, "v{version}");
            assert_eq!(
                response.responses[0].name.as_ref().unwrap().0.as_str(),
                topic
            );
            assert!(t.broker.topic(&topic).is_none());
            assert!(!t.dir.path().join(format!("{topic}-0")).exists());
            assert!(!t.dir.path().join(format!("{topic}-1")).exists());
        }
    }

    #[test]
    fn deletes_by_id_and_reports_unknown_ones() {
        let t = TestBroker::open();
        let topic = t.broker.create_topic("by-id", 1, BTreeMap::new()).unwrap();
        let unknown = Uuid::new_v4();
        let request = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_topic_id(topic.id),
            DeleteTopicState::default().with_topic_id(unknown),
            DeleteTopicState::default().with_name(Some(name("never-was"))),
            DeleteTopicState::default(),
        ]);
        let response = round_trip(&run(&t.broker, request, 6), 6);
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 100, 3, 42]);
        assert_eq!(
            response.responses[0].name.as_ref().unwrap().0.as_str(),
            "by-id"
        );
        assert_eq!(response.responses[0].topic_id, topic.id);
        assert_eq!(response.responses[1].topic_id, unknown);
        assert!(t.broker.topic_by_id(topic.id).is_none());
        // The deletion survives a restart.
        let t = t.restart();
        assert!(t.broker.topic("by-id").is_none());
    }

    /// As Kafka's controller: a name (or id) given twice is answered once with
    /// INVALID_REQUEST "Duplicate topic name." and that topic is not deleted.
    #[test]
    fn a_topic_named_twice_is_refused_and_kept() {
        let t = TestBroker::open();
        for version in 1..=6i16 {
            let twice = format!("twice{version}");
            let once = format!("once{version}");
            t.broker.create_topic(&twice, 1, BTreeMap::new()).unwrap();
            t.broker.create_topic(&once, 1, BTreeMap::new()).unwrap();
            let names = [&twice, &once, &twice];
            let request = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(
                    names
                        .iter()
                        .map(|n| DeleteTopicState::default().with_name(Some(name(n))))
                        .collect(),
                )
            } else {
                DeleteTopicsRequest::default()
                    .with_topic_names(names.iter().map(|n| name(n)).collect())
            };
            let response = round_trip(&run(&t.broker, request, version), version);
            let answers: Vec<(String, i16)> = response
                .responses
                .iter()
                .map(|r| (r.name.as_ref().unwrap().0.to_string(), r.error_code))
                .collect();
            assert_eq!(
                answers,
                vec![(twice.clone(), 42), (once.clone(), 0)],
                "v{version}"
            );
            assert!(t.broker.topic(&twice).is_some(), "v{version}");
            assert!(t.broker.topic(&once).is_none(), "v{version}");
        }
        let topic = t
            .broker
            .create_topic("by-id-twice", 1, BTreeMap::new())
            .unwrap();
        let by_id = || DeleteTopicState::default().with_topic_id(topic.id);
        let request = DeleteTopicsRequest::default().with_topics(vec![by_id(), by_id()]);
        let response = round_trip(&run(&t.broker, request, 6), 6);
        assert_eq!(response.responses.len(), 1);
        assert_eq!(response.responses[0].error_code, 42);
        assert_eq!(response.responses[0].topic_id, topic.id);
        assert!(t.broker.topic("by-id-twice").is_some());
    }
}
