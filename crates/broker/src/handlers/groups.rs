//! The consumer-group APIs: FindCoordinator (this broker, for groups; transactions are refused), JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup, passed to the coordinator in `groups`, and ListGroups and DescribeGroups
//! (each group once, however often it is named).

use futures::FutureExt as _;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;

use super::{NO_TRANSACTIONS, Pending, s};
use crate::Core;
use crate::code;
use crate::groups::{self, Join};

impl Core {
    pub fn find_coordinator(&self, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
        let (host, port) = (s(self.advertised.0.clone()), self.advertised.1);
        let refusal = (request.key_type != 0).then(|| s(NO_TRANSACTIONS));
        if version >= 4 {
            let coordinators = request
                .coordinator_keys
                .into_iter()
                .map(|key| match &refusal {
                    Some(message) => Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_error_code(code::INVALID_REQUEST)
                        .with_error_message(Some(message.clone())),
                    None => Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(0))
                        .with_host(host.clone())
                        .with_port(port),
                })
                .collect();
            return FindCoordinatorResponse::default().with_coordinators(coordinators);
        }
        match refusal {
            Some(message) => {
                let mut response = FindCoordinatorResponse::default()
                    .with_error_code(code::INVALID_REQUEST)
                    .with_node_id(BrokerId(-1));
                if version >= 1 {
                    response.error_message = Some(message);
                }
                response
            }
            None => FindCoordinatorResponse::default().with_node_id(BrokerId(0)).with_host(host).with_port(port),
        }
    }

    pub fn join_group(&self, request: JoinGroupRequest, client_id: String) -> Pending<JoinGroupResponse> {
        let answer = self.groups.join(Join {
            group: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host: format!("/{}", self.advertised.0),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if request.rebalance_timeout_ms > 0 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        });
        Pending::Later(
            async move {
                let joined = answer
                    .await
                    .unwrap_or_else(|_| groups::Joined { error: code::REBALANCE_IN_PROGRESS, ..Default::default() });
                JoinGroupResponse::default()
                    .with_error_code(joined.error)
                    .with_generation_id(if joined.error == code::NONE { joined.generation } else { -1 })
                    .with_protocol_type(joined.protocol_type.map(s))
                    .with_protocol_name(joined.protocol.map(s))
                    .with_leader(s(joined.leader))
                    .with_member_id(s(joined.member_id))
                    .with_members(
                        joined
                            .members
                            .into_iter()
                            .map(|m| {
                                JoinGroupResponseMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(s))
                                    .with_metadata(m.metadata)
                            })
                            .collect(),
                    )
            }
            .boxed(),
        )
    }

    pub fn sync_group(&self, request: SyncGroupRequest) -> Pending<SyncGroupResponse> {
        let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
        let answer = self.groups.sync(&request.group_id, &request.member_id, request.generation_id, assignments);
        Pending::Later(
            async move {
                let synced = answer
                    .await
                    .unwrap_or_else(|_| groups::Synced { error: code::REBALANCE_IN_PROGRESS, ..Default::default() });
                SyncGroupResponse::default()
                    .with_error_code(synced.error)
                    .with_protocol_type(synced.protocol_type.map(s))
                    .with_protocol_name(synced.protocol.map(s))
                    .with_assignment(synced.assignment)
            }
            .boxed(),
        )
    }

    pub fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let error = self.groups.heartbeat(&request.group_id, &request.member_id, request.generation_id);
        HeartbeatResponse::default().with_error_code(error)
    }

    pub fn leave_group(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        if version < 3 {
            let error = self.groups.leave(&request.group_id, &request.member_id);
            return LeaveGroupResponse::default().with_error_code(error);
        }
        let members = request
            .members
            .into_iter()
            .map(|m| {
                let error = self.groups.leave(&request.group_id, &m.member_id);
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(error)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }

    pub fn list_groups(&self, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let groups = self
            .groups
            .list()
            .into_iter()
            .filter(|(_, _, state)| {
                request.states_filter.is_empty()
                    || request.states_filter.iter().any(|f| f.eq_ignore_ascii_case(state.name()))
            })
            .map(|(name, protocol_type, state)| {
                let mut listed =
                    ListedGroup::default().with_group_id(GroupId(s(name))).with_protocol_type(s(protocol_type));
                if version >= 4 {
                    listed.group_state = s(state.name());
                }
                listed
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    /// Describes each distinct group once, however often the request names it.
    pub fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let mut seen = std::collections::HashSet::new();
        let groups = request
            .groups
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .map(|id| match self.groups.describe(&id) {
                None => DescribedGroup::default().with_group_id(id).with_group_state(s("Dead")),
                Some(description) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(s(description.state.name()))
                    .with_protocol_type(s(description.protocol_type))
                    .with_protocol_data(s(description.protocol))
                    .with_members(
                        description
                            .members
                            .into_iter()
                            .map(|(member, instance, client, host, metadata, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(member))
                                    .with_group_instance_id(instance.map(s))
                                    .with_client_id(s(client))
                                    .with_client_host(s(host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }
}
