//! DeleteTopics (v1–v6): by name, and from v6 by topic id. The removal is durable before
//! the partition files are deleted (see `Broker::delete_topic`). The groups' offsets of a
//! deleted topic are then removed (see `GroupService::delete_topic_offsets`).

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;
use uuid::Uuid;

use super::Handled;
use crate::broker::Broker;
use crate::group::GroupService;

pub(crate) fn handle(
    request: DeleteTopicsRequest,
    version: i16,
    broker: &Broker,
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
    let responses = targets
        .into_iter()
        .filter_map(|(name, id)| match TopicRef::of(&name, id) {
            Some(r) if repeated.contains(&r) => {
                let message = match r {
                    TopicRef::Name(_) => "Duplicate topic name.",
                    TopicRef::Id(_) => "Duplicate topic id.",
                };
                answered.insert(r).then(|| {
                    DeletableTopicResult::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_static_str(message)))
                })
            }
            _ => Some(delete_one(broker, name, id)),
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers `response` once the group offsets of every topic it reports deleted are
/// removed. As in Kafka, that cleanup does not change the answer: the topic is gone
/// either way, so a failure is logged, not returned.
pub(crate) fn forget_group_offsets(
    response: DeleteTopicsResponse,
    groups: &GroupService,
) -> Handled<DeleteTopicsResponse> {
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
    if removals.is_empty() {
        return Handled::Ready(response);
    }
    Handled::Deferred(Box::pin(async move {
        for (topic, removal) in removals {
            if let Err(e) = removal.await {
                warn!(%topic, error = ?e, "deleted topic: its group offsets were not removed");
            }
        }
        response
    }))
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

fn delete_one(broker: &Broker, name: Option<TopicName>, id: Uuid) -> DeletableTopicResult {
    let fail = |name: Option<TopicName>, id: Uuid, code: i16, message: String| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let resolved = match (&name, id.is_nil()) {
        (Some(_), false) => {
            return fail(
                name.clone(),
                id,
                ResponseError::InvalidRequest.code(),
                "You may not specify both topic name and topic id.".to_owned(),
            )
        }
        (Some(name), true) => name.0.as_str().to_owned(),
        (None, false) => match broker.topic_by_id(id) {
            Some(topic) => topic.name.clone(),
            None => {
                return fail(
                    None,
                    id,
                    ResponseError::UnknownTopicId.code(),
                    format!("Topic id {id} does not exist."),
                )
            }
        },
        (None, true) => {
            return fail(
                None,
                id,
                ResponseError::InvalidRequest.code(),
                "Neither topic name nor id were specified.".to_owned(),
            )
        }
    };
    match broker.delete_topic(&resolved) {
        Ok(topic) => DeletableTopicResult::default()
            .with_name(Some(TopicName(StrBytes::from_string(resolved))))
            .with_topic_id(topic.id),
        Err(e) => fail(
            Some(TopicName(StrBytes::from_string(resolved))),
            id,
            e.error_code(),
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

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
            let response = round_trip(&handle(request, version, &t.broker), version);
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
        let response = round_trip(&handle(request, 6, &t.broker), 6);
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
            let response = round_trip(&handle(request, version, &t.broker), version);
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
        let response = round_trip(&handle(request, 6, &t.broker), 6);
        assert_eq!(response.responses.len(), 1);
        assert_eq!(response.responses[0].error_code, 42);
        assert_eq!(response.responses[0].topic_id, topic.id);
        assert!(t.broker.topic("by-id-twice").is_some());
    }
}
